"""POST /v1/ask: cited verbatim answers, confident or "not sure" (or an honest abstention), with the
passages read."""

from __future__ import annotations

from citeqa.service.api.internal.deps import PipelineDep, StateDep, require_json
from citeqa.service.wire import AskRequest, AskResponse, ErrorResponse, ask_response
from fastapi import APIRouter, Request

router = APIRouter(tags=["questions"])

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (400, 413, 415, 422, 503)
}


@router.post("/v1/ask", response_model=AskResponse, responses=ERRORS, dependencies=[require_json])
async def ask(body: AskRequest, request: Request, state: StateDep, pipeline: PipelineDep) -> AskResponse:
    result = await state.query(
        request,
        lambda: pipeline.ask(body.query()),
    )
    return ask_response(result)
