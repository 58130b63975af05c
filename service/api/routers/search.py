"""GET /v1/search: ranked passages with citations, without the reader."""

from __future__ import annotations

from typing import Annotated

from citeqa.service.api.internal.deps import PipelineDep, StateDep
from citeqa.service.wire import MAX_TEXT_FIELD, MAX_TOP_K, SearchResponse, error_responses, search_response
from fastapi import APIRouter, Query, Request

router = APIRouter(tags=["questions"])


@router.get(
    "/v1/search",
    response_model=SearchResponse,
    responses=error_responses(422, 429, 503),
)
async def search(
    request: Request,
    state: StateDep,
    pipeline: PipelineDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_TEXT_FIELD, description="the query")],
    top_k: Annotated[int | None, Query(ge=1, le=MAX_TOP_K, description="passages returned")] = None,
) -> SearchResponse:
    return search_response(await state.query(request, lambda: pipeline.search(q, top_k=top_k)))
