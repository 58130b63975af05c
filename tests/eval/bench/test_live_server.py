"""The live-server helpers and the over-HTTP part of the benchmark, against the real server."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from citeqa.eval.bench.live_server import free_port
from citeqa.eval.bench.over_http import run_http
from citeqa.eval.bench.quality import seed_questions

pytestmark = pytest.mark.e2e


def test_run_http_times_ask_and_search_against_the_real_server(make_pipeline: Any) -> None:
    pipeline = make_pipeline()
    result = run_http(pipeline.settings, pipeline.settings, seed_questions()[:3], passes=1)
    endpoints = result["endpoints_ms"]
    assert endpoints["POST /v1/ask (client)"]["n"] == 3
    assert endpoints["GET /v1/search (client)"]["n"] == 3
    # The server's own pipeline time cannot exceed what the client waited for the same requests.
    assert endpoints["POST /v1/ask (server pipeline)"]["mean"] <= endpoints["POST /v1/ask (client)"]["mean"]
    assert result["server_startup_s"] > 0


def test_free_port_is_free_and_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with pytest.raises(ConnectionRefusedError):  # nothing listens there
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", port))
        probe.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            assert probe.getsockname() == ("127.0.0.1", port)
