"""The JSON bodies that the HTTP API, the MCP tools, the CLI's --json and the evaluation harness share:
pydantic models for every request and response, and the one mapping into them from the QA core's types."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal
from urllib.parse import quote

from citeqa.indexing.types import DocumentInfo
from citeqa.service.qa.query import Query
from citeqa.service.qa.types import (
    Answer,
    AskResult,
    Citation,
    ConfidenceLevel,
    Outcome,
    Passage,
    SearchResult,
)
from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass as wire_dataclass

# Hard caps that hold whatever the settings say; the pipeline enforces the configured question limit.
MAX_TOP_K = 50
MAX_ANSWERS = 20
MAX_TEXT_FIELD = 10_000
MAX_FEEDBACK_FIELD = 2_000  # unauthenticated and stored: a question, an answer, a short comment
# Character offsets and paging stay within what SQLite stores as an integer.
MAX_OFFSET = 2**31 - 1


class ErrorBody(BaseModel):
    code: str = Field(description="a stable, machine-readable error code")
    message: str = Field(description="what went wrong and what to do about it")


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI's `responses` for a route's error statuses, each an ErrorResponse."""
    return {code: {"model": ErrorResponse} for code in codes}


# --- ask and search ---------------------------------------------------------------------------
class AskRequest(BaseModel):
    # Strict: JSON `true` is not 1 and "0.5" is not 0.5 (both were taken); a JSON integer is still a number.
    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(
        min_length=1, max_length=MAX_TEXT_FIELD, examples=["Which city was the first pilot?"]
    )
    top_k: int | None = Field(
        default=None, ge=1, le=MAX_TOP_K, description="passages retrieved and read (at most CITEQA_MAX_TOP_K)"
    )
    max_answers: int | None = Field(
        default=None, ge=1, le=MAX_ANSWERS, description="answers returned, best first"
    )
    document_ids: list[str] | None = Field(
        default=None, min_length=1, max_length=1000, description="search only these documents"
    )
    min_answer_probability: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="answers at least this likely to be right (their `score`) are confident "
        '(`confidence_level` "answer"); less likely ones, down to the calibrated floor, come back '
        '"not_sure". Default: the threshold calibrated with the reader. 0: every answer the reader '
        "finds is confident.",
    )
    best_guess: bool = Field(
        default=False,
        description="when no answer reaches the floor, return the most probable one anyway, marked "
        '"not_sure" (no_answer stays false whenever the reader found any span)',
    )

    def query(self) -> Query:
        return Query.of(
            self.question,
            self.top_k,
            self.max_answers,
            self.document_ids,
            self.min_answer_probability,
            self.best_guess,
        )


# The domain's Citation (service/qa/types.py) with the document URL: its fields are declared once, there.
@wire_dataclass(frozen=True)
class CitationOut(Citation):
    url: str = Field(description="the document endpoint at this span")


CONFIDENCE_LEVEL_DESCRIPTION = (
    '"answer": the probability that it is right (`score`) reached the answer threshold; '
    '"not_sure": below the threshold but at or above the floor (or a best guess asked for below it): '
    "low confidence, check the cited source"
)


class AnswerOut(BaseModel):
    text: str = Field(description="verbatim: the document's text[start:end]")
    score: float = Field(description="the calibrated probability that this answer is right")
    confidence_level: ConfidenceLevel = Field(description=CONFIDENCE_LEVEL_DESCRIPTION)
    reader_margin: float
    doc_id: str
    start: int
    end: int
    citation: CitationOut


class PassageOut(BaseModel):
    rank: int
    score: float
    dense_score: float | None
    bm25_score: float | None
    doc_id: str
    title: str
    chunk_id: str
    section: list[str] = Field(
        default_factory=list,
        description='the headings it lies under, outermost first (e.g. ["2. Annual leave", '
        '"2.2 Entitlement"]); empty when the document has none',
    )
    start: int
    end: int
    text: str
    url: str = Field(description="the document endpoint at this passage")


class AskTimings(BaseModel):
    model_config = ConfigDict(extra="allow")

    retrieve: float
    read: float
    total: float


class AskResponse(BaseModel):
    question: str
    no_answer: bool = Field(description="no answer reached the floor: `answers` is empty")
    confidence_level: Outcome = Field(
        description='the best answer\'s `confidence_level`, or "none" when there is no answer'
    )
    message: str = Field(
        description="empty for a confident answer; else what to tell the reader (low confidence, or "
        "that no answer was found in the documents)"
    )
    answers: list[AnswerOut]
    passages: list[PassageOut]
    timings_ms: AskTimings
    index_version: str


class SearchTimings(BaseModel):
    model_config = ConfigDict(extra="allow")

    retrieve: float
    total: float


class SearchResponse(BaseModel):
    query: str
    passages: list[PassageOut]
    timings_ms: SearchTimings
    index_version: str


# --- documents --------------------------------------------------------------------------------
class PageOut(BaseModel):
    number: int
    start: int
    end: int


class DocumentSummary(BaseModel):
    id: str
    title: str
    date: str | None
    chunk_count: int
    length: int
    url: str


class DocumentList(BaseModel):
    documents: list[DocumentSummary]
    total: int
    offset: int
    limit: int
    index_version: str


class DocumentSpan(BaseModel):
    start: int
    end: int
    text: str = Field(description="the document's text[start:end]")
    before: str = Field(description="context before the span")
    after: str = Field(description="context after the span")
    context_start: int
    context_end: int
    page: int | None


class DocumentOut(BaseModel):
    id: str
    title: str
    date: str | None
    length: int
    content_hash: str
    pages: list[PageOut]
    text: str | None = Field(description="the whole text; null when a span was asked for")
    span: DocumentSpan | None = Field(default=None, description="present when start and end were given")
    index_version: str


class UploadResponse(BaseModel):
    document: DocumentSummary
    replaced: bool = Field(description="a document with this id existed and was replaced")
    index_version: str


class DeleteResponse(BaseModel):
    deleted: str
    index_version: str


# --- feedback ---------------------------------------------------------------------------------
class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=MAX_FEEDBACK_FIELD)
    answer: str = Field(
        max_length=MAX_FEEDBACK_FIELD, description="the answer judged; empty for an abstention"
    )
    correct: bool
    comment: str | None = Field(default=None, max_length=MAX_FEEDBACK_FIELD)
    doc_id: str | None = Field(default=None, max_length=1000)
    start: int | None = Field(default=None, ge=0, le=MAX_OFFSET)
    end: int | None = Field(default=None, ge=0, le=MAX_OFFSET)


class FeedbackResponse(BaseModel):
    id: int


# --- health -----------------------------------------------------------------------------------
class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    ready: bool
    message: str
    index_version: str | None = None
    documents: int | None = None


# --- OpenAI-compatible chat ---------------------------------------------------------------------
class ChatContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[ChatContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "\n".join(part.text for part in self.content if part.type == "text" and part.text)


class ChatCompletionRequest(BaseModel):
    # Clients send many sampling options (temperature, n, ...); they mean nothing to an extractive reader.
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=2000)
    stream: bool = Field(default=False, strict=True)  # "yes" is not true (as in /v1/ask)
    best_guess: bool = Field(
        default=False,
        strict=True,
        description="citeqa's own option: when no answer reaches the floor, reply with the most probable "
        "one anyway, marked not sure",
    )


class ChatCitation(BaseModel):
    number: int
    doc_id: str
    title: str
    section: list[str] = Field(
        default_factory=list, description="the headings the answer lies under, outermost first"
    )
    start: int
    end: int
    quote: str = Field(description="the answer, verbatim")
    sentence: str
    url: str
    score: float
    confidence_level: ConfidenceLevel = Field(description=CONFIDENCE_LEVEL_DESCRIPTION)


class ChatReplyMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatReplyMessage
    finish_reason: Literal["stop"] = "stop"


class ChatUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage = Field(default_factory=ChatUsage)
    citations: list[ChatCitation]
    no_answer: bool
    confidence_level: Outcome = Field(
        description='the best answer\'s `confidence_level`, or "none" when there is no answer'
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "citeqa"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def error_json(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


# Domain types to wire models: the one place they are mapped.


# How a section path reads to people (CLI, chat Sources, the web page): "2. Annual leave > 2.2 Entitlement".
SECTION_SEPARATOR = " > "


def shown_probability(score: float) -> str:
    """A probability to two places, rounded down: 0.899 rounded to "0.90" read as the confident threshold
    while the answer was marked not sure."""
    return f"{math.floor(score * 100 + 1e-9) / 100:.2f}"


def section_label(path: list[str] | tuple[str, ...]) -> str:
    return SECTION_SEPARATOR.join(path)


def document_url(doc_id: str, start: int | None = None, end: int | None = None, base: str = "") -> str:
    url = f"{base.rstrip('/')}/v1/documents/{quote(doc_id, safe='/')}"
    if start is not None and end is not None:
        url += f"?start={start}&end={end}"
    return url


def passage_out(passage: Passage) -> PassageOut:
    chunk = passage.chunk
    return PassageOut(
        rank=passage.rank,
        score=passage.score,
        dense_score=passage.dense_score,
        bm25_score=passage.bm25_score,
        doc_id=chunk.doc_id,
        title=passage.title,
        chunk_id=chunk.id,
        section=list(chunk.section),
        start=chunk.start,
        end=chunk.end,
        text=chunk.text,
        url=document_url(chunk.doc_id, chunk.start, chunk.end),
    )


def answer_out(answer: Answer) -> AnswerOut:
    citation = answer.citation
    return AnswerOut(
        text=answer.text,
        score=answer.score,
        confidence_level=answer.confidence_level,
        reader_margin=answer.reader_margin,
        doc_id=citation.doc_id,
        start=citation.start,
        end=citation.end,
        citation=CitationOut(
            **{f.name: getattr(citation, f.name) for f in dataclasses.fields(citation)},
            url=document_url(citation.doc_id, citation.start, citation.end),
        ),
    )


def ask_response(result: AskResult) -> AskResponse:
    return AskResponse(
        question=result.question,
        no_answer=result.no_answer,
        confidence_level=result.confidence_level,
        message=result.message,
        answers=[answer_out(a) for a in result.answers],
        passages=[passage_out(p) for p in result.passages],
        timings_ms=AskTimings.model_validate(result.timings_ms),
        index_version=result.index_version,
    )


def search_response(result: SearchResult) -> SearchResponse:
    return SearchResponse(
        query=result.query,
        passages=[passage_out(p) for p in result.passages],
        timings_ms=SearchTimings.model_validate(result.timings_ms),
        index_version=result.index_version,
    )


def document_summary(info: DocumentInfo) -> DocumentSummary:
    return DocumentSummary(
        id=info.id,
        title=info.title,
        date=info.date,
        chunk_count=info.chunk_count,
        length=info.length,
        url=document_url(info.id),
    )


def ask_json(result: AskResult) -> dict[str, Any]:
    return ask_response(result).model_dump(mode="json")


def passage_json(passage: Passage) -> dict[str, Any]:
    return passage_out(passage).model_dump(mode="json")
