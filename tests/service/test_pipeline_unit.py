"""The pipeline's own logic on the fake models (tests/fakes.py): retrieval over a real index, answers cut
verbatim from the documents with their citations, abstention, filters, the cache and document updates."""

from __future__ import annotations

import re

import pytest
from citeqa.indexing.errors import CiteqaError, DocumentNotFoundError, QuestionError, TopKError
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.query import Query


def test_an_answer_is_the_documents_own_text_with_its_citation(fake_pipeline: QAPipeline) -> None:
    result = fake_pipeline.ask("How high is the water levy in Lisbon?")
    assert not result.no_answer
    answer = result.answers[0]
    document, version = fake_pipeline.document(answer.citation.doc_id)
    assert answer.text == "3 percent" and answer.citation.doc_id == "water.txt"
    assert document.text[answer.citation.start : answer.citation.end] == answer.text
    assert answer.citation.sentence.text == "The Lisbon water levy is 3 percent of the bill."
    passage = answer.citation.passage
    assert document.text[passage.start : passage.end] == passage.text and answer.text in passage.text
    assert result.index_version == version == fake_pipeline.index_version
    assert set(result.timings_ms) >= {"retrieve", "read", "total"}


def test_no_passage_holding_an_answer_means_no_answer(fake_pipeline: QAPipeline) -> None:
    result = fake_pipeline.ask("Who chairs the harbour board?")
    assert result.no_answer and result.answers == [] and result.message
    assert result.passages, "the passages read are still returned as evidence"


def test_document_ids_restrict_the_search(fake_pipeline: QAPipeline) -> None:
    everywhere = fake_pipeline.ask("What is the road charge?")
    assert everywhere.answers[0].citation.doc_id == "roads.txt"
    elsewhere = fake_pipeline.ask(Query.of("What is the road charge?", document_ids=["water.txt"]))
    assert elsewhere.no_answer and {p.chunk.doc_id for p in elsewhere.passages} == {"water.txt"}


def test_the_cache_answers_the_same_query_and_only_that(fake_pipeline: QAPipeline) -> None:
    reader = fake_pipeline.reader
    first = fake_pipeline.ask("What is the road charge?")
    calls = reader.calls  # type: ignore[attr-defined]
    again = fake_pipeline.ask("what is the  ROAD charge?")
    assert reader.calls == calls and again.timings_ms["cache"] >= 0  # type: ignore[attr-defined]
    assert again.answers == first.answers
    fake_pipeline.ask(Query("What is the road charge?", min_answer_probability=0.2))
    assert reader.calls == calls + 1  # type: ignore[attr-defined]


def test_min_answer_probability_demotes_to_not_sure_and_is_checked(fake_pipeline: QAPipeline) -> None:
    assert fake_pipeline.ask("What is the road charge?").confidence_level == "answer"
    # Nothing is confident at 1.0: the answer comes back "not sure" (above the floor), never confident.
    strict = fake_pipeline.ask(Query("What is the road charge?", min_answer_probability=1.0))
    assert strict.answers and {a.confidence_level for a in strict.answers} == {"not_sure"}
    with pytest.raises(QuestionError, match="min_answer_probability"):
        fake_pipeline.ask(Query("What is the road charge?", min_answer_probability=1.5))
    with pytest.raises(TopKError):
        fake_pipeline.ask(Query("What is the road charge?", top_k=0))
    with pytest.raises(QuestionError):
        fake_pipeline.ask("   ")


def test_upload_then_delete(fake_pipeline: QAPipeline) -> None:
    text = "Parking Rules\nThe parking fee is 2 euros an hour."
    fake_pipeline.reader.answers["parking fee"] = "2 euros an hour"  # type: ignore[attr-defined]
    document, _ = fake_pipeline.upload_document("parking.txt", text.encode(), "Parking (v2).txt")
    assert document.title == "Parking Rules" and fake_pipeline.has_document("parking.txt")
    assert fake_pipeline.sources().upload_names()["parking.txt"] == "Parking (v2).txt"
    assert fake_pipeline.ask("What is the parking fee?").answers[0].text == "2 euros an hour"
    assert fake_pipeline.documents().total == 3 and fake_pipeline.chunk_count("parking.txt") >= 1

    fake_pipeline.delete_document("parking.txt")
    assert not fake_pipeline.has_document("parking.txt")
    with pytest.raises(DocumentNotFoundError):
        fake_pipeline.document("parking.txt")
    with pytest.raises(DocumentNotFoundError):
        fake_pipeline.delete_document("parking.txt")
    assert fake_pipeline.ask("What is the parking fee?").no_answer


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda p: p.ask(None), QuestionError, "must be a string (got NoneType)"),
        (lambda p: p.ask(b"water levy?"), QuestionError, "must be a string (got bytes)"),
        (lambda p: p.search(None), QuestionError, "must be a string"),  # type: ignore[arg-type]
        (lambda p: p.ask("water levy?", top_k="3"), TopKError, "between 1 and"),
        (lambda p: p.ask("water levy?", max_answers=0), QuestionError, "max_answers must be at least 1"),
        (lambda p: p.ask("water levy?", document_ids="water.txt"), QuestionError, "not one string"),
        (lambda p: p.documents(-1, 5), CiteqaError, "offset must be at least 0"),
    ],
)
def test_library_misuse_is_one_clear_error(fake_pipeline: QAPipeline, call, error, fragment) -> None:  # type: ignore[no-untyped-def]
    """From an outside probe: AttributeError and TypeError from deep inside, a string of ids split into its
    letters, max_answers=0 answered with one answer, a negative offset echoed back."""
    with pytest.raises(error, match=re.escape(fragment)):
        call(fake_pipeline)


def test_the_errors_and_a_folder_given_as_text_work_from_the_package(fake_pipeline: QAPipeline) -> None:
    import citeqa

    assert citeqa.DocumentNotFoundError is DocumentNotFoundError and issubclass(
        citeqa.TopKError, citeqa.CiteqaError
    )
    folder = str(fake_pipeline.settings.corpus_dir)  # index_folder("my-policies") failed on str.is_file
    assert fake_pipeline.index_folder(folder).document_count == 2  # type: ignore[arg-type]
