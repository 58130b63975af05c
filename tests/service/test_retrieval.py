from __future__ import annotations

import threading
from typing import Any, cast

import pytest
from citeqa.indexing.errors import DocumentNotFoundError, StoreUnavailableError
from citeqa.indexing.store import StoreSnapshot
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.retrieval import SearchIndex, bm25_tokens, reciprocal_rank_fusion

from tests.conftest import SEED_DOC_ID


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


@pytest.mark.integration
def test_hybrid_search_on_seeds_finds_the_number(seed_pipeline: QAPipeline) -> None:
    result = seed_pipeline.search("804.179 billion", top_k=3)
    assert "804.179 billion" in result.passages[0].chunk.text
    assert result.passages[0].bm25_score is not None


@pytest.mark.integration
def test_search_restricted_to_documents(seed_pipeline: QAPipeline) -> None:
    (hit,) = seed_pipeline.search("Ningbo", top_k=1, document_ids=[SEED_DOC_ID]).passages
    assert hit.chunk.doc_id == SEED_DOC_ID
    with pytest.raises(DocumentNotFoundError, match=r"'missing\.txt'"):
        seed_pipeline.search("Ningbo", document_ids=["missing.txt"])


class _Instrumented:
    """The real snapshot, with both searches meeting at a barrier: retrieve() passes only if they overlap."""

    def __init__(self, snapshot: StoreSnapshot, sparse_error: Exception | None = None) -> None:
        self.snapshot = snapshot
        self.barrier = threading.Barrier(2, timeout=10)
        self.sparse_error = sparse_error
        self.threads: dict[str, int] = {}

    def dense(self, *args: Any, **kwargs: Any) -> Any:
        self.threads["dense"] = threading.get_ident()
        self.barrier.wait()
        return self.snapshot.dense(*args, **kwargs)

    def sparse(self, *args: Any, **kwargs: Any) -> Any:
        self.threads["sparse"] = threading.get_ident()
        self.barrier.wait()
        if self.sparse_error is not None:
            raise self.sparse_error
        return self.snapshot.sparse(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.snapshot, name)


@pytest.mark.integration
def test_bm25_runs_beside_the_dense_search(seed_pipeline: QAPipeline) -> None:
    instrumented = _Instrumented(seed_pipeline.index.snapshot)
    index = SearchIndex(cast(StoreSnapshot, instrumented))
    passages = seed_pipeline.retriever.retrieve(index, "804.179 billion", 3)
    assert "804.179 billion" in passages[0].chunk.text and passages[0].bm25_score is not None
    assert instrumented.threads["dense"] == threading.get_ident() != instrumented.threads["sparse"]


@pytest.mark.integration
def test_a_failing_bm25_search_fails_the_retrieval(seed_pipeline: QAPipeline) -> None:
    failing = _Instrumented(seed_pipeline.index.snapshot, StoreUnavailableError("the database went away"))
    with pytest.raises(StoreUnavailableError, match="went away"):
        seed_pipeline.retriever.retrieve(SearchIndex(cast(StoreSnapshot, failing)), "Ningbo", 3)
