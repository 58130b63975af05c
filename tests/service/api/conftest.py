"""API test fixtures: apps over the shared pipelines (models loaded once per session)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from citeqa.service.api import create_app
from citeqa.service.qa.pipeline import QAPipeline
from fastapi.testclient import TestClient

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
