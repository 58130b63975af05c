"""A bounded LRU cache of ask results, keyed on the normalised question, index version and parameters.

The index version is part of the key, so an index update makes every older entry unreachable;
those entries then age out of the LRU order instead of being served. Hits show on /metrics as the
count of the `cache` stage (citeqa_stage_duration_seconds_count{stage="cache"}).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence

from citeqa.service.qa.types import AskResult


def question_key(question: str) -> str:
    """Case and spacing do not change the answer: the reader and embedder are uncased models."""
    return " ".join(question.casefold().split())


def ask_key(
    question: str,
    index_version: str,
    top_k: int,
    max_answers: int | None,
    document_ids: Sequence[str] | None,
    min_answer_probability: float | None = None,
    best_guess: bool = False,
) -> tuple[Hashable, ...]:
    docs = None if document_ids is None else tuple(sorted(set(document_ids)))
    return (
        question_key(question),
        index_version,
        top_k,
        max_answers,
        docs,
        min_answer_probability,
        best_guess,
    )


class AnswerCache:
    """Thread-safe; `capacity` 0 turns it off."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[Hashable, ...], AskResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Hashable, ...]) -> AskResult | None:
        if self.capacity <= 0:
            return None
        with self._lock:
            result = self._entries.get(key)
            if result is not None:
                self._entries.move_to_end(key)
            return result

    def put(self, key: tuple[Hashable, ...], result: AskResult) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._entries[key] = result
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
