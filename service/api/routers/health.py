"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from citeqa.service.api.internal.deps import StateDep
from citeqa.service.wire import HealthResponse, ReadyResponse
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """The process is up and serving HTTP."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def readyz(state: StateDep) -> Response:
    """Ready once the models and an index are loaded; 503 (with the reason) before."""
    problem = await state.load_new_index() if state.models_loaded else None
    if state.ready:
        pipeline = state.pipeline
        body = ReadyResponse(
            ready=True,
            message="ready",
            index_version=pipeline.index_version,
            documents=pipeline.document_count,
        )
        return JSONResponse(body.model_dump(), status_code=200)
    if problem or state.load_error:
        message = problem or state.load_error or ""
    elif not state.models_loaded:
        message = "loading the models and the index"
    else:
        message = "no index loaded: run `citeqa index` or upload a document"
    return JSONResponse(ReadyResponse(ready=False, message=message).model_dump(), status_code=503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(state: StateDep) -> Response:
    state.metrics.ready.set(1 if state.ready else 0)
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
