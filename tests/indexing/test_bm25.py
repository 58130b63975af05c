"""BM25 on tantivy: numbers stay one token, scores are Okapi BM25, the index persists and updates in place."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from citeqa.indexing.store.bm25 import BM25Index

TEXTS = ["investment 804.179 billion", "investment 260 billion", "unrelated text here"]


def _entries() -> list[tuple[int, str, str]]:
    return [(row, f"d{row}.txt", text) for row, text in enumerate(TEXTS)]


def test_exact_number_match_ranks_first(tmp_path: Path) -> None:
    index = BM25Index.create(tmp_path / "bm25", _entries())
    hits = index.search("how much is 804.179 billion", k=3)
    assert hits[0][0] == 0
    assert all(score > 0 for _, score in hits)
    assert 2 not in [row for row, _ in hits]
    # "804" alone is not a token of "804.179": the number matches only whole.
    assert index.search("804", k=3) == []


def test_score_is_okapi_bm25(tmp_path: Path) -> None:
    index = BM25Index.create(tmp_path / "bm25", _entries())
    [(row, score)] = index.search("unrelated", k=3)
    n, df, tf, length, avg_length, k1, b = 3, 1, 1, 3, 3.0, 1.2, 0.75
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    assert row == 2
    expected = idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avg_length))
    assert score == pytest.approx(expected, rel=1e-4)


def test_document_filter_and_incremental_update_survive_reopening(tmp_path: Path) -> None:
    index = BM25Index.create(tmp_path / "bm25", _entries())
    assert [row for row, _ in index.search("investment", k=5, document_ids=["d1.txt"])] == [1]
    assert index.search("investment", k=5, document_ids=[]) == []
    index.apply(["d0.txt"], [(7, "d0.txt", "a new 804.179 figure")])
    reopened = BM25Index.open(tmp_path / "bm25")
    assert [row for row, _ in reopened.search("804.179", k=5)] == [7]
    assert len(reopened) == 3


def test_an_index_from_before_the_fast_row_field_still_answers(tmp_path: Path) -> None:
    """Indexes written when `row` was only stored (not fast) keep working: rows come from the stored docs."""
    import tantivy
    from citeqa.indexing.store.bm25 import bm25_tokens

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("text", stored=False, tokenizer_name="whitespace", index_option="freq")
    builder.add_text_field("doc_id", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_unsigned_field("row", stored=True, indexed=False)
    old_schema = builder.build()
    (tmp_path / "old").mkdir()
    old = tantivy.Index(old_schema, path=str(tmp_path / "old"))
    writer = old.writer(heap_size=15_000_000, num_threads=1)
    for row, doc_id, text in _entries():
        fields = {"text": " ".join(bm25_tokens(text)), "doc_id": doc_id, "row": row + 100}
        writer.add_document(tantivy.Document.from_dict(fields, old_schema))
    writer.commit()
    writer.wait_merging_threads()

    reopened = BM25Index.open(tmp_path / "old")
    new = BM25Index.create(tmp_path / "new", [(row + 100, d, t) for row, d, t in _entries()])
    assert reopened.search("investment billion", k=3) == new.search("investment billion", k=3)
    assert [row for row, _ in new.search("investment 804.179", k=3)] == [100, 101]
