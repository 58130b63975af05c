"""The two stores side by side at scale: ingest rate, hybrid search p50/p95 and dense recall@10 against exact.

    python -m bench.store_scale --sizes 100000 [--database-url postgresql://...] [--report out.json]

Both stores get the same synthetic corpus (seed sentences recombined, `bench/corpus.py`) with the same
precomputed vectors (a template's real embedding plus noise), so ingest times the store alone: local
(FAISS + SQLite + tantivy files, a new version) and Postgres (COPY into pgvector, HNSW build, versions row).
Search is what /v1/search does after the query embedding (the same for both stores, so left out): dense
top 30, BM25 top 30, fusion, then chunks and titles fetched. Recall@10 compares the dense top 10 with exact
inner-product search over all vectors. Without --database-url a throw-away local PostgreSQL 18 + pgvector
is started (fsync off: a benchmark server, not a durable one) and stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import SyntheticCorpus, make_corpus, make_templates, seed_sentences, variant_vectors
from bench.measure import load_average, machine_info, summarize_ms
from bench.quality import load_questions
from bench.scale import exact_top_k
from indexing.embedding import Embedder
from indexing.store import DocumentUpdate, IndexSpec, LocalStore, Store, StoreSnapshot, pgserver
from indexing.store.postgres import PostgresStore
from service.retrieval import reciprocal_rank_fusion
from service.settings import Settings

CANDIDATES = 30
RECALL_K = 10


def updates_of(corpus: SyntheticCorpus, vectors: np.ndarray) -> list[DocumentUpdate]:
    out, row = [], 0
    for doc in corpus.documents:
        chunks = corpus.chunks_by_doc[doc.id]
        out.append(DocumentUpdate(doc, chunks, vectors[row : row + len(chunks)]))
        row += len(chunks)
    return out


def hybrid(snapshot: StoreSnapshot, question: str, vector: np.ndarray) -> int:
    """HybridRetriever.retrieve after the query embedding; returns the passages found."""
    dense = snapshot.dense(vector, CANDIDATES)
    sparse = snapshot.sparse(question, CANDIDATES)
    fused = reciprocal_rank_fusion([[r for r, _ in dense], [r for r, _ in sparse]], 60)[:RECALL_K]
    chunks = snapshot.chunks_by_rows([r for r, _ in fused])
    snapshot.titles({c.doc_id for c in chunks.values()})
    return len(chunks)


def measure(
    name: str,
    store: Store,
    spec: IndexSpec,
    updates: Sequence[DocumentUpdate],
    questions: Sequence[str],
    query_vectors: np.ndarray,
    exact: np.ndarray,
    first_row: int,
) -> dict[str, Any]:
    size = sum(len(u.chunks) for u in updates)
    row: dict[str, Any] = {"store": name, "size": size}
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
    for question, vector in list(zip(questions, query_vectors, strict=True))[:5]:
        hybrid(snapshot, question, vector)  # warm caches, as a serving process is
    search_ms, dense_ms, bm25_ms, recalls = [], [], [], []
    for question, vector, truth in zip(questions, query_vectors, exact, strict=True):
        t0 = time.perf_counter()
        hits = snapshot.dense(vector, RECALL_K)
        t1 = time.perf_counter()
        snapshot.sparse(question, CANDIDATES)
        t2 = time.perf_counter()
        hybrid(snapshot, question, vector)
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
        "| store | chunks | ingest chunks/s | first open s | search p50 / p95 ms | dense p50 ms "
        "| BM25 p50 ms | dense recall@10 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['store']} | {r['size']:,} | {r['ingest_chunks_per_s']:,} | {r['first_open_s']:.2f} "
            f"| {r['search_ms']['p50']:.1f} / {r['search_ms']['p95']:.1f} | {r['dense_ms']['p50']:.1f} "
            f"| {r['bm25_ms']['p50']:.1f} | {r['recall_at_10']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--sizes", default="100000", help="comma-separated chunk counts")
    parser.add_argument("--database-url", default=os.environ.get("CITEQA_BENCH_DATABASE_URL"))
    parser.add_argument("--stores", default="local,postgres", help="which stores to measure")
    parser.add_argument("--report", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
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
            exact = exact_top_k(vectors, query_vectors, RECALL_K)
            updates = updates_of(corpus, vectors)
            if "local" in args.stores:
                print(f"{size:,} chunks: local", file=sys.stderr)
                local = LocalStore(work / f"local-{size}")
                rows.append(
                    measure("local", local, spec, updates, questions, query_vectors, exact, first_row=0)
                )
                shutil.rmtree(work / f"local-{size}", ignore_errors=True)
            if "postgres" not in args.stores:
                continue
            print(f"{size:,} chunks: postgres", file=sys.stderr)
            with database(args.database_url) as url:
                # The HNSW graph of 1M 384-d vectors needs about 3 GB to be built in memory.
                store = PostgresStore(url, bm25_dir=work / f"pg-bm25-{size}", build_memory="4GB")
                try:
                    # Identity rows start at 1 in a fresh database: row - 1 is the position in `vectors`.
                    rows.append(measure("postgres", store, spec, updates, questions, query_vectors, exact, 1))
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
