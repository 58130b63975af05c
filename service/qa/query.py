"""One question with its options: what every front end builds, what the pipeline answers, the cache key."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from citeqa.indexing.errors import QuestionError


def question_key(question: str) -> str:
    """Case and spacing do not change the answer: the reader and embedder are uncased models."""
    return " ".join(question.casefold().split())


@dataclass(frozen=True)
class Query:
    """`None` options take the settings' defaults. `min_answer_probability` replaces the calibrated
    threshold for this question: answers estimated less likely than it to be right are "not sure" (down
    to the floor) instead of confident. `best_guess`: when no answer reaches the floor, the most probable
    one anyway, "not sure"."""

    question: str
    top_k: int | None = None
    max_answers: int | None = None
    document_ids: tuple[str, ...] | None = None
    min_answer_probability: float | None = None
    best_guess: bool = False

    @classmethod
    def of(
        cls,
        question: str,
        top_k: int | None = None,
        max_answers: int | None = None,
        document_ids: Sequence[str] | None = None,
        min_answer_probability: float | None = None,
        best_guess: bool = False,
    ) -> Query:
        """A query from loose values (a list of document ids, say), as the front ends receive them."""
        if isinstance(document_ids, str):  # tuple("leave.md") would be its letters
            raise QuestionError("document_ids must be a list of document ids, not one string")
        ids = None if document_ids is None else tuple(document_ids)
        return cls(question, top_k, max_answers, ids, min_answer_probability, best_guess)

    def cache_key(self, index_version: str, top_k: int) -> tuple[Hashable, ...]:
        """Equal for queries that must get the same result from the same index version."""
        docs = None if self.document_ids is None else tuple(sorted(set(self.document_ids)))
        return (
            question_key(self.question),
            index_version,
            top_k,
            self.max_answers,
            docs,
            self.min_answer_probability,
            self.best_guess,
        )
