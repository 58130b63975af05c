"""What one app instance holds: settings, the pipeline, its worker pools, metrics and feedback."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
from citeqa.indexing.errors import CiteqaError
from citeqa.service.api.internal.errors import ApiError
from citeqa.service.api.internal.feedback_store import FeedbackStore
from citeqa.service.api.internal.metrics import Metrics
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.types import AskResult, SearchResult
from citeqa.service.settings import Settings
from citeqa.service.wire import ReadyResponse
from fastapi import Request

T = TypeVar("T")
QueryResult = TypeVar("QueryResult", AskResult, SearchResult)


# /metrics labels of the three outcomes ("answered" kept from before "not sure" existed: confident only).
OUTCOME_LABELS = {"answer": "answered", "not_sure": "not_sure", "none": "no_answer"}


class StillLoadingError(CiteqaError):
    """Queries came before the models finished loading, or after they failed to load."""


class ServiceState:
    def __init__(self, settings: Settings, pipeline: QAPipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = Metrics()
        self.feedback = FeedbackStore(settings.resolved_feedback_db, settings.max_feedback_bytes)
        self.models_loaded = False
        self.load_error: str | None = None
        # Created inside the running event loop (in the lifespan).
        self._inference: anyio.CapacityLimiter | None = None
        self._updates: anyio.CapacityLimiter | None = None
        self._queued_updates = 0  # running or waiting for the update worker
        self._unloadable: tuple[str | None, str] = (None, "")  # a live version that failed to load, and why

    def start(self) -> None:
        self._inference = anyio.CapacityLimiter(self.settings.inference_workers)
        # One index update at a time, on its own thread, so that queries keep their workers.
        self._updates = anyio.CapacityLimiter(1)
        # Readiness checks one at a time: while the store does not answer, later checks wait out their
        # bound instead of piling up threads.
        self.readiness_checks = anyio.CapacityLimiter(1)

    @property
    def ready(self) -> bool:
        return self.models_loaded and self.pipeline.ready

    def readiness(self) -> ReadyResponse:
        """Whether the service can answer, and why not; loads an index that appeared since start-up
        (`citeqa index` in another process, a rebuild over a damaged one), so that readiness does not wait
        for a query. Each live version is tried once: a load balancer's health checks must not each verify
        a bad index. It may query the store: run it off the event loop (/readyz bounds its wait)."""
        if not self.models_loaded:
            return ReadyResponse(ready=False, message=self.load_error or "loading the models and the index")
        pipeline = self.pipeline
        try:
            if not pipeline.ready:
                live = pipeline.store.live_version()
                if live is None:
                    message = self.load_error or "no index loaded: run `citeqa index` or upload a document"
                    return ReadyResponse(ready=False, message=message)
                if live == self._unloadable[0]:
                    return ReadyResponse(ready=False, message=self._unloadable[1])
                try:
                    pipeline.index  # noqa: B018 - loads the live version
                except CiteqaError as exc:
                    self._unloadable = (live, str(exc))
                    raise
                self.load_error = None
            version, documents = pipeline.index_version, pipeline.document_count
        except CiteqaError as exc:
            return ReadyResponse(ready=False, message=str(exc))
        return ReadyResponse(ready=True, message="ready", index_version=version, documents=documents)

    async def infer(self, fn: Callable[[], T]) -> T:
        """Run model work on the inference pool, off the event loop."""
        return await anyio.to_thread.run_sync(fn, limiter=self._inference)

    def loaded_pipeline(self) -> QAPipeline:
        """The pipeline, once its models are loaded; StillLoadingError (with the reason) before."""
        if not self.models_loaded:
            raise StillLoadingError(
                self.load_error or "the service is still loading its models; retry shortly"
            )
        return self.pipeline

    async def query(self, request: Request, fn: Callable[[], QueryResult]) -> QueryResult:
        """Run an ask or a search on the inference pool; its stage timings, with the time it waited for
        a free worker as `queue`, go to the request's access-log line and to /metrics."""
        submitted = time.perf_counter()
        started: list[float] = []

        def run() -> QueryResult:
            started.append(time.perf_counter())
            return fn()

        result = await self.infer(run)
        stages = {"queue": round((started[0] - submitted) * 1000, 2), **result.timings_ms}
        request.state.timings_ms = stages
        self.metrics.observe_stages(stages)
        if isinstance(result, AskResult):
            self.metrics.answers.labels(outcome=OUTCOME_LABELS[result.confidence_level]).inc()
        return result

    async def io(self, fn: Callable[[], T]) -> T:
        """Blocking I/O that is not model work (SQLite writes)."""
        return await anyio.to_thread.run_sync(fn)

    async def update(self, fn: Callable[[], T], request: Request | None = None) -> T:
        """Run an index update on the single update worker, in turn.

        The queue is bounded (429 beyond `update_queue_size`), and an update still waiting when its
        client disconnects is dropped, never run: a client that gave up must not keep others waiting.
        Once running, an update finishes (it is journaled; the disconnect only discards the reply)."""
        if self._queued_updates >= self.settings.update_queue_size:
            raise ApiError(
                429,
                "update_queue_full",
                f"{self._queued_updates} uploads or deletes are already queued; retry shortly",
                headers={"Retry-After": "5"},
            )
        self._queued_updates += 1
        try:
            if request is None:
                return await anyio.to_thread.run_sync(fn, limiter=self._updates)
            result: list[T] = []
            failure: list[Exception] = []
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_cancel_on_disconnect, request, tasks.cancel_scope)
                try:
                    # Cancelled while `fn` runs, this waits for `fn` to finish (the thread is not abandoned).
                    result.append(await anyio.to_thread.run_sync(fn, limiter=self._updates))
                except Exception as exc:  # raised below, outside the group, which would wrap it
                    failure.append(exc)
                tasks.cancel_scope.cancel()
            if failure:
                raise failure[0]
            if not result:
                raise ApiError(499, "client_gone", "the client disconnected before its update ran")
            return result[0]
        finally:
            self._queued_updates -= 1


async def _cancel_on_disconnect(request: Request, scope: anyio.CancelScope) -> None:
    """Once the body has been read, the next message a request receives is its client's disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
