"""create_app: the FastAPI application, its lifespan (load models and index once) and its routes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import fastapi_offline
from citeqa.indexing.errors import CiteqaError
from citeqa.service.api.internal.errors import install_error_handlers
from citeqa.service.api.internal.guard import GuardMiddleware, HostGuardMiddleware
from citeqa.service.api.internal.middleware import RequestMiddleware
from citeqa.service.api.internal.state import ServiceState
from citeqa.service.api.routers import ask, chat, documents, feedback, health, search
from citeqa.service.api.routers.mcp import McpHttpEndpoint, build_mcp_server
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.settings import Settings
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Route

log = logging.getLogger("citeqa.api")

WEB_DIR = Path(__file__).parent / "web"
# Swagger UI and ReDoc bundles as shipped in the fastapi-offline wheel (only its files are used).
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"


def _warm_up(state: ServiceState) -> None:
    """Load the models and, when one exists, the index; without an index the service stays unready."""
    pipeline = state.pipeline
    try:
        pipeline.embedder.warm_up()
        pipeline.reader.warm_up()
    except Exception as exc:  # any failure here must leave a message on /readyz, not a dead loader
        state.load_error = f"could not load the models: {exc}"
        log.exception("could not load the models")
        return
    try:
        pipeline.recover_interrupted_update()  # an upload or delete a crash cut short
        if not pipeline.ready and pipeline.store.live_version() is not None:
            pipeline.reload()
        if pipeline.ready:
            # One question end to end, so that the first user does not pay for first-call set-up.
            pipeline.ask("What is this document about?")
        else:
            log.warning("no index at %s: run `citeqa index` or upload a document", pipeline.store.describe())
    except CiteqaError as exc:
        # Queries will answer 503 with the same message until the index is repaired.
        state.load_error = str(exc)
        log.error("could not load the index: %s", exc)
    except OSError as exc:  # a data directory it cannot use: said on /readyz, not a loader dead for ever
        state.load_error = f"could not open the data directory: {exc}"
        log.error("could not open the data directory: %s", exc)
    state.models_loaded = True


def create_app(settings: Settings | None = None, pipeline: QAPipeline | None = None) -> FastAPI:
    """Pass `pipeline` to serve one that is already built (tests share loaded models this way)."""
    settings = settings or (pipeline.settings if pipeline is not None else Settings())
    state = ServiceState(settings, pipeline or QAPipeline(settings))
    mcp_server = build_mcp_server(state.loaded_pipeline, state.infer, settings.max_top_k)
    mcp_endpoint = McpHttpEndpoint(mcp_server, settings.host)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.start()
        async with anyio.create_task_group() as tasks, mcp_endpoint.running():
            if state.pipeline.ready:
                # A pipeline handed in already built: only warming is left, and it is quick.
                await anyio.to_thread.run_sync(_warm_up, state)
            else:
                # In the background, so that /healthz answers and /readyz says 503 while models load.
                tasks.start_soon(anyio.to_thread.run_sync, _warm_up, state)
            yield
            tasks.cancel_scope.cancel()

    app = FastAPI(
        title="citeqa",
        version="0.1.0",
        summary="Verbatim answers with exact citations from your documents, each confident or 'not sure', "
        "or an honest 'no answer found'.",
        lifespan=lifespan,
        # Served from local files below: the defaults load Swagger UI and ReDoc from a CDN (blank offline).
        docs_url=None,
        redoc_url=None,
    )
    app.state.citeqa = state
    install_error_handlers(app)
    # Added first, so it runs inside RequestMiddleware: refusals still get a request id, log and metrics.
    app.add_middleware(GuardMiddleware, settings=settings)
    app.add_middleware(HostGuardMiddleware, settings=settings)
    app.add_middleware(RequestMiddleware, get_state=lambda: state)
    for module in (ask, search, documents, feedback, chat, health):
        app.include_router(module.router)
    # "/mcp/" served, not redirected: clients that do not follow a 307 (curl, plain httpx) got no answer.
    for path in ("/mcp", "/mcp/"):
        app.router.routes.append(Route(path, endpoint=mcp_endpoint))
    # Before /static, which would otherwise claim /static/docs/... and answer 404.
    app.mount("/static/docs", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> FileResponse:
        return FileResponse(WEB_DIR / "docs.html", media_type="text/html")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> FileResponse:
        return FileResponse(WEB_DIR / "redoc.html", media_type="text/html")

    @app.get("/", include_in_schema=False)
    async def index_page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    return app
