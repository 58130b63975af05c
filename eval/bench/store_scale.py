"""The two stores side by side at scale: ingest rate, hybrid search p50/p95 and dense recall@10 against exact.

    citeqa bench-stores --sizes 100000 [--database-url postgresql://...] [--report out.json]

Both stores get the same synthetic corpus (seed sentences recombined, `eval/bench/corpus.py`) with the same
precomputed vectors (a template's real embedding plus noise), so ingest times the store alone: local
(FAISS + SQLite + tantivy files, a new version) and Postgres (COPY into pgvector, HNSW or IVF build, a
versions row). Search is the service's HybridRetriever after the query embedding (the same for both stores,
so left out): dense top 30 and BM25 top 30 side by side, fusion, then chunks and titles fetched. Recall@10
compares the dense top 10 with exact inner-product search over all vectors. Without --database-url a
throw-away local PostgreSQL 18 + pgvector is started (fsync off: a benchmark server, not a durable one)
and stopped at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from citeqa.eval.bench.commands import add_store_arguments
from citeqa.eval.bench.corpus import (
    SyntheticCorpus,
    make_corpus,
    make_templates,
    seed_sentences,
    variant_vectors,
)
from citeqa.eval.bench.measure import load_average, machine_info, summarize_ms
from citeqa.eval.bench.quality import load_questions
from citeqa.eval.bench.scale import exact_top_k
from citeqa.indexing.embedding import Embedder
from citeqa.indexing.store import DocumentUpdate, IndexSpec, LocalStore, Store, StoreSnapshot, pgserver
from citeqa.service.qa.retrieval import HybridRetriever, SearchIndex
from citeqa.service.settings import Settings

CANDIDATES = 30
RECALL_K = 10


def updates_of(corpus: SyntheticCorpus, vectors: np.ndarray) -> list[DocumentUpdate]:
    out, row = [], 0
    for doc in corpus.documents:
        chunks = corpus.chunks_by_doc[doc.id]
        out.append(DocumentUpdate(doc, chunks, vectors[row : row + len(chunks)]))
        row += len(chunks)
    return out


def hybrid(retriever: HybridRetriever, snapshot: StoreSnapshot, question: str, vector: np.ndarray) -> int:
    """What /v1/search does after the query embedding; returns the passages found."""
    return len(retriever.retrieve(SearchIndex(snapshot), question, RECALL_K, query_vector=vector))


@dataclass(frozen=True)
class Workload:
    """The questions searched, their vectors, their exact dense top 10, and the service's retriever."""

    retriever: HybridRetriever
    questions: Sequence[str]
    vectors: np.ndarray
    exact: np.ndarray


def measure(
    name: str,
    store: Store,
    spec: IndexSpec,
    updates: Sequence[DocumentUpdate] | None,
    work: Workload,
    first_row: int,
) -> dict[str, Any]:
    """One table row: ingest `updates` (None: search what the store already holds), then search."""
    row: dict[str, Any] = {"store": name}
    if updates is not None:
        size = sum(len(u.chunks) for u in updates)
        started = time.perf_counter()
        store.write(updates, [], spec, None, replace_all=True)
        row["ingest_s"] = round(time.perf_counter() - started, 1)
        row["ingest_chunks_per_s"] = round(size / (time.perf_counter() - started))
    started = time.perf_counter()
    snapshot = store.open(expected=spec, verify=False)
    row["first_open_s"] = round(time.perf_counter() - started, 2)  # Postgres: builds this replica's BM25
    started = time.perf_counter()
    snapshot = store.open(expected=spec, verify=False)
    row["open_s"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    store.open(expected=spec, verify=True).close()  # what `citeqa serve` does (CITEQA_VERIFY_INDEX)
    row["open_verified_s"] = round(time.perf_counter() - started, 2)
    row["size"] = snapshot.manifest.chunk_count
    row["index"] = snapshot.manifest.index_type
    for question, vector in list(zip(work.questions, work.vectors, strict=True))[:5]:
        hybrid(work.retriever, snapshot, question, vector)  # warm caches, as a serving process is
    search_ms, dense_ms, bm25_ms, recalls = [], [], [], []
    for question, vector, truth in zip(work.questions, work.vectors, work.exact, strict=True):
        t0 = time.perf_counter()
        hits = snapshot.dense(vector, RECALL_K)
        t1 = time.perf_counter()
        snapshot.sparse(question, CANDIDATES)
        t2 = time.perf_counter()
        hybrid(work.retriever, snapshot, question, vector)
        t3 = time.perf_counter()
        dense_ms.append((t1 - t0) * 1000)
        bm25_ms.append((t2 - t1) * 1000)
        search_ms.append((t3 - t2) * 1000)
        found = {r - first_row for r, _ in hits}
        recalls.append(len(found & set(truth.tolist())) / RECALL_K)
    row["search_ms"] = summarize_ms(search_ms)
    row["dense_ms"] = summarize_ms(dense_ms)
    row["bm25_ms"] = summarize_ms(bm25_ms)
    row["recall_at_10"] = round(float(np.mean(recalls)), 4)
    row["load_average"] = load_average()
    snapshot.close()
    return row


@contextmanager
def database(url: str | None) -> Iterator[str]:
    """A fresh database: on the given server, or on a throw-away local one."""
    if url:
        yield url
        return
    base = Path(tempfile.mkdtemp(prefix="citeqa-bench-pg-"))
    base.chmod(0o755)  # the server runs as the unprivileged postgres user
    try:
        admin = pgserver.start(base / "postgres", durable=False).rsplit("/", 1)[0] + "/postgres"
        name = f"bench_{uuid.uuid4().hex[:8]}"
        pgserver.create_database(admin, name)
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        pgserver.stop(base / "postgres")
        shutil.rmtree(base, ignore_errors=True)


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| store | dense index | chunks | ingest chunks/s | open s: first / checksummed "
        "| search p50 / p95 ms | dense p50 ms | BM25 p50 ms | dense recall@10 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ingest = f"{r['ingest_chunks_per_s']:,}" if "ingest_chunks_per_s" in r else "(same)"
        lines.append(
            f"| {r['store']} | {r['index']} | {r['size']:,} | {ingest} "
            f"| {r['first_open_s']:.2f} / {r['open_verified_s']:.2f} "
            f"| {r['search_ms']['p50']:.1f} / {r['search_ms']['p95']:.1f} | {r['dense_ms']['p50']:.1f} "
            f"| {r['bm25_ms']['p50']:.1f} | {r['recall_at_10']:.3f} |"
        )
    return "\n".join(lines)


def cmd_bench_stores(args: argparse.Namespace, _settings: Settings) -> int:
    """`citeqa bench-stores` (registered in bench/commands.py, which loads this module only to run it)."""
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    add_store_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    from citeqa.indexing.store.postgres import EF_SEARCH, PostgresStore  # psycopg loads only for this command

    sizes = [int(s) for s in args.sizes.split(",")]
    ef_searches = [int(v) for v in (args.ef_search or str(EF_SEARCH)).split(",")]
    nprobes = [int(v) for v in args.nprobe.split(",")]
    settings = Settings(device="cpu")
    embedder = Embedder(settings.embedder_path, device="cpu")
    embedder.warm_up()
    templates = make_templates(seed_sentences(settings.corpus_dir), 2_000)
    template_vectors = embedder.embed(templates)
    questions = [item.question for item in load_questions()]
    query_vectors = embedder.embed(questions)
    spec = IndexSpec(embedder.name, embedder.dimension, {"max_tokens": 64, "overlap_tokens": 16})
    rows = []
    work = Path(tempfile.mkdtemp(prefix="citeqa-bench-store-"))
    try:
        for size in sizes:
            corpus = make_corpus(templates, size)
            vectors = variant_vectors(template_vectors, corpus.template_of_row)
            retriever = HybridRetriever(embedder, candidates_k=CANDIDATES)
            workload = Workload(
                retriever, questions, query_vectors, exact_top_k(vectors, query_vectors, RECALL_K)
            )
            updates = updates_of(corpus, vectors)
            if "local" in args.stores:
                print(f"{size:,} chunks: local", file=sys.stderr)
                local = LocalStore(work / f"local-{size}")
                rows.append(measure("local", local, spec, updates, workload, first_row=0))
                shutil.rmtree(work / f"local-{size}", ignore_errors=True)
            if "postgres" not in args.stores:
                continue
            print(f"{size:,} chunks: postgres", file=sys.stderr)
            with database(args.database_url) as url:
                for n, (ef_search, nprobe) in enumerate(itertools.product(ef_searches, nprobes)):
                    # An index over 1M 384-d vectors needs about 3 GB to be built in memory.
                    bm25_dir = work / f"pg-bm25-{size}"
                    store = PostgresStore(url, bm25_dir, "4GB", ef_search=ef_search, nprobe=nprobe)
                    try:
                        # Identity rows start at 1 in a fresh database: row - 1 is the position in `vectors`.
                        name = f"postgres (ef_search {ef_search}, nprobe {nprobe or 'auto'})"
                        built = updates if n == 0 else None  # later settings search the same tables
                        rows.append(measure(name, store, spec, built, workload, 1))
                    finally:
                        store.close()
            print(table(rows), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    if args.report:
        args.report.write_text(json.dumps({"machine": machine_info(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
