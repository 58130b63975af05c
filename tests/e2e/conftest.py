"""A real uvicorn server on a free loopback port, shared by the end-to-end tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from service.api import create_app
from service.pipeline import QAPipeline

API_KEY = "e2e-secret-key"


@dataclass
class LiveServer:
    url: str
    pipeline: QAPipeline


@pytest.fixture(scope="session")
def live_server(make_pipeline: Callable[..., QAPipeline]) -> Iterator[LiveServer]:
    pipeline = make_pipeline(api_key=API_KEY)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound before the server starts: no race for the port
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(pipeline=pipeline), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.05)
    yield LiveServer(url=url, pipeline=pipeline)
    server.should_exit = True
    thread.join(timeout=15)
    sock.close()
