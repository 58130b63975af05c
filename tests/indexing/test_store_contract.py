"""The Store seam's contract, run against both backends: local files and a real PostgreSQL + pgvector."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from citeqa.indexing.embedding import Embedder
from citeqa.indexing.errors import IndexMismatchError, IndexNotFoundError
from citeqa.indexing.ingest.build import IndexBuilder
from citeqa.indexing.ingest.chunking import ChunkingConfig
from citeqa.indexing.ingest.loaders import load_bytes
from citeqa.indexing.store import IndexSpec, LocalStore, Store
from citeqa.indexing.types import Document

DOCS = {
    "a.txt": "Alpha policy.\nThe water tariff rises by 3 percent in 2024. Farmers are exempt.",
    "b.txt": "Beta rules.\nSolar panels on public buildings must cover 40% of roofs by 2030.",
    "c.txt": "Gamma notice.\nA new levy of 804.179 euros applies to freight lorries.",
}


def _doc(doc_id: str, text: str | None = None) -> Document:
    return load_bytes((text or DOCS[doc_id]).encode("utf-8"), doc_id)


def _postgres_store(request: pytest.FixtureRequest, bm25_dir: Path) -> Store:
    from citeqa.indexing.store.postgres import PostgresStore

    store = PostgresStore(request.getfixturevalue("database_url"), bm25_dir=bm25_dir)
    request.addfinalizer(store.close)
    return store


@pytest.fixture(params=["local", pytest.param("postgres", marks=[pytest.mark.e2e, pytest.mark.postgres])])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "local":
        yield LocalStore(tmp_path / "index")
    else:
        yield _postgres_store(request, tmp_path / "bm25")


def _builder(store: Store, embedder: Embedder) -> IndexBuilder:
    return IndexBuilder(store, embedder, ChunkingConfig(max_tokens=32, overlap_tokens=8))


def test_empty_store_has_no_version(store: Store) -> None:
    assert store.live_version() is None
    with pytest.raises(IndexNotFoundError, match="citeqa index"):
        store.open()


@pytest.mark.integration
def test_round_trip_keeps_documents_offsets_and_finds_both_ways(store: Store, embedder: Embedder) -> None:
    builder = _builder(store, embedder)
    report = builder.build([_doc("a.txt"), _doc("b.txt")])
    assert sorted(report.added) == ["a.txt", "b.txt"]
    assert store.live_version() == report.manifest.version
    snapshot = store.open(expected=builder.spec())
    assert snapshot.version == report.manifest.version
    assert set(snapshot.manifest.documents) == {"a.txt", "b.txt"}
    assert snapshot.document_count() == 2
    doc = snapshot.document("a.txt")
    assert doc is not None and doc.text == DOCS["a.txt"] and doc.title == "Alpha policy."
    for _row, chunk in snapshot.chunks_of("a.txt"):
        assert doc.text[chunk.start : chunk.end] == chunk.text
    [(dense_row, score)] = snapshot.dense(embedder.embed_query("solar roofs"), 1)
    assert snapshot.chunks_by_rows([dense_row])[dense_row].doc_id == "b.txt" and score > 0.3
    sparse_rows = [row for row, _ in snapshot.sparse("tariff farmers", 5)]
    assert {snapshot.chunks_by_rows(sparse_rows)[r].doc_id for r in sparse_rows} == {"a.txt"}
    assert snapshot.titles(["a.txt", "b.txt"]) == {"a.txt": "Alpha policy.", "b.txt": "Beta rules."}
    infos = snapshot.document_infos(offset=1, limit=5)
    assert [i.id for i in infos] == ["b.txt"] and infos[0].length == len(DOCS["b.txt"])
    snapshot.close()


@pytest.mark.integration
def test_updates_add_replace_and_delete_as_new_versions(store: Store, embedder: Embedder) -> None:
    builder = _builder(store, embedder)
    first = builder.build([_doc("a.txt"), _doc("b.txt")]).manifest.version
    added = builder.update([_doc("c.txt")])
    assert added.added == ["c.txt"] and added.embedded_chunks >= 1 and added.manifest.version != first
    snapshot = store.open()
    [(row, _)] = snapshot.sparse("804.179", 3)  # the number is one token
    assert snapshot.chunks_by_rows([row])[row].doc_id == "c.txt"
    replaced = builder.update([_doc("a.txt", "Alpha policy.\nThe bus fare rises to 2 euros.")])
    assert replaced.changed == ["a.txt"]
    deleted = builder.update([], ["b.txt"])
    assert deleted.removed == ["b.txt"]
    snapshot = store.open()
    assert store.live_version() == snapshot.version == deleted.manifest.version
    assert sorted(snapshot.manifest.documents) == ["a.txt", "c.txt"]
    assert snapshot.sparse("tariff", 5) == []  # the replaced text is gone from BM25
    assert snapshot.sparse("solar roofs", 5) == []  # so is the deleted document
    assert snapshot.document("b.txt") is None
    # A restricted search sees only the documents named, on both sides.
    vector = embedder.embed_query("levy on lorries")
    for hits in (snapshot.dense(vector, 10, ["a.txt"]), snapshot.sparse("levy fare", 10, ["a.txt"])):
        assert hits and {snapshot.chunks_by_rows([r])[r].doc_id for r, _ in hits} == {"a.txt"}
    assert snapshot.dense(vector, 10, []) == [] and snapshot.sparse("levy", 10, []) == []


@pytest.mark.integration
def test_an_index_built_by_another_embedder_is_refused(store: Store, embedder: Embedder) -> None:
    _builder(store, embedder).build([_doc("a.txt")])
    other = IndexSpec(embedder="other-model", dimension=384, chunking={"max_tokens": 32, "overlap_tokens": 8})
    with pytest.raises(IndexMismatchError, match="re-index"):
        store.open(expected=other)


@pytest.mark.e2e
@pytest.mark.postgres
def test_a_second_replica_catches_up_incrementally(
    database_url: str, tmp_path: Path, embedder: Embedder
) -> None:
    """Two stores on one database, each with its own BM25 folder: B follows A's writes version by version."""
    from citeqa.indexing.store.postgres import PostgresStore

    replica_a = PostgresStore(database_url, bm25_dir=tmp_path / "a")
    replica_b = PostgresStore(database_url, bm25_dir=tmp_path / "b")
    try:
        builder = _builder(replica_a, embedder)
        builder.build([_doc("a.txt")])
        assert replica_b.open().sparse("804.179", 3) == []
        builder.update([_doc("c.txt")])
        builder.update([], ["a.txt"])
        replica_b._polled_at = 0.0  # skip the poll interval
        snapshot = replica_b.open()
        assert snapshot.version == replica_b.live_version() == replica_a.live_version()
        assert len(snapshot.sparse("804.179", 3)) == 1 and snapshot.sparse("tariff", 3) == []
        state = (tmp_path / "b" / "state.json").read_text()
        assert snapshot.version.removeprefix("pg-") in state
    finally:
        replica_a.close()
        replica_b.close()


@pytest.mark.e2e
@pytest.mark.postgres
def test_a_damaged_replica_bm25_folder_is_rebuilt_from_the_database(
    database_url: str, tmp_path: Path, embedder: Embedder
) -> None:
    from citeqa.indexing.store.postgres import PostgresStore

    writer = PostgresStore(database_url, bm25_dir=tmp_path / "bm25")
    try:
        _builder(writer, embedder).build([_doc("c.txt")])
        writer.open()
    finally:
        writer.close()
    [meta] = (tmp_path / "bm25").glob("index-*/meta.json")
    meta.write_text("junk", encoding="utf-8")
    restarted = PostgresStore(database_url, bm25_dir=tmp_path / "bm25")
    try:
        assert len(restarted.open().sparse("804.179", 3)) == 1
    finally:
        restarted.close()


@pytest.mark.integration
def test_a_delete_asked_for_is_recorded_until_the_document_is_written_again(
    store: Store, embedder: Embedder
) -> None:
    """Store.deleted_ids: what `citeqa index` consults so that a deleted upload stays deleted."""
    builder = _builder(store, embedder)
    builder.build([_doc("a.txt"), _doc("b.txt"), _doc("c.txt")])
    assert store.deleted_ids() == set()
    builder.update([], ["b.txt"])
    assert store.deleted_ids() == {"b.txt"}
    # A file gone from the folder (a.txt) is not a delete asked for: it may come back with the file.
    builder.build([_doc("c.txt")])
    assert store.deleted_ids() == {"b.txt"}
    builder.update([_doc("b.txt")])  # uploaded again
    assert store.deleted_ids() == set()


@pytest.mark.integration
def test_a_delete_is_recorded_even_when_the_update_must_rebuild(store: Store, embedder: Embedder) -> None:
    """The live version cannot be built on (other chunking): the update re-embeds all, and still records."""
    _builder(store, embedder).build([_doc("a.txt"), _doc("b.txt")])
    other = IndexBuilder(store, embedder, ChunkingConfig(max_tokens=48, overlap_tokens=8))
    report = other.update([], ["b.txt"])
    assert sorted(report.manifest.documents) == ["a.txt"]
    assert store.deleted_ids() == {"b.txt"}
