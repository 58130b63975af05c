"""Hybrid retrieval: the store's dense and BM25 top-k over the same chunks, fused by reciprocal rank."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from citeqa.indexing.embedding import TextEmbedder
from citeqa.indexing.store import StoreSnapshot, bm25_tokens
from citeqa.service.qa.types import Passage

__all__ = ["HybridRetriever", "SearchIndex", "bm25_tokens", "reciprocal_rank_fusion"]


@dataclass(frozen=True)
class SearchIndex:
    """The store snapshot that queries read, swapped as one unit."""

    snapshot: StoreSnapshot

    @classmethod
    def load(cls, snapshot: StoreSnapshot) -> SearchIndex:
        return cls(snapshot=snapshot)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int) -> list[tuple[int, float]]:
    """Fused (id, score) pairs, best first; the score is scaled so that first in every list is 1."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank + 1)
    best_possible = len(rankings) / (k + 1)
    return sorted(((i, s / best_possible) for i, s in fused.items()), key=lambda p: (-p[1], p[0]))


# BM25 searches run here while the calling thread embeds the query and searches densely: tantivy, torch,
# FAISS and psycopg all release the GIL, so a search costs the slower side, not the sum (1M chunks, local
# store: p50 17.1 -> 14.4 ms). One pool for the process; its threads start on first use.
_SPARSE_WORKERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="citeqa-bm25")


class HybridRetriever:
    def __init__(self, embedder: TextEmbedder, candidates_k: int = 30, rrf_k: int = 60) -> None:
        self.embedder = embedder
        self.candidates_k = candidates_k
        self.rrf_k = rrf_k

    def dense(
        self, index: SearchIndex, query_vector: np.ndarray, k: int, document_ids: Sequence[str] | None
    ) -> list[tuple[int, float]]:
        return index.snapshot.dense(query_vector, k, document_ids)

    def retrieve(
        self,
        index: SearchIndex,
        query: str,
        top_k: int,
        document_ids: Sequence[str] | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[Passage]:
        """The fused top_k passages; `query_vector` skips embedding the query (benchmarks pass it)."""
        snapshot = index.snapshot
        sparse = _SPARSE_WORKERS.submit(snapshot.sparse, query, self.candidates_k, document_ids)
        if query_vector is None:
            query_vector = self.embedder.embed_query(query)
        dense_hits = snapshot.dense(query_vector, self.candidates_k, document_ids)
        sparse_hits = sparse.result()
        fused = reciprocal_rank_fusion([[i for i, _ in dense_hits], [i for i, _ in sparse_hits]], self.rrf_k)[
            :top_k
        ]
        dense_scores = dict(dense_hits)
        sparse_scores = dict(sparse_hits)
        chunks = snapshot.chunks_by_rows([i for i, _ in fused])
        titles = snapshot.titles({c.doc_id for c in chunks.values()})
        # A row missing from `chunks` was deleted after the search (a shared store); it is skipped.
        return [
            Passage(
                chunk=chunks[row],
                title=titles.get(chunks[row].doc_id, chunks[row].doc_id),
                rank=rank,
                score=round(score, 6),
                dense_score=dense_scores.get(row),
                bm25_score=sparse_scores.get(row),
            )
            for rank, (row, score) in enumerate(fused, start=1)
            if row in chunks
        ]
