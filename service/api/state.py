"""What one app instance holds: settings, the pipeline, its worker pools, metrics and feedback."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from service.api.feedback_store import FeedbackStore
from service.api.metrics import Metrics
from service.pipeline import QAPipeline
from service.settings import Settings

T = TypeVar("T")


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

    def start(self) -> None:
        self._inference = anyio.CapacityLimiter(self.settings.inference_workers)
        # One index update at a time, on its own thread, so that queries keep their workers.
        self._updates = anyio.CapacityLimiter(1)

    @property
    def ready(self) -> bool:
        return self.models_loaded and self.pipeline.ready

    async def infer(self, fn: Callable[[], T]) -> T:
        """Run model work on the inference pool, off the event loop."""
        return await anyio.to_thread.run_sync(fn, limiter=self._inference)

    async def infer_queued(self, fn: Callable[[], T]) -> tuple[T, float]:
        """`infer`, also returning the milliseconds the call waited for a free worker."""
        submitted = time.perf_counter()
        started: list[float] = []

        def run() -> T:
            started.append(time.perf_counter())
            return fn()

        result = await self.infer(run)
        return result, round((started[0] - submitted) * 1000, 2)

    async def io(self, fn: Callable[[], T]) -> T:
        """Blocking I/O that is not model work (SQLite writes)."""
        return await anyio.to_thread.run_sync(fn)

    async def update(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self._updates)
