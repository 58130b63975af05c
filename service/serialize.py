"""Plain-JSON views of results, shared by the CLI's --json output and the evaluation reports."""

from __future__ import annotations

import dataclasses
from typing import Any

from service.types import Answer, AskResult, Passage, SearchResult


def passage_json(passage: Passage) -> dict[str, Any]:
    chunk = passage.chunk
    return {
        "rank": passage.rank,
        "score": passage.score,
        "dense_score": passage.dense_score,
        "bm25_score": passage.bm25_score,
        "doc_id": chunk.doc_id,
        "title": passage.title,
        "chunk_id": chunk.id,
        "start": chunk.start,
        "end": chunk.end,
        "text": chunk.text,
    }


def answer_json(answer: Answer) -> dict[str, Any]:
    return {
        "text": answer.text,
        "score": answer.score,
        "reader_margin": answer.reader_margin,
        "doc_id": answer.doc_id,
        "start": answer.start,
        "end": answer.end,
        "citation": dataclasses.asdict(answer.citation),
    }


def ask_json(result: AskResult) -> dict[str, Any]:
    return {
        "question": result.question,
        "no_answer": result.no_answer,
        "message": result.message,
        "answers": [answer_json(a) for a in result.answers],
        "passages": [passage_json(p) for p in result.passages],
        "timings_ms": result.timings_ms,
        "index_version": result.index_version,
    }


def search_json(result: SearchResult) -> dict[str, Any]:
    return {
        "query": result.query,
        "passages": [passage_json(p) for p in result.passages],
        "timings_ms": result.timings_ms,
        "index_version": result.index_version,
    }
