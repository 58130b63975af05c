"""API test fixtures: apps over the shared pipelines (models loaded once per session)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api import create_app
from service.api.liveness import wait_until_ready
from service.api.server import uvicorn_config
from service.pipeline import QAPipeline

API_KEY = "test-key-0123456789"
# A loopback name: the service refuses other Host headers (DNS-rebinding guard), "testserver" included.
LOOPBACK_URL = "http://127.0.0.1"
ClientFactory = Callable[..., TestClient]


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready: {client.get('/readyz').json()}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def client(seed_pipeline: QAPipeline) -> Iterator[TestClient]:
    """Read-only: over the shared seed pipeline, with no API key configured (writes disabled)."""
    with TestClient(create_app(pipeline=seed_pipeline), base_url=LOOPBACK_URL) as test_client:
        yield test_client


@pytest.fixture
def writable_client(make_pipeline: Callable[..., QAPipeline]) -> Iterator[ClientFactory]:
    """Fresh pipelines (a copy of seeds/) with an API key, for tests that upload or delete."""
    stack: list[TestClient] = []

    def factory(index: bool = True, **overrides: object) -> TestClient:
        overrides.setdefault("api_key", API_KEY)
        pipeline = make_pipeline(index=index, **overrides)
        test_client = TestClient(create_app(pipeline=pipeline), base_url=LOOPBACK_URL)
        test_client.__enter__()
        stack.append(test_client)
        return test_client

    yield factory
    for test_client in stack:
        test_client.__exit__(None, None, None)


@contextlib.contextmanager
def serve(app: FastAPI, ready_timeout: float = 60.0) -> Iterator[str]:
    """Run `app` under a real uvicorn server on a free loopback port; yields its base URL once ready."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound before the server starts: no race for the port
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn_config(app, app.state.citeqa.settings, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until_ready(url, ready_timeout, poll_s=0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
