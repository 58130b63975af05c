"""Load run against the real server on loopback: concurrent clients POST varied seed questions to /v1/ask.

By default it starts `citeqa serve` itself on a free 127.0.0.1 port (over the index in CITEQA_DATA_DIR),
waits for /readyz, drives the load, samples the server's resident memory, and stops it:

    PYTHONPATH=$PWD python bench/load_api.py --clients 20 --seconds 30 [--unique]

With --url it drives a server that is already running (loopback only); --pid adds its memory.
Prints one JSON object: requests per second, latency percentiles, errors, server memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import anyio
import httpx
import psutil

from eval.bench_quality import load_questions
from service.api.liveness import free_port, wait_until_ready

REPO_ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def questions() -> list[str]:
    return [item.question for item in load_questions()]


def start_server(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    # Incremental, so cheap when the configured index (CITEQA_DATA_DIR) is already up to date.
    subprocess.run(
        [sys.executable, "-m", "service.cli", "index"], env=env, check=True, stdout=subprocess.DEVNULL
    )
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_ready(url: str, timeout: float = 120.0) -> None:
    try:
        wait_until_ready(url, timeout, poll_s=0.2)
    except RuntimeError as exc:
        raise SystemExit(f"load_api: {exc}") from exc


Totals = dict[str, dict[str, float]]
_STAGE_LINE = re.compile(r'^citeqa_stage_duration_seconds_(sum|count)\{stage="([a-z_]+)"\} ([0-9.e+-]+)$')


def stage_totals(url: str) -> Totals:
    """The server's own per-stage sums and counts, from /metrics."""
    totals: Totals = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        match = _STAGE_LINE.match(line)
        if match:
            kind, stage, value = match.groups()
            totals.setdefault(stage, {"sum": 0.0, "count": 0.0})[kind] = float(value)
    return totals


def stage_means_ms(before: Totals, after: Totals) -> dict[str, float]:
    means = {}
    for stage, now in after.items():
        then = before.get(stage, {"sum": 0.0, "count": 0.0})
        count = now["count"] - then["count"]
        if count:
            means[stage] = round(1000 * (now["sum"] - then["sum"]) / count, 1)
    return means


class MemorySampler:
    """Peak and last resident set size of the server process, sampled in the background."""

    def __init__(self, pid: int | None) -> None:
        self.process = psutil.Process(pid) if pid else None
        self.peak = 0
        self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.process is not None and not self._stop.is_set():
            try:
                rss = self.process.memory_info().rss
            except psutil.Error:
                return
            self.last, self.peak = rss, max(self.peak, rss)
            self._stop.wait(0.5)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


async def drive(
    url: str, clients: int, seconds: float, pool: list[str], unique: bool = False
) -> dict[str, object]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    no_answer = 0
    deadline = time.perf_counter() + seconds

    async def client(number: int) -> None:
        nonlocal no_answer
        i = number
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            while time.perf_counter() < deadline:
                question = pool[i % len(pool)]
                if unique:
                    # Never the same text twice: no request can be served from the answer cache.
                    question = f"{question} (request {i})"
                i += clients
                started = time.perf_counter()
                try:
                    response = await http.post("/v1/ask", json={"question": question})
                    key = str(response.status_code)
                    if response.status_code == 200 and response.json()["no_answer"]:
                        no_answer += 1
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                latencies.append(time.perf_counter() - started)
                statuses[key] = statuses.get(key, 0) + 1

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for number in range(clients):
            tasks.start_soon(client, number)
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1) if ordered else 0.0

    ok = statuses.get("200", 0)
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(latencies),
        "ok": ok,
        "errors": len(latencies) - ok,
        "statuses": statuses,
        "no_answer": no_answer,
        "requests_per_second": round(len(latencies) / elapsed, 2),
        "latency_ms": {
            "p50": pct(0.50),
            "p95": pct(0.95),
            "p99": pct(0.99),
            "max": round(1000 * ordered[-1], 1) if ordered else 0.0,
            "mean": round(1000 * statistics.fmean(ordered), 1) if ordered else 0.0,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--url", help="a running server on loopback (default: start one)")
    parser.add_argument("--pid", type=int, help="the running server's process id, for its memory")
    parser.add_argument(
        "--unique", action="store_true", help="a different question text on every request (no cache hits)"
    )
    args = parser.parse_args()
    if not (1 <= args.clients <= 200 and 1 <= args.seconds <= 600):
        parser.error("--clients must be 1..200 and --seconds 1..600")

    server = None
    if args.url:
        url, pid = args.url.rstrip("/"), args.pid
        if urlparse(url).hostname not in LOOPBACK:
            parser.error("--url must point at this machine (127.0.0.1, localhost or ::1)")
    else:
        port = free_port()
        server = start_server(port)
        url, pid = f"http://127.0.0.1:{port}", server.pid
    try:
        wait_ready(url)
        pool = questions()
        # A short warm-up, so that first-call costs do not count.
        anyio.run(drive, url, 2, 2.0, pool)
        before = stage_totals(url)
        with MemorySampler(pid) as memory:
            result = anyio.run(drive, url, args.clients, args.seconds, pool, args.unique)
        result["server_stage_mean_ms"] = stage_means_ms(before, stage_totals(url))
        mib = 2**20
        result["server_rss_mib"] = {"peak": round(memory.peak / mib, 1), "end": round(memory.last / mib, 1)}
        result["cpu_count"] = os.cpu_count()
        print(json.dumps(result, indent=2))
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
