"""The service's results: passages, answers with their citations, and the whole result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from citeqa.indexing.types import Chunk, DocumentInfo

# How sure an answer is: "answer" at or above the answer threshold (confident); "not_sure" between the
# floor and that threshold, or a best guess asked for below the floor. Below the floor: no answer at all.
ConfidenceLevel = Literal["answer", "not_sure"]
# A whole result: its best answer's level, or "none" when it gives no answer.
Outcome = Literal["answer", "not_sure", "none"]


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its retrieval evidence."""

    chunk: Chunk
    title: str
    rank: int
    score: float  # fused retrieval score, 0..1
    dense_score: float | None
    bm25_score: float | None


@dataclass(frozen=True)
class TextSpan:
    """A piece of a document: `document.text[start:end] == text`."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Citation:
    doc_id: str
    title: str
    date: str | None
    start: int
    end: int
    page: int | None
    sentence: TextSpan
    passage_id: str
    passage: TextSpan
    context: TextSpan
    # The headings the answer lies under, outermost first (("2. Leave", "2.2 Entitlement")); () when the
    # document has none. Policy readers cite by section.
    # (By keyword only: the wire's CitationOut extends this class with a field of its own.)
    section: tuple[str, ...] = field(default=(), kw_only=True)


@dataclass(frozen=True)
class Answer:
    text: str
    score: float  # the calibrated probability that this answer is right
    reader_margin: float  # span score minus the no-answer score of its window
    citation: Citation
    features: dict[str, float] = field(default_factory=dict, compare=False)  # what `score` came from
    confidence_level: ConfidenceLevel = "answer"  # set by `AnswerAggregator.decide`

    @property
    def start(self) -> int:
        return self.citation.start

    @property
    def end(self) -> int:
        return self.citation.end

    @property
    def doc_id(self) -> str:
        return self.citation.doc_id


@dataclass
class AskResult:
    question: str
    answers: list[Answer]
    passages: list[Passage]
    no_answer: bool
    message: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    index_version: str = ""
    # Every distinct answer scored, before abstention (not sent to clients): what the evaluation
    # replays the abstention decision on.
    candidates: list[Answer] = field(default_factory=list)

    @property
    def confidence_level(self) -> Outcome:
        """The best answer's confidence level, or "none" when there is no answer."""
        return self.answers[0].confidence_level if self.answers else "none"


@dataclass
class SearchResult:
    query: str
    passages: list[Passage]
    timings_ms: dict[str, float] = field(default_factory=dict)
    index_version: str = ""


@dataclass(frozen=True)
class DocumentPage:
    """One page of the live index's documents."""

    documents: list[DocumentInfo]
    total: int
    offset: int
    limit: int
    index_version: str
