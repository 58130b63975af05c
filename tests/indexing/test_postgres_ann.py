"""The Postgres store's dense index: HNSW for small loads, IVF (ivfflat) for large bulk loads, as exact as
the lists it scans, with document filters and later inserts still found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from citeqa.indexing.ingest.loaders import content_hash
from citeqa.indexing.store import DocumentUpdate, IndexSpec
from citeqa.indexing.store.faiss_index import ivf_list_count
from citeqa.indexing.store.postgres import PostgresStore, default_probes
from citeqa.indexing.types import Chunk, Document

from tests.indexing.test_ann_index import clustered_unit_vectors

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

DIMENSION = 64
SPEC = IndexSpec("test-embedder", DIMENSION, {"max_tokens": 32, "overlap_tokens": 8})


def updates(vectors: np.ndarray, per_doc: int = 20, prefix: str = "d") -> list[DocumentUpdate]:
    """Documents of `per_doc` one-word chunks each, the chunks' embeddings taken from `vectors` in order."""
    out = []
    for number, first in enumerate(range(0, len(vectors), per_doc)):
        doc_id = f"{prefix}{number:03d}.txt"
        words = [f"w{row}" for row in range(first, min(first + per_doc, len(vectors)))]
        text = " ".join(words)
        chunks, offset = [], 0
        for seq, word in enumerate(words):
            chunks.append(Chunk(f"{doc_id}#{seq}", doc_id, seq, offset, offset + len(word), word))
            offset += len(word) + 1
        document = Document(id=doc_id, text=text, title=doc_id, content_hash=content_hash(text.encode()))
        out.append(DocumentUpdate(document, chunks, vectors[first : first + len(words)]))
    return out


def test_small_loads_get_hnsw_and_large_ones_ivf(database_url: str, tmp_path: Path) -> None:
    vectors = clustered_unit_vectors(600, DIMENSION)
    store = PostgresStore(database_url, tmp_path / "bm25", ann_threshold=500)
    try:
        assert (
            store.write(updates(vectors[:400]), [], SPEC, None, replace_all=True).index_type
            == "pgvector-hnsw"
        )
        manifest = store.write(updates(vectors), [], SPEC, None, replace_all=True)
        lists = ivf_list_count(600)
        assert lists > 1 and manifest.index_type == f"pgvector-ivfflat-{lists}"
        assert default_probes(lists) == lists  # a small index is scanned whole: exact, as checked below

        snapshot = store.open(expected=SPEC)
        rows = {c.text: row for d in manifest.documents for row, c in snapshot.chunks_of(d)}
        for query in vectors[::37]:
            exact = np.argsort(-(vectors @ query))[:10]
            found = snapshot.dense(query, 10)
            assert [rows[f"w{i}"] for i in exact] == [row for row, _ in found]
            assert found[0][1] == pytest.approx(float(vectors[exact[0]] @ query), abs=1e-5)

        # A filter keeps scanning until it has k rows of the wanted document (iterative scan).
        only = snapshot.dense(vectors[0], 5, document_ids=["d017.txt"])
        chunks = snapshot.chunks_by_rows([row for row, _ in only])
        assert len(only) == 5 and {c.doc_id for c in chunks.values()} == {"d017.txt"}

        # Rows inserted after the build land in the trained lists and are found.
        extra = clustered_unit_vectors(20, DIMENSION, seed=7)
        store.write(updates(extra, prefix="late"), [], SPEC, snapshot)
        later = store.open(expected=SPEC)
        [(row, score)] = later.dense(extra[3], 1)
        assert later.chunks_by_rows([row])[row].doc_id == "late000.txt" and score == pytest.approx(
            1.0, abs=1e-5
        )
        assert later.manifest.index_type == f"pgvector-ivfflat-{lists}"
    finally:
        store.close()


def test_probes_scale_with_the_lists() -> None:
    assert default_probes(8) == 8
    assert default_probes(512) == 16
    assert default_probes(2048) == 16
    assert default_probes(8192) == 64
