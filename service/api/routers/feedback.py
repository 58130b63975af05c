"""POST /v1/feedback: was an answer right? Stored in SQLite for `citeqa feedback export`."""

from __future__ import annotations

from citeqa.service.api.internal.deps import StateDep, require_json
from citeqa.service.api.internal.errors import ApiError
from citeqa.service.api.internal.feedback_store import FeedbackEntry, FeedbackFullError
from citeqa.service.wire import FeedbackRequest, FeedbackResponse, error_responses
from fastapi import APIRouter

router = APIRouter(tags=["feedback"])


@router.post(
    "/v1/feedback",
    response_model=FeedbackResponse,
    status_code=201,
    dependencies=[require_json],
    responses=error_responses(400, 413, 415, 422, 429, 503, 507),
)
async def feedback(body: FeedbackRequest, state: StateDep) -> FeedbackResponse:
    if not body.question.strip():
        raise ApiError(422, "invalid_question", "the question is empty")
    if (body.start is None) != (body.end is None) or (
        body.start is not None and body.end is not None and body.start > body.end
    ):
        raise ApiError(422, "invalid_span", "give start <= end together, or neither")
    entry = FeedbackEntry(
        question=body.question.strip(),
        answer=body.answer,
        correct=body.correct,
        comment=body.comment,
        doc_id=body.doc_id,
        start=body.start,
        end=body.end,
    )
    try:
        feedback_id = await state.io(lambda: state.feedback.add(entry))
    except FeedbackFullError as exc:
        raise ApiError(507, "feedback_full", f"{exc}; export and clear it to accept more") from None
    return FeedbackResponse(id=feedback_id)
