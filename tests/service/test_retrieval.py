from __future__ import annotations

from service.pipeline import QAPipeline
from service.retrieval import bm25_tokens, reciprocal_rank_fusion


def test_bm25_tokens_keep_decimal_numbers_whole() -> None:
    assert bm25_tokens("Total of 804.179 billion yuan, the 2,000 projects") == [
        "total",
        "804.179",
        "billion",
        "yuan",
        "2,000",
        "projects",
    ]


def test_rrf_scores_first_everywhere_as_one() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [1, 3]], k=60)
    assert fused[0] == (1, 1.0)
    assert [i for i, _ in fused] == [1, 3, 2]


def test_hybrid_search_on_seeds_finds_the_number(seed_pipeline: QAPipeline) -> None:
    result = seed_pipeline.search("804.179 billion", top_k=3)
    assert "804.179 billion" in result.passages[0].chunk.text
    assert result.passages[0].bm25_score is not None


def test_search_restricted_to_documents(seed_pipeline: QAPipeline) -> None:
    assert seed_pipeline.search("Ningbo", document_ids=["missing.txt"]).passages == []
