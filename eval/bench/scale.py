"""Search at growing corpus sizes: index build, memory, latency per stage and recall against exact search."""

from __future__ import annotations

import gc
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from citeqa.eval.bench.corpus import make_corpus, variant_vectors
from citeqa.eval.bench.measure import Stopwatch, load_average, peak_memory, summarize_ms
from citeqa.indexing.embedding import TextEmbedder
from citeqa.indexing.store import BM25_DIR, IndexSnapshot, IndexSpec, IndexWriter
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.reader import Reader
from citeqa.service.settings import Settings

RECALL_K = 10


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, block: int = 131_072) -> np.ndarray:
    """Row ids of the `k` best inner products per query, by brute force in blocks (bounded memory)."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), block):
        scores = queries @ np.asarray(vectors[start : start + block]).T
        take = min(k, scores.shape[1])
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, part, axis=1)], axis=1)
        best_ids = np.concatenate([best_ids, part + start], axis=1)
        keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
        best_ids = np.take_along_axis(best_ids, keep, axis=1)
    return best_ids


def nprobe_sweep(
    pipeline: QAPipeline, query_vectors: np.ndarray, exact: np.ndarray, nlist: int
) -> list[dict[str, Any]]:
    """Dense recall@10 and latency at other nprobe values, to show the trade-off behind the default."""
    out = []
    snapshot = pipeline.index.snapshot
    assert isinstance(snapshot, IndexSnapshot)
    chosen = snapshot.nprobe
    retriever = pipeline.retriever
    for nprobe in (4, 8, 16, 32, 64, 128):
        if nprobe > nlist:
            break
        snapshot.nprobe = nprobe  # the benchmark alone queries this snapshot
        times, recalls = [], []
        for vector, truth in zip(query_vectors, exact, strict=True):
            watch = Stopwatch()
            hits = retriever.dense(pipeline.index, vector, RECALL_K, None)
            times.append(watch.ms())
            recalls.append(len({i for i, _ in hits} & set(truth.tolist())) / RECALL_K)
        out.append(
            {
                "nprobe": nprobe,
                "recall_at_10": round(float(np.mean(recalls)), 4),
                "dense_ms": summarize_ms(times),
            }
        )
    snapshot.nprobe = chosen
    return out


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_size(
    size: int,
    *,
    templates: Sequence[str],
    template_vectors: np.ndarray,
    real_limit: int,
    embedder: TextEmbedder,
    reader: Reader,
    base_settings: Settings,
    questions: Sequence[str],
    work_dir: Path,
) -> dict[str, Any]:
    """Build an index of `size` synthetic chunks, load it as the service does, and time queries."""
    row: dict[str, Any] = {"size": size}
    watch = Stopwatch()
    corpus = make_corpus(templates, size)
    row["corpus_s"] = round(watch.ms() / 1000, 2)
    watch = Stopwatch()
    if size <= real_limit:
        vectors = embedder.embed(list(corpus.texts()))
        row["vectors"] = "real"
    else:
        vectors = variant_vectors(template_vectors, corpus.template_of_row)
        row["vectors"] = "synthetic"
    row["vectors_s"] = round(watch.ms() / 1000, 2)

    root = work_dir / f"index-{size}"
    shutil.rmtree(root, ignore_errors=True)
    settings = base_settings.model_copy(update={"index_dir": root})
    spec = IndexSpec(
        embedder=embedder.name,
        dimension=embedder.dimension,
        chunking={"max_tokens": settings.chunk_tokens, "overlap_tokens": settings.chunk_overlap_tokens},
    )
    watch = Stopwatch()
    faiss_started = time.perf_counter()
    manifest = IndexWriter(root).write(
        corpus.documents,
        corpus.chunks_by_doc,
        vectors,
        spec,
        index_type=settings.index_type,
        ann_threshold=settings.ann_threshold,
    )
    row["write_s"] = round(time.perf_counter() - faiss_started, 2)
    row["index_type"] = manifest.index_type
    del corpus
    gc.collect()

    pipeline = QAPipeline(settings, embedder=embedder, reader=reader)
    with peak_memory() as load_memory:
        watch = Stopwatch()
        pipeline.reload()
        row["load_s"] = round(watch.ms() / 1000, 2)
    index = pipeline.index
    assert isinstance(index.snapshot, IndexSnapshot)
    faiss_index = index.snapshot.index
    faiss_bytes = len(faiss.serialize_index(faiss_index))
    row["index_bytes_per_chunk"] = round(faiss_bytes / size, 1)
    row["index_mib"] = round(faiss_bytes / 1024**2, 1)
    row["bm25_mib"] = round(directory_bytes(index.snapshot.directory / BM25_DIR) / 1024**2, 1)
    row["load_rss_delta_mib"] = load_memory.as_dict()["rss_peak_delta_mib"]
    if hasattr(faiss_index, "nlist"):
        row["nlist"] = int(faiss.extract_index_ivf(faiss_index).nlist)
        row["nprobe"] = int(settings.ann_nprobe or faiss.extract_index_ivf(faiss_index).nprobe)

    query_vectors = embedder.embed(list(questions))
    exact = exact_top_k(vectors, query_vectors, RECALL_K)
    del vectors
    gc.collect()

    retriever = pipeline.retriever
    for warm in questions[:3]:  # first touches of the memory map and BM25 columns
        pipeline.search(warm, top_k=RECALL_K)
    dense_ms, bm25_ms, embed_ms, search_ms, recalls = [], [], [], [], []
    for number, question in enumerate(questions):
        watch = Stopwatch()
        retriever.embedder.embed_query(question)
        embed_ms.append(watch.ms())
        watch = Stopwatch()
        hits = retriever.dense(index, query_vectors[number], RECALL_K, None)
        dense_ms.append(watch.ms())
        recalls.append(len({i for i, _ in hits} & set(exact[number].tolist())) / RECALL_K)
        watch = Stopwatch()
        index.snapshot.sparse(question, retriever.candidates_k)
        bm25_ms.append(watch.ms())
        search_ms.append(pipeline.search(question, top_k=RECALL_K).timings_ms["total"])
    row["recall_at_10"] = round(float(np.mean(recalls)), 4)
    row["load_average"] = load_average()
    if "nlist" in row:
        row["nprobe_sweep"] = nprobe_sweep(pipeline, query_vectors, exact, row["nlist"])
    row["embed_query_ms"] = summarize_ms(embed_ms)
    row["dense_ms"] = summarize_ms(dense_ms)
    row["bm25_ms"] = summarize_ms(bm25_ms)
    row["search_ms"] = summarize_ms(search_ms)
    index.snapshot.close()
    del pipeline, index
    gc.collect()
    shutil.rmtree(root, ignore_errors=True)
    return row
