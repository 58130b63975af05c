"""QAPipeline behaviour beyond single questions: updates and picking up new index versions."""

from __future__ import annotations

import pytest
from citeqa.indexing.ingest.loaders import load_bytes
from citeqa.service.qa.pipeline import QAPipeline

from tests.conftest import PipelineFactory

pytestmark = pytest.mark.integration


def test_add_and_delete_documents(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline()
    doc = load_bytes(b"Water rules.\nThe Lisbon water levy is 7 euros per cubic metre.", "water.txt")
    report = pipeline.add_documents([doc])
    assert report.added == ["water.txt"] and report.embedded_chunks >= 1
    result = pipeline.ask("How much is the Lisbon water levy?", document_ids=["water.txt"])
    assert result.answers and result.answers[0].doc_id == "water.txt"
    assert "7 euros" in result.answers[0].text
    pipeline.delete_document("water.txt")
    assert all(p.chunk.doc_id != "water.txt" for p in pipeline.search("Lisbon water levy", top_k=10).passages)


def test_new_version_from_another_writer_is_picked_up(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline()
    before = pipeline.index.snapshot.version
    # A second pipeline over the same index directory plays the part of `citeqa index` in another process.
    writer = QAPipeline(pipeline.settings, embedder=pipeline.embedder, reader=pipeline.reader)
    writer.add_documents([load_bytes(b"Extra.\nThe Porto tram fare is 2 euros.", "tram.txt")])
    after = pipeline.index.snapshot.version
    assert after != before
    assert pipeline.search("Porto tram fare").passages[0].chunk.doc_id == "tram.txt"


def test_uploads_and_deletions_survive_reindexing(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline()
    corpus = pipeline.settings.corpus_dir
    pipeline.upload_document("tram.txt", b"Extra.\nThe Porto tram fare is 2 euros.")
    pipeline.delete_document("000_d31740c80f9a4c4e.txt")
    report = pipeline.index_folder()
    assert sorted(report.manifest.documents) == ["tram.txt"]
    assert sorted(p.name for p in corpus.iterdir()) == ["000_d31740c80f9a4c4e.txt"]
