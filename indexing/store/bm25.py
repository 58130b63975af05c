"""BM25 on tantivy: an on-disk, incremental inverted index, loaded in milliseconds.

Text is tokenized here (`bm25_tokens`) and handed to tantivy as space-separated tokens under its
`whitespace` tokenizer, so numbers such as "804.179" stay one token and queries see the same terms.
Each entry carries the chunk's row id (what the store addresses chunks by) and its document id.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from citeqa.indexing.store.base import Hits

if TYPE_CHECKING:
    import tantivy

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
# One writer thread with a modest heap: builds run beside a serving process on small machines.
_WRITER_HEAP = 64_000_000


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased words and whole numbers ("804.179" stays one token), stop words dropped."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOPWORDS]


@functools.cache
def _schema() -> tantivy.Schema:
    # tantivy loads with the first index, not with `bm25_tokens`, which the answering code uses alone.
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("text", stored=False, tokenizer_name="whitespace", index_option="freq")
    builder.add_text_field("doc_id", stored=False, tokenizer_name="raw", index_option="basic")
    # A fast (columnar) field: reading 30 hits' rows from it skips decompressing 30 stored documents.
    # Stored too, for indexes written before it was fast.
    builder.add_unsigned_field("row", stored=True, indexed=False, fast=True)
    return builder.build()


class BM25Index:
    """A tantivy index in one directory; search is thread-safe, writes go through `writer()`."""

    def __init__(self, directory: Path, index: tantivy.Index) -> None:
        self.directory = directory
        self._index = index
        self._searcher = index.searcher()
        self._lock = threading.Lock()

    @classmethod
    def create(cls, directory: Path, entries: Iterable[tuple[int, str, str]]) -> BM25Index:
        """A new index of (row, doc_id, text) entries in an empty `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        import tantivy

        index = tantivy.Index(_schema(), path=str(directory), reuse=False)
        bm25 = cls(directory, index)
        bm25.apply([], entries)
        return bm25

    @classmethod
    def open(cls, directory: Path) -> BM25Index:
        import tantivy

        return cls(directory, tantivy.Index.open(str(directory)))

    def apply(self, delete_doc_ids: Iterable[str], entries: Iterable[tuple[int, str, str]]) -> None:
        """Drop every entry of `delete_doc_ids`, add `entries`, and commit as one step."""
        import tantivy

        writer = self._index.writer(heap_size=_WRITER_HEAP, num_threads=1)
        try:
            for doc_id in delete_doc_ids:
                writer.delete_documents_by_term("doc_id", doc_id)
            for row, doc_id, text in entries:
                writer.add_document(
                    tantivy.Document.from_dict(
                        {"text": " ".join(bm25_tokens(text)), "doc_id": doc_id, "row": row}, _schema()
                    )
                )
            writer.commit()
            writer.wait_merging_threads()
        except BaseException:
            writer.rollback()
            raise
        self._index.reload()
        with self._lock:
            self._searcher = self._index.searcher()

    def refresh(self) -> None:
        """See what another process committed to this folder since."""
        self._index.reload()
        with self._lock:
            self._searcher = self._index.searcher()

    def search(self, query: str, k: int, document_ids: Sequence[str] | None = None) -> Hits:
        """The `k` best (row, score) pairs, best first; tantivy scores with BM25 (k1 1.2, b 0.75)."""
        import tantivy

        terms = sorted(set(bm25_tokens(query)))
        if not terms or k <= 0 or (document_ids is not None and not document_ids):
            return []
        text_query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(_schema(), "text", t)) for t in terms]
        )
        if document_ids is not None:
            # A zero-score filter: the documents restrict the hits without adding to their scores.
            only = tantivy.Query.const_score_query(
                tantivy.Query.term_set_query(_schema(), "doc_id", list(document_ids)), 0.0
            )
            text_query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, text_query), (tantivy.Occur.Must, only)]
            )
        with self._lock:
            searcher = self._searcher
        hits = searcher.search(text_query, limit=k, count=False).hits
        addresses = [address for _, address in hits]
        try:
            rows = searcher.fast_field_values("row", addresses)
        except ValueError:  # an index written before `row` was a fast field
            rows = [None] * len(addresses)
        return [
            (int(row if row is not None else searcher.doc(address)["row"][0]), float(score))
            for (score, address), row in zip(hits, rows, strict=True)
        ]

    def __len__(self) -> int:
        with self._lock:
            return int(self._searcher.num_docs)
