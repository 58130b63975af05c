"""The FAISS side of the local store: which index kind a collection gets, how it is built and searched.
The Postgres store sizes its pgvector IVF lists with the same rule (ivf_list_count)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import faiss
import numpy as np

_faiss_threads = 0  # OpenMP threads for one FAISS search; 0 = leave OpenMP's setting alone


def set_faiss_threads(threads: int) -> None:
    """Threads for each FAISS search from now on (0 = OpenMP's default). One query scans with one thread
    by default: a second OpenMP thread made a 20k-chunk flat search 3x slower on two busy cores (thread
    wake-ups cost more than the scan).

    Only recorded here and applied around each search (`faiss_thread_scope`): FAISS and torch load the
    same libgomp, so calling `omp_set_num_threads` once for FAISS also cut torch's intra-op threads to 1
    in that thread (the reader read 1.7x slower in process)."""
    global _faiss_threads
    _faiss_threads = max(0, int(threads))


@contextlib.contextmanager
def faiss_thread_scope() -> Iterator[None]:
    """Run a FAISS call with the configured thread count, then give this thread its own setting back.
    OpenMP keeps the setting per thread, so concurrent searches in other threads are not affected."""
    threads = _faiss_threads
    previous = faiss.omp_get_max_threads()
    if threads <= 0 or threads == previous:
        yield
        return
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


INDEX_TYPES = ("auto", "flat", "hnsw", "ivf_sq8")
# Index kinds whose stored vectors are lossy: their scores are re-computed exactly from embeddings.npy.
COMPRESSED_INDEX_TYPES = frozenset({"ivf_sq8"})
# FAISS warns below 39 training points per list; fewer points give poor centroids.
_MIN_POINTS_PER_LIST = 39
_TRAINING_POINTS_PER_LIST = 64


def choose_index_type(count: int, index_type: str, ann_threshold: int) -> str:
    """`auto`: exact search while it is cheap, the compressed IVF index from `ann_threshold` chunks on."""
    if index_type not in INDEX_TYPES:
        raise ValueError(f"unknown index type {index_type!r} (use {', '.join(INDEX_TYPES)})")
    if index_type == "auto":
        return "ivf_sq8" if count >= ann_threshold else "flat"
    return index_type


def ivf_list_count(count: int) -> int:
    """About 2 * sqrt(count) inverted lists (a power of two), never so many that lists train badly."""
    target = 1 << max(0, round(np.log2(max(2.0 * np.sqrt(max(count, 1)), 1.0))))
    return max(1, min(target, count // _MIN_POINTS_PER_LIST))


def default_nprobe(nlist: int) -> int:
    """Lists scanned per query. On the benchmark's data, after re-ranking: 100k chunks (512 lists,
    nprobe 16) recall@10 0.974; 1M chunks (2048 lists, nprobe 32) 0.993 in 1.6 ms."""
    return max(1, min(nlist, max(16, nlist // 64)))


def build_faiss_index(
    vectors: np.ndarray, index_type: str, ann_threshold: int, seed: int = 0
) -> tuple[faiss.Index, str]:
    """Exact inner product for small collections; a compressed approximate index for large ones.

    `ann_threshold` is the size from which `auto` picks the approximate index. `ivf_sq8` keeps one
    byte per dimension in inverted lists (about 0.4 KB per 384-d chunk); its shortlist is re-ranked
    exactly by the retriever from embeddings.npy.
    """
    dimension = vectors.shape[1]
    kind = choose_index_type(len(vectors), index_type, ann_threshold)
    if kind == "ivf_sq8" and len(vectors) == 0:
        kind = "flat"  # nothing to train centroids on; the next build with data picks again
    index: faiss.Index
    if kind == "flat":
        index = faiss.IndexFlatIP(dimension)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    else:
        nlist = ivf_list_count(len(vectors))
        quantizer = faiss.IndexFlatIP(dimension)
        ivf = faiss.IndexIVFScalarQuantizer(
            quantizer, dimension, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        sample_size = min(len(vectors), nlist * _TRAINING_POINTS_PER_LIST)
        rng = np.random.default_rng(seed)
        sample = vectors[np.sort(rng.choice(len(vectors), sample_size, replace=False))]
        ivf.cp.min_points_per_centroid = 1  # small explicit builds (tests) may train on few points
        # Ten k-means rounds instead of 25: centroids only route the search, and exact re-ranking
        # fixes the order, so the extra rounds cost minutes at 1M chunks for no measurable recall.
        ivf.cp.niter = 10
        ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
        ivf.nprobe = default_nprobe(nlist)
        index = ivf  # faiss's Python wrapper keeps `quantizer` alive as long as `ivf`
    if len(vectors):
        index.add(vectors)
    return index, kind


def exact_rerank(
    embeddings: np.ndarray, rows: np.ndarray, query: np.ndarray, k: int
) -> list[tuple[int, float]]:
    """The best `k` of `rows` by exact inner product with the full-precision (memory-mapped) vectors."""
    rows = np.unique(rows[rows >= 0])  # sorted rows read the memory map front to back
    if len(rows) == 0:
        return []
    scores = np.asarray(embeddings[rows], dtype=np.float32) @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [(int(rows[i]), float(scores[i])) for i in order]
