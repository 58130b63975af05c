"""Hybrid retrieval: dense (FAISS) and BM25 over the same chunks, fused by reciprocal rank."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np
from scipy import sparse

from indexing.embedding import Embedder
from indexing.store import COMPRESSED_INDEX_TYPES, IndexSnapshot
from service.types import Passage

_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "by",
        "can",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "their",
        "there",
        "these",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "would",
    ]
)


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased words and whole numbers ("804.179" stays one token), stop words dropped."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOPWORDS]


class BM25Index:
    """Okapi BM25 with the per-term weights precomputed into a sparse matrix."""

    def __init__(self, texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        vocabulary: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        counts: list[int] = []
        lengths = np.zeros(len(texts), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = bm25_tokens(text)
            lengths[row] = len(tokens)
            term_counts: dict[int, int] = {}
            for token in tokens:
                col = vocabulary.setdefault(token, len(vocabulary))
                term_counts[col] = term_counts.get(col, 0) + 1
            rows.extend([row] * len(term_counts))
            cols.extend(term_counts)
            counts.extend(term_counts.values())
        self.vocabulary = vocabulary
        n_docs = max(len(texts), 1)
        tf = np.asarray(counts, dtype=np.float32)
        row_idx = np.asarray(rows, dtype=np.int64)
        col_idx = np.asarray(cols, dtype=np.int64)
        doc_freq = np.bincount(col_idx, minlength=len(vocabulary)).astype(np.float32)
        idf = np.log(1.0 + (n_docs - doc_freq + 0.5) / (doc_freq + 0.5))
        avg_len = float(lengths.mean()) if len(texts) else 1.0
        norm = k1 * (1.0 - b + b * lengths[row_idx] / max(avg_len, 1.0))
        weights = idf[col_idx] * tf * (k1 + 1.0) / (tf + norm)
        self.matrix = sparse.csc_matrix(
            (weights, (row_idx, col_idx)), shape=(len(texts), len(vocabulary)), dtype=np.float32
        )
        self.matrix.sort_indices()  # the pruned search binary-searches rows within a column

    def _columns(self, query: str) -> list[int]:
        return sorted({self.vocabulary[t] for t in bm25_tokens(query) if t in self.vocabulary})

    def scores(self, query: str) -> np.ndarray:
        cols = self._columns(query)
        if not cols:
            return np.zeros(self.matrix.shape[0], dtype=np.float32)
        return np.asarray(self.matrix[:, cols].sum(axis=1)).ravel()

    def search(
        self, query: str, k: int, allowed: np.ndarray | None = None, max_postings: int = 0
    ) -> list[tuple[int, float]]:
        """The `k` best rows. With `max_postings` > 0, a query whose terms together occur in more rows
        than that is answered by `search_pruned` (approximate) instead of scoring every posting."""
        if max_postings > 0 and allowed is None:
            cols = self._columns(query)
            indptr = self.matrix.indptr
            if sum(int(indptr[c + 1] - indptr[c]) for c in cols) > max_postings:
                return self.search_pruned(cols, k, max_postings)
        scores = self.scores(query)
        if allowed is not None:
            masked = np.full_like(scores, -1.0)
            masked[allowed] = scores[allowed]
            scores = masked
        k = min(k, len(scores))
        if k == 0:
            return []
        # Partitioning for the k largest directly saves negating a copy of every score (1M chunks: ~1 ms).
        top = np.argpartition(scores, len(scores) - k)[len(scores) - k :]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    def search_pruned(self, cols: Sequence[int], k: int, max_postings: int) -> list[tuple[int, float]]:
        """Rare terms first: rows are found by the rarest terms within a postings budget, and the
        common terms only add their weight to the best of those rows (as Lucene's common-terms
        query does). A row that holds none of the rare terms is missed; such rows score low, since
        common terms have low idf. The scores of the rows returned are exact."""
        indptr, indices, data = self.matrix.indptr, self.matrix.indices, self.matrix.data
        by_rarity = sorted(cols, key=lambda c: int(indptr[c + 1] - indptr[c]))
        rare: list[int] = []
        used = 0
        for col in by_rarity:
            size = int(indptr[col + 1] - indptr[col])
            if rare and used + size > max_postings:
                break
            rare.append(col)
            used += size
        common = by_rarity[len(rare) :]
        scores = np.zeros(self.matrix.shape[0], dtype=np.float32)
        for col in rare:
            # Rows within one column are unique, so fancy-index addition is exact.
            scores[indices[indptr[col] : indptr[col + 1]]] += data[indptr[col] : indptr[col + 1]]
        candidates = np.flatnonzero(scores)
        keep = min(len(candidates), max(k * 20, 1000))
        if keep < len(candidates):
            candidates = candidates[np.argpartition(scores[candidates], len(candidates) - keep)[-keep:]]
        candidates.sort()
        partial = scores[candidates]
        for col in common:
            col_rows = indices[indptr[col] : indptr[col + 1]]
            at = np.minimum(np.searchsorted(col_rows, candidates), len(col_rows) - 1)
            hit = col_rows[at] == candidates
            partial[hit] += data[indptr[col] + at[hit]]
        k = min(k, len(candidates))
        if k == 0:
            return []
        top = np.argpartition(partial, len(partial) - k)[len(partial) - k :]
        top = top[np.argsort(-partial[top], kind="stable")]
        return [(int(candidates[i]), float(partial[i])) for i in top if partial[i] > 0]


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


@dataclass(frozen=True)
class SearchIndex:
    """A loaded index snapshot with its BM25 side, swapped as one unit."""

    snapshot: IndexSnapshot
    bm25: BM25Index

    @classmethod
    def load(cls, snapshot: IndexSnapshot) -> SearchIndex:
        return cls(snapshot=snapshot, bm25=BM25Index([t for _, t in snapshot.chunk_texts()]))


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int) -> list[tuple[int, float]]:
    """Fused (id, score) pairs, best first; the score is scaled so that first in every list is 1."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank + 1)
    best_possible = len(rankings) / (k + 1)
    return sorted(((i, s / best_possible) for i, s in fused.items()), key=lambda p: (-p[1], p[0]))


class HybridRetriever:
    def __init__(
        self,
        embedder: Embedder,
        candidates_k: int = 30,
        rrf_k: int = 60,
        rerank_factor: int = 4,
        nprobe: int = 0,
        bm25_max_postings: int = 0,
    ) -> None:
        """`rerank_factor`: a compressed index returns k * factor rows, re-scored exactly, best k kept.

        `nprobe`: inverted lists an IVF index scans per query; 0 keeps the value chosen at build time.
        `bm25_max_postings`: above this many postings a query takes the pruned BM25 path (0: never).
        """
        self.embedder = embedder
        self.candidates_k = candidates_k
        self.rrf_k = rrf_k
        self.rerank_factor = rerank_factor
        self.nprobe = nprobe
        self.bm25_max_postings = bm25_max_postings

    def dense(
        self, index: SearchIndex, query_vector: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> list[tuple[int, float]]:
        snapshot = index.snapshot
        if snapshot.index.ntotal == 0:
            return []
        if allowed is not None:
            # A restricted search is exact over just those rows.
            if len(allowed) == 0:
                return []
            scores = np.asarray(snapshot.embeddings[allowed]) @ query_vector
            order = np.argsort(-scores, kind="stable")[:k]
            return [(int(allowed[i]), float(scores[i])) for i in order]
        query = np.ascontiguousarray(query_vector, dtype=np.float32).reshape(1, -1)
        if snapshot.manifest.index_type not in COMPRESSED_INDEX_TYPES:
            scores_2d, ids_2d = snapshot.index.search(query, min(k, snapshot.index.ntotal))
            return [(int(i), float(s)) for i, s in zip(ids_2d[0], scores_2d[0], strict=True) if i >= 0]
        shortlist_k = min(k * max(self.rerank_factor, 1), snapshot.index.ntotal)
        # Search parameters travel with the call, so the shared index object is never mutated.
        params = None
        if self.nprobe > 0:
            params = faiss.SearchParametersIVF()
            params.nprobe = self.nprobe
        _, ids_2d = snapshot.index.search(query, shortlist_k, params=params)
        return exact_rerank(snapshot.embeddings, ids_2d[0], query[0], k)

    def retrieve(
        self, index: SearchIndex, query: str, top_k: int, document_ids: Sequence[str] | None = None
    ) -> list[Passage]:
        snapshot = index.snapshot
        allowed = None
        if document_ids is not None:
            allowed = np.asarray(sorted(snapshot.rows_of_documents(list(document_ids))), dtype=np.int64)
        dense_hits = self.dense(index, self.embedder.embed_query(query), self.candidates_k, allowed)
        sparse_hits = index.bm25.search(query, self.candidates_k, allowed, self.bm25_max_postings)
        fused = reciprocal_rank_fusion([[i for i, _ in dense_hits], [i for i, _ in sparse_hits]], self.rrf_k)[
            :top_k
        ]
        dense_scores = dict(dense_hits)
        sparse_scores = dict(sparse_hits)
        chunks = snapshot.chunks_by_rows([i for i, _ in fused])
        titles = snapshot.titles({c.doc_id for c in chunks.values()})
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
