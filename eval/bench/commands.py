"""`citeqa bench` and `citeqa bench-stores` as commands: their arguments, and handlers that load the
benchmark modules (FAISS, torch, the HTTP server, psycopg) only when the command runs, so that
`citeqa --help` and every other command start without them."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from citeqa.service.cli import lazy_handler


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], handlers: dict[str, Any]
) -> None:
    p = subparsers.add_parser("bench", help="measure indexing, ask/search latency and search at scale")
    p.add_argument(
        "--quick", action="store_true", help="small sizes (up to 20k chunks), for CI: under 2 minutes"
    )
    p.add_argument("--report", default="reports/bench", help="folder for report.json, report.md, latency.png")
    p.add_argument("--sizes", help="comma-separated corpus sizes in chunks (default by mode)")
    p.add_argument("--no-http", action="store_true", help="skip the over-HTTP measurements")
    p.add_argument(
        "--runtimes-only",
        action="store_true",
        help="only the reader runtimes side by side (read time per passage, answers/s at 1/5/20 clients)",
    )
    handlers["bench"] = lazy_handler("citeqa.eval.bench.run", "cmd_bench")

    summary = "the local and Postgres stores side by side at 100k-1M chunks (ingest, search, recall)"
    add_store_arguments(subparsers.add_parser("bench-stores", help=summary, description=summary))
    handlers["bench-stores"] = lazy_handler("citeqa.eval.bench.store_scale", "cmd_bench_stores")


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `citeqa bench-stores` (and of `python -m citeqa.eval.bench.store_scale`)."""
    parser.add_argument("--sizes", default="100000", help="comma-separated chunk counts")
    parser.add_argument("--database-url", default=os.environ.get("CITEQA_BENCH_DATABASE_URL"))
    parser.add_argument("--stores", default="local,postgres", help="which stores to measure")
    parser.add_argument(
        "--ef-search", help="Postgres hnsw.ef_search values, all on one build (default: the store's)"
    )
    parser.add_argument(
        "--nprobe", default="0", help="Postgres IVF lists scanned (0: automatic), all on one build"
    )
    parser.add_argument("--report", type=Path, help="write the rows as JSON here")
