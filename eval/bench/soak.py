"""Soak run: a bounded mixed load on the real server over loopback, to show it keeps answering and does
not leak.

It indexes a copy of seeds/ into a fresh data directory, starts `citeqa serve` on a free 127.0.0.1
port with an API key, waits for /readyz, then for --seconds runs --clients concurrent clients, each
looping over a mix of requests:

    ask       POST /v1/ask with a seed question                    expects 200
    search    GET /v1/search with a seed question                  expects 200
    invalid   an empty question, a non-JSON body, a wrong method   expects its 4xx
    list      GET /v1/documents                                    expects 200

while one writer uploads a small document and deletes it again, over and over (expects 201 and 200).
Anything else (a 5xx, an unexpected status, a connection error, a timeout) counts as an error.
The server's resident memory is sampled every second; "start" is taken once the warm-up (the first
10% of the run, at most 30 s) is over, so that lazily built caches do not read as a leak.

    python -m citeqa.eval.bench.soak --seconds 300 --clients 20     # the full soak
    python -m citeqa.eval.bench.soak --seconds 10 --clients 5       # the short form CI runs

Prints a table and one JSON line; exits 1 when any request failed (or with --max-rss-growth-mb,
when memory grew by more than that).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from citeqa.eval.bench.live_server import running_server
from citeqa.eval.bench.measure import MemorySampler, mib, percentile
from citeqa.eval.bench.quality import seed_questions
from citeqa.service.settings import REPO_ROOT

SOAK_DOC_ID = "soak_notice.txt"
SOAK_DOC = (
    "Soak Test Notice\n\n"
    "The harbor ferry timetable changes on the first Monday of every month. "
    "Tickets bought before a change stay valid for thirty days.\n"
)
REQUEST_TIMEOUT_S = 60.0
OPS = (("ask", 55), ("search", 25), ("invalid", 12), ("list", 8))


@dataclass
class Stats:
    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def record(self, op: str, ok: bool, seconds: float, detail: str = "") -> None:
        self.counts[op] += 1
        self.latencies[op].append(seconds)
        if not ok:
            self.errors[op] += 1
            if len(self.error_samples) < 10:
                self.error_samples.append(f"{op}: {detail}")


async def timed(stats: Stats, op: str, expect: set[int], request: Awaitable[httpx.Response]) -> None:
    started = time.perf_counter()
    try:
        response = await request
    except httpx.HTTPError as exc:
        stats.record(op, False, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
        return
    ok = response.status_code in expect
    detail = "" if ok else f"status {response.status_code}: {response.text[:200]}"
    if ok and response.status_code >= 400:
        # A refusal must still be the JSON error shape.
        body = response.json()
        ok = isinstance(body.get("error"), dict) and {"code", "message"} <= set(body["error"])
        detail = "" if ok else f"bad error body {response.text[:200]}"
    stats.record(op, ok, time.perf_counter() - started, detail)


async def reader_client(client: httpx.AsyncClient, stats: Stats, deadline: float, seed: int) -> None:
    rng = random.Random(seed)
    questions = seed_questions()
    names = [name for name, _ in OPS]
    weights = [weight for _, weight in OPS]
    while time.monotonic() < deadline:
        op = rng.choices(names, weights)[0]
        question = rng.choice(questions)
        if op == "ask":
            await timed(stats, op, {200}, client.post("/v1/ask", json={"question": question}))
        elif op == "search":
            await timed(stats, op, {200}, client.get("/v1/search", params={"q": question}))
        elif op == "list":
            await timed(stats, op, {200}, client.get("/v1/documents"))
        else:
            kind = rng.randrange(3)
            if kind == 0:
                await timed(stats, op, {422}, client.post("/v1/ask", json={"question": "  "}))
            elif kind == 1:
                headers = {"content-type": "application/json"}
                await timed(stats, op, {400}, client.post("/v1/ask", content=b"{not json", headers=headers))
            else:
                await timed(stats, op, {405}, client.put("/v1/ask", json={"question": question}))


async def writer_client(client: httpx.AsyncClient, stats: Stats, deadline: float, api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    while time.monotonic() < deadline:
        files = {"file": (SOAK_DOC_ID, SOAK_DOC.encode(), "text/plain")}
        await timed(stats, "upload", {201}, client.post("/v1/documents", files=files, headers=headers))
        await timed(stats, "delete", {200}, client.delete(f"/v1/documents/{SOAK_DOC_ID}", headers=headers))
        await asyncio.sleep(1.0)


async def drive(url: str, clients: int, seconds: float, api_key: str | None) -> Stats:
    stats = Stats()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        tasks = [reader_client(client, stats, deadline, seed) for seed in range(clients)]
        if api_key:
            tasks.append(writer_client(client, stats, deadline, api_key))
        await asyncio.gather(*tasks)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=300.0, help="length of the load (default 300)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent reading clients (default 20)")
    parser.add_argument("--no-writes", action="store_true", help="skip the upload/delete writer")
    parser.add_argument("--max-rss-growth-mb", type=float, help="fail when memory grew by more than this")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.clients < 1:
        parser.error("--seconds must be positive and --clients at least 1")

    api_key = secrets.token_urlsafe(24)
    tmp = Path(tempfile.mkdtemp(prefix="citeqa-soak-"))
    corpus = tmp / "corpus"
    shutil.copytree(REPO_ROOT / "seeds", corpus)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")},
        "CITEQA_DATA_DIR": str(tmp / "data"),
        "CITEQA_CORPUS_DIR": str(corpus),
        "CITEQA_API_KEY": api_key,
    }
    try:
        with (
            running_server(env, tmp / "server.log", index_first=True, ready_timeout=180.0) as server,
            MemorySampler(server.process.pid) as memory,
        ):
            started = time.monotonic()
            stats = asyncio.run(
                drive(server.url, args.clients, args.seconds, None if args.no_writes else api_key)
            )
            elapsed = time.monotonic() - started
            alive = httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    except RuntimeError as exc:
        raise SystemExit(f"soak: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    exit_code = server.exit_code
    warm_up = min(30.0, args.seconds * 0.1)
    rss_start, rss_end, rss_peak = memory.at(warm_up), memory.last, memory.peak

    total = sum(stats.counts.values())
    errors = sum(stats.errors.values())
    all_latencies = [x for values in stats.latencies.values() for x in values]
    by_op = {
        op: {
            "requests": stats.counts[op],
            "errors": stats.errors[op],
            "p50_ms": round(percentile(stats.latencies[op], 0.50) * 1000, 1),
            "p95_ms": round(percentile(stats.latencies[op], 0.95) * 1000, 1),
        }
        for op in sorted(stats.counts)
    }
    growth_mib = mib(rss_end - rss_start)
    result: dict[str, Any] = {
        "seconds": round(elapsed, 1),
        "clients": args.clients,
        "requests": total,
        "errors": errors,
        "requests_per_s": round(total / elapsed, 1),
        "by_op": by_op,
        "p95_ms": round(percentile(all_latencies, 0.95) * 1000, 1),
        "rss_start_mib": mib(rss_start),
        "rss_end_mib": mib(rss_end),
        "rss_peak_mib": mib(rss_peak),
        "rss_growth_mib": growth_mib,
        # Every tenth of the run, to tell a plateau (allocator and caches settling) from a steady leak.
        "rss_trend_mib": [mib(memory.at(args.seconds * k / 10)) for k in range(11)],
        "ready_after": alive,
        "server_exit_code": exit_code,
        "error_samples": stats.error_samples,
    }
    print(f"{'op':<10}{'requests':>10}{'errors':>8}{'p50 ms':>10}{'p95 ms':>10}")
    for op, row in by_op.items():
        print(f"{op:<10}{row['requests']:>10}{row['errors']:>8}{row['p50_ms']:>10}{row['p95_ms']:>10}")
    print(
        f"{total} requests in {elapsed:.0f}s ({result['requests_per_s']}/s) by {args.clients} clients, "
        f"{errors} errors; server memory {result['rss_start_mib']} MiB after warm-up -> "
        f"{result['rss_end_mib']} MiB at the end (peak {result['rss_peak_mib']} MiB)"
    )
    print(f"server memory every tenth of the run (MiB): {result['rss_trend_mib']}")
    for sample in stats.error_samples:
        print(f"  error: {sample}")
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    failed = errors > 0 or not alive
    if args.max_rss_growth_mb is not None and growth_mib > args.max_rss_growth_mb:
        print(f"soak: memory grew by more than {args.max_rss_growth_mb} MiB", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
