"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import anyio
from citeqa.service.api.internal.deps import StateDep
from citeqa.service.wire import HealthResponse, ReadyResponse
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

router = APIRouter(tags=["operations"])
READY_CHECK_S = 2.0


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """The process is up and serving HTTP."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def readyz(state: StateDep) -> Response:
    """Ready once the models and an index are loaded; 503 (with the reason) before. Answered within
    READY_CHECK_S even when the store does not answer (a database down): checked on a thread of its own,
    one check at a time, so that /healthz and /metrics never wait behind it."""
    body = None
    with anyio.move_on_after(READY_CHECK_S):
        body = await anyio.to_thread.run_sync(
            state.readiness, limiter=state.readiness_checks, abandon_on_cancel=True
        )
    if body is None:
        body = ReadyResponse(
            ready=False, message=f"the index store did not answer within {READY_CHECK_S:.0f} s"
        )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(state: StateDep) -> Response:
    state.metrics.ready.set(1 if state.ready else 0)
    size = state.pipeline.loaded_index_size()  # the version in memory: /metrics never queries the store
    if size is not None:
        state.metrics.index_documents.set(size[0])
        state.metrics.index_chunks.set(size[1])
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
