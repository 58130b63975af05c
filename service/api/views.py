"""Results as response models: the `service.serialize` JSON plus links to the cited spans."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from indexing.types import DocumentInfo
from service.api.schemas import AskResponse, DocumentSummary, SearchResponse
from service.serialize import ask_json, search_json
from service.types import AskResult, SearchResult


def document_url(doc_id: str, start: int | None = None, end: int | None = None, base: str = "") -> str:
    url = f"{base.rstrip('/')}/v1/documents/{quote(doc_id, safe='/')}"
    if start is not None and end is not None:
        url += f"?start={start}&end={end}"
    return url


def _with_passage_urls(passages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**p, "url": document_url(p["doc_id"], p["start"], p["end"])} for p in passages]


def ask_response(result: AskResult) -> AskResponse:
    data = ask_json(result)
    for answer in data["answers"]:
        answer["citation"]["url"] = document_url(answer["doc_id"], answer["start"], answer["end"])
    data["passages"] = _with_passage_urls(data["passages"])
    return AskResponse.model_validate(data)


def search_response(result: SearchResult) -> SearchResponse:
    data = search_json(result)
    data["passages"] = _with_passage_urls(data["passages"])
    return SearchResponse.model_validate(data)


def document_summary(info: DocumentInfo) -> DocumentSummary:
    return DocumentSummary(
        id=info.id,
        title=info.title,
        date=info.date,
        chunk_count=info.chunk_count,
        length=info.length,
        url=document_url(info.id),
    )
