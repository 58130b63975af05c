"""The compressed approximate index: chosen by size, good recall, exact scores after re-ranking."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from citeqa.indexing.store.faiss_index import (
    build_faiss_index,
    choose_index_type,
    exact_rerank,
    ivf_list_count,
)


def clustered_unit_vectors(count: int, dimension: int = 64, seed: int = 0) -> np.ndarray:
    """Points around random centres, like embeddings of related passages (pure noise has no neighbours)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(count // 50, 4), dimension)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), count)] + 0.7 * rng.standard_normal(
        (count, dimension)
    ).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_auto_picks_flat_below_the_threshold_and_ivf_from_it() -> None:
    assert choose_index_type(999, "auto", 1000) == "flat"
    assert choose_index_type(1000, "auto", 1000) == "ivf_sq8"
    assert choose_index_type(10, "hnsw", 1000) == "hnsw"
    with pytest.raises(ValueError, match="unknown index type"):
        choose_index_type(10, "lsh", 1000)


def test_auto_build_by_size() -> None:
    vectors = clustered_unit_vectors(3000)
    small, small_kind = build_faiss_index(vectors[:500], "auto", ann_threshold=2000)
    large, large_kind = build_faiss_index(vectors, "auto", ann_threshold=2000)
    assert (small_kind, large_kind) == ("flat", "ivf_sq8")
    assert isinstance(small, faiss.IndexFlatIP)
    ivf = faiss.extract_index_ivf(large)
    assert ivf.ntotal == 3000 and ivf.nlist == ivf_list_count(3000)


def test_list_count_grows_with_size_and_never_starves_lists() -> None:
    assert ivf_list_count(10) == 1
    assert ivf_list_count(1_000_000) == 2048
    for count in (100, 5_000, 60_000):
        assert 1 <= ivf_list_count(count) <= count // 39


def test_ivf_sq8_recall_and_memory_against_exact() -> None:
    vectors = clustered_unit_vectors(20_000, dimension=96)
    rng = np.random.default_rng(1)
    queries = vectors[rng.integers(0, len(vectors), 50)] + 0.05 * rng.standard_normal((50, 96)).astype(
        np.float32
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index, kind = build_faiss_index(vectors, "ivf_sq8", ann_threshold=1)
    assert kind == "ivf_sq8"
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    recalls = []
    for query, truth in zip(queries, exact, strict=True):
        _, shortlist = index.search(query.reshape(1, -1), 40)
        hits = exact_rerank(vectors, shortlist[0], query, 10)
        recalls.append(len({row for row, _ in hits} & set(truth.tolist())) / 10)
    assert float(np.mean(recalls)) >= 0.9
    # One byte per dimension plus an id, far below float32's four bytes per dimension.
    assert len(faiss.serialize_index(index)) / len(vectors) < 96 * 1.5


def test_exact_rerank_returns_exact_inner_products_best_first() -> None:
    vectors = clustered_unit_vectors(200)
    query = vectors[7]
    hits = exact_rerank(vectors, np.array([3, 7, -1, 150, 7, 42]), query, 3)
    assert hits[0][0] == 7
    assert [score for _, score in hits] == sorted((score for _, score in hits), reverse=True)
    for row, score in hits:
        assert score == pytest.approx(float(vectors[row] @ query), abs=1e-6)
    assert exact_rerank(vectors, np.array([-1, -1]), query, 3) == []


def test_empty_ivf_build_falls_back_to_flat() -> None:
    index, kind = build_faiss_index(np.zeros((0, 16), dtype=np.float32), "ivf_sq8", ann_threshold=1)
    assert kind == "flat" and index.ntotal == 0
