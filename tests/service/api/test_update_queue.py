"""The update queue (issue 19): an 18-byte invalid file waited 141 s for its 422 behind four large uploads
whose clients had left 120 s earlier, and those still ran. Now an upload is parsed (and refused) before it
queues, the queue is bounded (429 when full), and a queued update whose client left is never run.

A real server; one upload is held inside the single update worker by a gate, so the queue behind it is
observable."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from citeqa.eval.bench.live_server import serve_app
from citeqa.service.api import create_app
from citeqa.service.qa.pipeline import QAPipeline

from tests.service.api.conftest import API_KEY

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {API_KEY}"}
QUEUE = 2


@dataclass
class Gated:
    url: str
    pipeline: QAPipeline
    gate: threading.Event
    entered: threading.Event
    ran: list[str]


@pytest.fixture
def gated(make_pipeline: Callable[..., QAPipeline]) -> Iterator[Gated]:
    pipeline = make_pipeline(api_key=API_KEY, update_queue_size=QUEUE)
    gate, entered, ran = threading.Event(), threading.Event(), []
    upload = pipeline.upload_document

    def held_upload(doc_id: str, data: bytes, *args: Any, **kwargs: Any) -> Any:
        ran.append(doc_id)
        if doc_id == "held.txt":
            entered.set()
            assert gate.wait(60)
        return upload(doc_id, data, *args, **kwargs)

    pipeline.upload_document = held_upload  # type: ignore[method-assign]
    with serve_app(create_app(pipeline=pipeline)) as url:
        try:
            yield Gated(url, pipeline, gate, entered, ran)
        finally:
            gate.set()


def _upload(
    url: str, doc_id: str, data: bytes, results: dict[str, httpx.Response] | None = None
) -> httpx.Response:
    response = httpx.post(f"{url}/v1/documents", files={"file": (doc_id, data)}, headers=AUTH, timeout=60)
    if results is not None:
        results[doc_id] = response
    return response


def _hold_the_worker(gated: Gated, results: dict[str, httpx.Response]) -> threading.Thread:
    held = threading.Thread(
        target=_upload, args=(gated.url, "held.txt", b"Held\n\nThis upload waits at the gate.\n", results)
    )
    held.start()
    assert gated.entered.wait(30)
    return held


def test_an_invalid_upload_is_refused_at_once_while_the_queue_is_busy(gated: Gated) -> None:
    results: dict[str, httpx.Response] = {}
    held = _hold_the_worker(gated, results)
    started = time.monotonic()
    refused = _upload(gated.url, "bad.txt", b"x\x00y" * 6)
    waited = time.monotonic() - started
    print(f"invalid upload refused after {waited * 1000:.0f} ms with the update worker busy")
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "unreadable_document"
    assert not gated.gate.is_set()  # answered while the worker was still held
    gated.gate.set()
    held.join(60)
    assert results["held.txt"].status_code == 201


def test_a_full_queue_answers_429(gated: Gated) -> None:
    results: dict[str, httpx.Response] = {}
    held = _hold_the_worker(gated, results)
    queued = threading.Thread(
        target=_upload, args=(gated.url, "queued.txt", b"Queued\n\nThis one waits its turn.\n", results)
    )
    queued.start()
    time.sleep(1.0)  # it is waiting in the queue
    full = _upload(gated.url, "one-too-many.txt", b"Too many\n\nThe queue is full.\n")
    assert full.status_code == 429, full.text
    assert full.json()["error"]["code"] == "update_queue_full" and "retry-after" in full.headers
    gated.gate.set()
    for thread in (held, queued):
        thread.join(60)
    assert results["held.txt"].status_code == 201 and results["queued.txt"].status_code == 201


def test_a_queued_upload_whose_client_left_is_never_run(gated: Gated) -> None:
    results: dict[str, httpx.Response] = {}
    held = _hold_the_worker(gated, results)
    boundary = "gone-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="gone.txt"\r\n\r\n'
        "Gone\n\nThis client leaves before its turn.\n"
        f"\r\n--{boundary}--\r\n"
    ).encode()
    host, port = gated.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/documents HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {API_KEY}\r\n".encode()
            + f"Content-Type: multipart/form-data; boundary={boundary}\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(1.0)  # parsed and waiting in the queue
    gated.gate.set()  # the client has gone; now the worker is free
    held.join(60)
    time.sleep(1.0)
    assert results["held.txt"].status_code == 201
    assert "gone.txt" not in gated.ran
    assert gated.pipeline.index.snapshot.document("gone.txt") is None
