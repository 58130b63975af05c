from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from citeqa.indexing.embedding import Embedder
from citeqa.indexing.errors import CorruptIndexError, IndexMismatchError, IndexNotFoundError
from citeqa.indexing.ingest.build import IndexBuilder
from citeqa.indexing.ingest.chunking import ChunkingConfig
from citeqa.indexing.ingest.loaders import LOADER_VERSION, load_bytes
from citeqa.indexing.store import CURRENT_FILE, IndexSnapshot, IndexSpec, build_faiss_index


def _doc(doc_id: str, text: str):
    return load_bytes(text.encode("utf-8"), doc_id)


@pytest.fixture()
def builder(tmp_path: Path, embedder: Embedder) -> IndexBuilder:
    return IndexBuilder(tmp_path / "index", embedder, ChunkingConfig(max_tokens=32, overlap_tokens=8))


DOCS = {
    "a.txt": "Alpha policy.\nThe water tariff rises by 3 percent in 2024. Farmers are exempt.",
    "b.txt": "Beta rules.\nSolar panels on public buildings must cover 40% of roofs by 2030.",
}


@pytest.mark.integration
def test_round_trip_keeps_documents_chunks_and_vectors(builder: IndexBuilder, embedder: Embedder) -> None:
    report = builder.build([_doc(k, v) for k, v in DOCS.items()])
    assert sorted(report.added) == ["a.txt", "b.txt"]
    snapshot = IndexSnapshot.open(builder.root, expected=builder.spec())
    assert snapshot.document_count() == 2
    doc = snapshot.document("a.txt")
    assert doc is not None and doc.text == DOCS["a.txt"] and doc.title == "Alpha policy."
    rows_chunks = snapshot.chunks_of("a.txt")
    for row, chunk in rows_chunks:
        assert doc.text[chunk.start : chunk.end] == chunk.text
        expected = embedder.embed([chunk.text])[0]
        # bf16 models (the CPU default where it has bf16 units) differ in the last bits between a
        # batched and a single embedding: compare directions, not bits.
        assert float(np.dot(snapshot.embeddings[row], expected)) > 0.9999
    _scores, ids = snapshot.index.search(embedder.embed(["solar roofs"]), 1)
    assert snapshot.chunks_by_rows([int(ids[0][0])])[int(ids[0][0])].doc_id == "b.txt"
    manifest = snapshot.manifest
    assert manifest.dimension == 384
    assert manifest.chunking == {"max_tokens": 32, "overlap_tokens": 8, "loaders": LOADER_VERSION}
    assert set(manifest.documents) == {"a.txt", "b.txt"}


@pytest.mark.integration
def test_incremental_update_embeds_only_changes(builder: IndexBuilder) -> None:
    builder.build([_doc(k, v) for k, v in DOCS.items()])
    first = IndexSnapshot.open(builder.root)
    report = builder.build([_doc("a.txt", DOCS["a.txt"]), _doc("c.txt", "Gamma.\nA new levy of 5 euros.")])
    assert report.unchanged == ["a.txt"] and report.added == ["c.txt"] and report.removed == ["b.txt"]
    assert report.embedded_chunks == len(IndexSnapshot.open(builder.root).chunks_of("c.txt"))
    second = IndexSnapshot.open(builder.root)
    assert second.version != first.version
    assert [d.id for d in second.documents()] == ["a.txt", "c.txt"]
    # Reused embeddings are identical to the first build's.
    old = {c.id: first.embeddings[r] for r, c in first.chunks_of("a.txt")}
    for row, chunk in second.chunks_of("a.txt"):
        assert np.array_equal(second.embeddings[row], old[chunk.id])
    # Only the live version remains on disk.
    versions = [p.name for p in builder.root.iterdir() if p.name.startswith("v-")]
    assert versions == [second.version]
    changed = builder.build(
        [_doc("a.txt", DOCS["a.txt"] + " Updated."), _doc("c.txt", "Gamma.\nA new levy of 5 euros.")]
    )
    assert changed.changed == ["a.txt"] and changed.unchanged == ["c.txt"]


def test_open_without_index_says_to_build(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="citeqa index"):
        IndexSnapshot.open(tmp_path / "nothing")


@pytest.mark.integration
def test_manifest_mismatch_says_to_reindex(builder: IndexBuilder) -> None:
    builder.build([_doc("a.txt", DOCS["a.txt"])])
    other = IndexSpec(embedder="some-other-model", dimension=768, chunking={})
    with pytest.raises(IndexMismatchError, match="re-index"):
        IndexSnapshot.open(builder.root, expected=other)


@pytest.mark.integration
def test_format_version_mismatch(builder: IndexBuilder) -> None:
    builder.build([_doc("a.txt", DOCS["a.txt"])])
    version_dir = builder.root / (builder.root / CURRENT_FILE).read_text().strip()
    manifest = json.loads((version_dir / "manifest.json").read_text())
    manifest["format_version"] = 999
    (version_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="format 999"):
        IndexSnapshot.open(builder.root)


@pytest.mark.integration
def test_corrupt_vectors_detected(builder: IndexBuilder) -> None:
    builder.build([_doc("a.txt", DOCS["a.txt"])])
    version_dir = builder.root / (builder.root / CURRENT_FILE).read_text().strip()
    faiss_file = version_dir / "vectors.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])
    with pytest.raises(CorruptIndexError, match=r"vectors\.faiss"):
        IndexSnapshot.open(builder.root)


def test_auto_index_type_switches_to_compressed_ivf_by_size() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    assert build_faiss_index(vectors, "auto", ann_threshold=100)[1] == "flat"
    index, kind = build_faiss_index(vectors, "auto", ann_threshold=10)
    assert kind == "ivf_sq8" and index.ntotal == 50
    assert build_faiss_index(vectors, "hnsw", ann_threshold=10)[1] == "hnsw"
