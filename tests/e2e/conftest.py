"""A real uvicorn server on a free loopback port, shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from citeqa.eval.bench.live_server import serve_app
from citeqa.service.api import create_app
from citeqa.service.qa.pipeline import QAPipeline

API_KEY = "e2e-secret-key"


@dataclass
class LiveServer:
    url: str
    pipeline: QAPipeline


@pytest.fixture(scope="session")
def live_server(make_pipeline: Callable[..., QAPipeline]) -> Iterator[LiveServer]:
    pipeline = make_pipeline(api_key=API_KEY)
    with serve_app(create_app(pipeline=pipeline), ready_timeout=30) as url:
        yield LiveServer(url=url, pipeline=pipeline)
