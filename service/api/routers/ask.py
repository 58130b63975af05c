"""POST /v1/ask: cited verbatim answers, confident or "not sure" (or an honest abstention), with the
passages read."""

from __future__ import annotations

from citeqa.service.api.internal.deps import PipelineDep, StateDep, require_json
from citeqa.service.wire import AskRequest, AskResponse, ask_response, error_responses
from fastapi import APIRouter, Request

router = APIRouter(tags=["questions"])


@router.post(
    "/v1/ask",
    response_model=AskResponse,
    responses=error_responses(400, 404, 413, 415, 422, 429, 503),  # 404: document_ids not in the index
    dependencies=[require_json],
)
async def ask(body: AskRequest, request: Request, state: StateDep, pipeline: PipelineDep) -> AskResponse:
    result = await state.query(
        request,
        lambda: pipeline.ask(body.query()),
    )
    return ask_response(result)
