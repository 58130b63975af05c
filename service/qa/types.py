"""The service's results: passages, answers with their citations, and the whole result."""

from __future__ import annotations

from dataclasses import dataclass, field

from citeqa.indexing.types import Chunk


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
    section: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    text: str
    score: float  # the calibrated probability that this answer is right
    reader_margin: float  # span score minus the no-answer score of its window
    citation: Citation
    features: dict[str, float] = field(default_factory=dict, compare=False)  # what `score` came from

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


@dataclass
class SearchResult:
    query: str
    passages: list[Passage]
    timings_ms: dict[str, float] = field(default_factory=dict)
    index_version: str = ""
