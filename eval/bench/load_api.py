"""Load run against the real server on loopback: concurrent clients POST varied seed questions to /v1/ask.

By default it starts `citeqa serve` itself on a free 127.0.0.1 port (over the index in CITEQA_DATA_DIR),
waits for /readyz, drives the load, samples the server's resident memory, and stops it:

    python -m citeqa.eval.bench.load_api --clients 20 --seconds 30 [--unique]

With --url it drives a server that is already running (loopback only); --pid adds its memory.
Prints one JSON object: requests per second, latency percentiles, errors, server memory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import anyio
import httpx
from citeqa.eval.bench.live_server import running_server, wait_until_ready
from citeqa.eval.bench.measure import MemorySampler, mib, percentile
from citeqa.eval.bench.quality import seed_questions

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


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
    ok = statuses.get("200", 0)

    def ms(seconds: float) -> float:
        return round(1000 * seconds, 1) if latencies else 0.0

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
            **{f"p{round(100 * q)}": ms(percentile(latencies, q)) for q in (0.50, 0.95, 0.99)},
            "max": ms(max(latencies, default=0.0)),
            "mean": ms(statistics.fmean(latencies) if latencies else 0.0),
        },
    }


def measure(url: str, pid: int | None, clients: int, seconds: float, unique: bool) -> None:
    pool = seed_questions()
    # A short warm-up, so that first-call costs do not count.
    anyio.run(drive, url, 2, 2.0, pool)
    before = stage_totals(url)
    with MemorySampler(pid, interval=0.5) if pid else contextlib.nullcontext() as memory:
        result = anyio.run(drive, url, clients, seconds, pool, unique)
    result["server_stage_mean_ms"] = stage_means_ms(before, stage_totals(url))
    result["server_rss_mib"] = {"peak": mib(memory.peak), "end": mib(memory.last)} if memory else None
    result["cpu_count"] = os.cpu_count()
    print(json.dumps(result, indent=2))


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

    if args.url:
        if urlparse(args.url).hostname not in LOOPBACK:
            parser.error("--url must point at this machine (127.0.0.1, localhost or ::1)")
        url = args.url.rstrip("/")
        try:
            wait_until_ready(url, 120.0, poll_s=0.2)
        except RuntimeError as exc:
            raise SystemExit(f"load_api: {exc}") from exc
        measure(url, args.pid, args.clients, args.seconds, args.unique)
        return 0
    # Over the index the environment configures (CITEQA_DATA_DIR), indexed first when needed.
    with tempfile.TemporaryDirectory(prefix="citeqa-load-") as tmp:
        try:
            with running_server(os.environ, Path(tmp) / "server.log", index_first=True) as server:
                measure(server.url, server.process.pid, args.clients, args.seconds, args.unique)
        except RuntimeError as exc:
            raise SystemExit(f"load_api: {exc}") from exc
    return 0


if __name__ == "__main__":
    sys.exit(main())
