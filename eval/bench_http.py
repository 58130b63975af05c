"""Latency over HTTP: the real server (uvicorn, in a subprocess) on a free local port, timed with httpx."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eval.bench_measure import Stopwatch, summarize_ms
from service.settings import REPO_ROOT, Settings

STARTUP_TIMEOUT_S = 120.0


def bench_http_available() -> bool:
    return (
        importlib.util.find_spec("service.api") is not None
        and importlib.util.find_spec("service.api.app") is not None
    )


def _server_env(settings: Settings, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "CITEQA_DATA_DIR": str(settings.data_dir),
            "CITEQA_INDEX_DIR": str(settings.resolved_index_dir),
            "CITEQA_CORPUS_DIR": str(settings.corpus_dir),
            "CITEQA_DEVICE": settings.device,
            "CITEQA_HOST": "127.0.0.1",
            "CITEQA_PORT": str(port),
            # Measure uncached latency: every pass would otherwise be served from the answer cache.
            "CITEQA_ANSWER_CACHE_SIZE": "0",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
        }
    )
    return env


@contextmanager
def running_server(settings: Settings) -> Iterator[str]:
    """`citeqa serve` in a subprocess; yields its base URL once /readyz says ready; stops it after."""
    from service.api.liveness import free_port, wait_until_ready

    port = free_port()
    # The server logs a line per request: into a file, since an unread pipe fills up and blocks it.
    log_path = Path(settings.data_dir) / f"bench-server-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("w", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=_server_env(settings, port),
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_ready(base, STARTUP_TIMEOUT_S, process)
        except RuntimeError as exc:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-500:]
            raise RuntimeError(f"{exc}: {tail}") from exc
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()


def run_http(
    settings: Settings, index_settings: Settings, questions: Sequence[str], passes: int
) -> dict[str, Any]:
    """p50/p95 of POST /v1/ask and GET /v1/search, client side, over one keep-alive connection."""
    import httpx

    served = index_settings.model_copy(update={"device": settings.device})
    watch = Stopwatch()
    with running_server(served) as base, httpx.Client(base_url=base, timeout=60.0) as client:
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
