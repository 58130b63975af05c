"""The over-HTTP part of the benchmark against the real server (uvicorn in a subprocess)."""

from __future__ import annotations

from typing import Any

import pytest

from eval.bench_http import bench_http_available, run_http
from eval.bench_quality import load_questions
from service.api.liveness import free_port


@pytest.mark.slow
def test_run_http_times_ask_and_search_against_the_real_server(make_pipeline: Any) -> None:
    assert bench_http_available()
    pipeline = make_pipeline()
    questions = [item.question for item in load_questions()[:3]]
    result = run_http(pipeline.settings, pipeline.settings, questions, passes=1)
    endpoints = result["endpoints_ms"]
    assert endpoints["POST /v1/ask (client)"]["n"] == 3
    assert endpoints["GET /v1/search (client)"]["n"] == 3
    # The server's own pipeline time cannot exceed what the client waited for the same requests.
    assert endpoints["POST /v1/ask (server pipeline)"]["mean"] <= endpoints["POST /v1/ask (client)"]["mean"]
    assert result["server_startup_s"] > 0


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", port))
