from __future__ import annotations

from pathlib import Path

import pytest
from citeqa.indexing.errors import CiteqaError
from citeqa.indexing.ingest.sources import DocumentSources


@pytest.fixture()
def sources(tmp_path: Path) -> DocumentSources:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Alpha.", encoding="utf-8")
    (corpus / "b.txt").write_text("Beta.", encoding="utf-8")
    return DocumentSources(corpus, tmp_path / "data")


def test_uploads_add_and_replace_without_touching_the_corpus(sources: DocumentSources) -> None:
    assert sources.save_upload("c.txt", b"Gamma.") is None
    assert sources.save_upload("a.txt", b"Alpha two.") is None
    loaded = sources.load()
    assert {d.id: d.text for d in loaded.documents} == {
        "a.txt": "Alpha two.",
        "b.txt": "Beta.",
        "c.txt": "Gamma.",
    }
    assert (sources.corpus_dir / "a.txt").read_text() == "Alpha."
    assert sorted(p.name for p in sources.corpus_dir.iterdir()) == ["a.txt", "b.txt"]


def test_deleted_corpus_documents_stay_deleted_until_uploaded_again(sources: DocumentSources) -> None:
    sources.forget("b.txt")
    assert [d.id for d in sources.load().documents] == ["a.txt"]
    assert (sources.corpus_dir / "b.txt").exists()  # the user's folder is never modified
    sources.save_upload("b.txt", b"Beta again.")
    assert {d.id: d.text for d in sources.load().documents}["b.txt"] == "Beta again."


def test_deleted_folder_documents_are_listed_and_can_be_restored(sources: DocumentSources) -> None:
    sources.forget("b.txt")
    sources.forget("c.txt")  # not a file of the folder: nothing to keep out
    assert sources.withheld() == ["b.txt"]
    assert sources.withheld({"a.txt", "gone.txt", "../corpus/a.txt"}) == ["a.txt", "b.txt"]
    loaded = sources.load(restore=["b.txt"])
    assert [d.id for d in loaded.documents] == ["a.txt", "b.txt"]
    assert sources.withheld() == [] and [d.id for d in sources.load().documents] == ["a.txt", "b.txt"]


def test_failed_update_restores_previous_upload(sources: DocumentSources) -> None:
    sources.save_upload("c.txt", b"First.")
    previous = sources.save_upload("c.txt", b"Second.")
    sources.restore_upload("c.txt", previous)
    assert (sources.uploads_dir / "c.txt").read_bytes() == b"First."
    sources.restore_upload("d.txt", sources.save_upload("d.txt", b"New."))
    assert not (sources.uploads_dir / "d.txt").exists()


@pytest.mark.parametrize("doc_id", ["../escape.txt", "sub/dir.txt", ".hidden.txt", ""])
def test_upload_ids_cannot_leave_the_uploads_folder(sources: DocumentSources, doc_id: str) -> None:
    with pytest.raises(CiteqaError):
        sources.save_upload(doc_id, b"x")


def test_uploads_that_replace_folder_files_are_listed(sources: DocumentSources) -> None:
    sources.save_upload("c.txt", b"Gamma.")
    assert sources.shadowed() == []
    (sources.corpus_dir / "c.txt").write_text("Gamma from the folder.", encoding="utf-8")
    assert sources.shadowed() == ["c.txt"]
    assert {d.id: d.text for d in sources.load().documents}["c.txt"] == "Gamma."  # the upload wins
