"""Batching across concurrent questions: the reader's forward passes of questions read at the same time
are merged into one, run by one thread.

On two cores one forward pass of 4 windows already uses both; questions read in parallel threads only
take turns on the cores (and contend for them). Merged, the matrix products run on larger, better-used
blocks, so answers per second grow with the number of clients instead of staying flat.

A single client sees no wait: the batcher only waits (at most `wait_s`) for questions that have entered
the reader and are still being tokenized; what arrives while a batch runs is merged into the next one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from citeqa.indexing.tokenizers import Inputs

Logits = tuple[np.ndarray, np.ndarray]  # start and end logits, float32, rows x tokens


@dataclass
class _Request:
    inputs: Inputs
    rows: int
    tokens: int
    done: threading.Event = field(default_factory=threading.Event)
    result: Logits | None = None
    error: BaseException | None = None


def merge(requests: list[_Request], pad: dict[str, int]) -> Inputs:
    """One batch of every request's rows, padded on the right to the longest (attention mask 0 there)."""
    width = max(r.tokens for r in requests)
    merged = {}
    for name in requests[0].inputs:
        parts = []
        for r in requests:
            array = r.inputs[name]
            if array.shape[1] < width:
                array = np.pad(array, ((0, 0), (0, width - array.shape[1])), constant_values=pad.get(name, 0))
            parts.append(array)
        merged[name] = np.ascontiguousarray(np.concatenate(parts, axis=0))
    return merged


class ForwardBatcher:
    """Runs `forward` on one daemon thread over the merged rows of the requests waiting for it.

    `submit` blocks the calling thread until its own logits are back. A batch holds at most `max_rows`
    windows (one request larger than that runs alone); requests keep their arrival order.
    """

    def __init__(
        self,
        forward: Callable[[Inputs], Logits],
        pad: dict[str, int],
        max_rows: int = 32,
        wait_s: float = 0.003,
    ) -> None:
        self._forward = forward
        self._pad = pad
        self.max_rows = max(1, max_rows)
        self.wait_s = max(0.0, wait_s)
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._expected = 0  # callers between `expect` and `submit`: about to join a batch
        self._closed = False
        self._thread: threading.Thread | None = None
        self.batches = 0  # forward passes run, and questions in them: for tests and the benchmark
        self.requests = 0

    def expect(self) -> None:
        """Announce a request that is on its way (being tokenized): a batch being formed waits for it."""
        with self._cond:
            self._expected += 1

    def unexpect(self) -> None:
        """The announced request will not come (its tokenization failed)."""
        with self._cond:
            self._expected = max(0, self._expected - 1)
            self._cond.notify_all()

    def submit(self, inputs: Inputs) -> Logits:
        """This request's logits, computed in a batch with whatever else is waiting. Call `expect` first."""
        ids = inputs["input_ids"]
        request = _Request(inputs, rows=int(ids.shape[0]), tokens=int(ids.shape[1]))
        with self._cond:
            if self._closed:
                raise RuntimeError("the reader's batcher is closed")
            self._expected = max(0, self._expected - 1)
            self._queue.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="citeqa-reader-batcher", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _queued_rows(self) -> int:
        return sum(r.rows for r in self._queue)

    def _next_batch(self) -> list[_Request] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed and not self._queue:
                return None
            # Wait, boundedly, only for questions already inside the reader: never for a lone client.
            deadline = time.monotonic() + self.wait_s
            while self._expected > 0 and self._queued_rows() < self.max_rows and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = [self._queue.pop(0)]
            rows = batch[0].rows
            while self._queue and rows + self._queue[0].rows <= self.max_rows:
                rows += self._queue[0].rows
                batch.append(self._queue.pop(0))
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                if len(batch) == 1:
                    start, end = self._forward(batch[0].inputs)
                else:
                    start, end = self._forward(merge(batch, self._pad))
                row = 0
                for r in batch:
                    r.result = (start[row : row + r.rows, : r.tokens], end[row : row + r.rows, : r.tokens])
                    row += r.rows
            except BaseException as exc:  # every caller of the batch gets the error, the thread lives on
                for r in batch:
                    r.error = exc
            self.batches += 1
            self.requests += len(batch)
            for r in batch:
                r.done.set()
