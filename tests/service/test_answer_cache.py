"""The answer cache: bounded LRU, keyed on the normalised question, index version and parameters."""

from __future__ import annotations

from typing import Any

import pytest
from citeqa.service.qa.cache import AnswerCache
from citeqa.service.qa.query import Query
from citeqa.service.qa.types import AskResult


def _result(text: str) -> AskResult:
    return AskResult(question=text, answers=[], passages=[], no_answer=True, message="")


def test_key_ignores_case_and_spacing_but_not_version_or_parameters() -> None:
    base = Query("Which  city?").cache_key("v1", 6)
    assert base == Query(" which city? ").cache_key("v1", 6)
    assert base != Query("Which city?").cache_key("v2", 6)
    assert base != Query("Which city?").cache_key("v1", 3)
    assert Query.of("q", document_ids=["b", "a"]).cache_key("v1", 6) == Query.of(
        "q", document_ids=["a", "b"]
    ).cache_key("v1", 6)
    assert Query.of("q", document_ids=["a"]).cache_key("v1", 6) != Query("q").cache_key("v1", 6)
    assert Query("q", min_answer_probability=0.5).cache_key("v1", 6) != Query("q").cache_key("v1", 6)
    # A best guess is another answer to the same question: it must not be served from the plain entry.
    assert Query("q", best_guess=True).cache_key("v1", 6) != Query("q").cache_key("v1", 6)


def test_lru_is_bounded_and_keeps_the_recently_used() -> None:
    cache = AnswerCache(2)
    cache.put(("a",), _result("a"))
    cache.put(("b",), _result("b"))
    assert cache.get(("a",)) is not None  # a is now the most recent
    cache.put(("c",), _result("c"))
    assert len(cache) == 2
    assert cache.get(("b",)) is None and cache.get(("a",)) is not None and cache.get(("c",)) is not None
    off = AnswerCache(0)
    off.put(("a",), _result("a"))
    assert off.get(("a",)) is None and len(off) == 0


@pytest.mark.integration
def test_pipeline_serves_repeats_from_the_cache_until_the_index_changes(make_pipeline: Any) -> None:
    from citeqa.indexing.ingest.loaders import load_bytes

    pipeline = make_pipeline()
    question = "Which city was the first to be designated a made in China 2025 pilot demonstration city?"
    first = pipeline.ask(question)
    again = pipeline.ask(question.upper())
    assert "cache" in again.timings_ms and again.timings_ms["read"] == 0.0
    assert again.question == question.upper()
    assert [a.text for a in again.answers] == [a.text for a in first.answers]
    pipeline.add_documents([load_bytes(b"An unrelated note about rivers and boats.", "note.txt")])
    fresh = pipeline.ask(question)
    assert "cache" not in fresh.timings_ms and fresh.index_version != first.index_version
