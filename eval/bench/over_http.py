"""Latency over HTTP: the real server (uvicorn, in a subprocess) on a free local port, timed with httpx."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from citeqa.eval.bench.live_server import running_server
from citeqa.eval.bench.measure import Stopwatch, summarize_ms
from citeqa.service.settings import Settings

STARTUP_TIMEOUT_S = 120.0


def _server_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "CITEQA_DATA_DIR": str(settings.data_dir),
        "CITEQA_INDEX_DIR": str(settings.resolved_index_dir),
        "CITEQA_CORPUS_DIR": str(settings.corpus_dir),
        "CITEQA_DEVICE": settings.device,
        # Measure uncached latency: every pass would otherwise be served from the answer cache.
        "CITEQA_ANSWER_CACHE_SIZE": "0",
    }


def run_http(
    settings: Settings, index_settings: Settings, questions: Sequence[str], passes: int
) -> dict[str, Any]:
    """p50/p95 of POST /v1/ask and GET /v1/search, client side, over one keep-alive connection."""
    served = index_settings.model_copy(update={"device": settings.device})
    watch = Stopwatch()
    log_path = Path(served.data_dir) / "bench-server.log"
    with (
        running_server(_server_env(served), log_path, ready_timeout=STARTUP_TIMEOUT_S) as server,
        httpx.Client(base_url=server.url, timeout=60.0) as client,
    ):
        startup_s = round(watch.ms() / 1000, 2)
        client.post("/v1/ask", json={"question": questions[0]}).raise_for_status()
        ask_ms: list[float] = []
        search_ms: list[float] = []
        server_ask_ms: list[float] = []
        for _ in range(passes):
            for question in questions:
                watch = Stopwatch()
                response = client.post("/v1/ask", json={"question": question})
                ask_ms.append(watch.ms())
                response.raise_for_status()
                timings = response.json().get("timings_ms", {})
                if "total" in timings:
                    server_ask_ms.append(float(timings["total"]))
                watch = Stopwatch()
                client.get("/v1/search", params={"q": question, "top_k": 10}).raise_for_status()
                search_ms.append(watch.ms())
    return {
        "server_startup_s": startup_s,
        "endpoints_ms": {
            "POST /v1/ask (client)": summarize_ms(ask_ms),
            "POST /v1/ask (server pipeline)": summarize_ms(server_ask_ms),
            "GET /v1/search (client)": summarize_ms(search_ms),
        },
    }
