"""Results as the HTTP API's response models, mapped once here from `service.types`: the API, the MCP
tools, the CLI's --json and the evaluation harness (through `service.serialize`) all send this shape."""

from __future__ import annotations

import dataclasses
from urllib.parse import quote

from indexing.types import DocumentInfo
from service.api.schemas import (
    AnswerOut,
    AskResponse,
    AskTimings,
    CitationOut,
    DocumentSummary,
    PassageOut,
    SearchResponse,
    SearchTimings,
)
from service.types import Answer, AskResult, Passage, SearchResult


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
        reader_margin=answer.reader_margin,
        doc_id=citation.doc_id,
        start=citation.start,
        end=citation.end,
        citation=CitationOut(
            **dataclasses.asdict(citation), url=document_url(citation.doc_id, citation.start, citation.end)
        ),
    )


def ask_response(result: AskResult) -> AskResponse:
    return AskResponse(
        question=result.question,
        no_answer=result.no_answer,
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
