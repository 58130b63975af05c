"""BM25's pruned path for huge postings: exact scores for what it returns, close to the exact top k."""

from __future__ import annotations

import numpy as np

from service.retrieval import BM25Index


def _corpus() -> list[str]:
    rng = np.random.default_rng(0)
    common = ["policy", "city", "industry", "plan", "support"]
    rare = [f"term{i}" for i in range(300)]
    texts = []
    for _ in range(3000):
        words = list(rng.choice(common, 4)) + list(rng.choice(rare, 3))
        texts.append(" ".join(words))
    return texts


def test_pruned_search_returns_exact_scores_near_the_exact_top_k() -> None:
    bm25 = BM25Index(_corpus())
    query = "city policy support term7 term42"
    exact = bm25.scores(query)
    full = bm25.search(query, 20)
    pruned = bm25.search(query, 20, max_postings=200)  # far below the common terms' postings
    assert len(pruned) == 20
    for row, score in pruned:
        assert abs(score - float(exact[row])) < 1e-4
    assert sum(exact[row] for row, _ in pruned) >= 0.9 * sum(score for _, score in full)
    # Without a budget, or under it, the search is the exact one.
    assert bm25.search(query, 20, max_postings=10**9) == full


def test_a_single_common_term_still_answers() -> None:
    bm25 = BM25Index(_corpus())
    hits = bm25.search("policy", 5, max_postings=10)
    assert len(hits) == 5 and all(score > 0 for _, score in hits)
