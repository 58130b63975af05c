"""End to end on seeds/: real embedder, real reader, real FAISS and SQLite."""

from __future__ import annotations

import pytest
from citeqa.indexing.errors import QuestionError
from citeqa.service.qa.pipeline import QAPipeline

from tests.conftest import SEED_DOC_ID

pytestmark = pytest.mark.e2e

KNOWN = [
    ("Which city was the first Made in China 2025 pilot demonstration city?", "Ningbo"),
    ("What is the total investment of Shaanxi's projects?", "804.179 billion yuan"),
    ("Who is the Minister of industry and information technology?", "Miao Wei"),
    ("By the end of 2016, how many provinces had issued local policies?", "25"),
    ("How many industries does the Jiangsu action plan focus on?", "15"),
    ("When did Ningbo become a pilot demonstration city?", "August 2016"),
]


@pytest.mark.parametrize(("question", "expected"), KNOWN)
def test_known_answers_with_exact_offsets(
    seed_pipeline: QAPipeline, seed_text: str, question: str, expected: str
) -> None:
    result = seed_pipeline.ask(question)
    assert not result.no_answer
    best = result.answers[0]
    assert best.text == expected
    assert best.doc_id == SEED_DOC_ID
    assert seed_text[best.start : best.end] == best.text
    citation = best.citation
    assert citation.sentence.start <= best.start and best.end <= citation.sentence.end
    assert seed_text[citation.passage.start : citation.passage.end] == citation.passage.text
    assert citation.passage.start <= best.start and best.end <= citation.passage.end
    assert seed_text[citation.context.start : citation.context.end] == citation.context.text
    assert set(result.timings_ms) == {"retrieve", "read", "total"}


def test_every_answer_is_a_verbatim_distinct_span(seed_pipeline: QAPipeline, seed_text: str) -> None:
    for question, _ in KNOWN:
        result = seed_pipeline.ask(question, max_answers=5)
        spans = [(a.start, a.end) for a in result.answers]
        for answer in result.answers:
            assert seed_text[answer.start : answer.end] == answer.text
        # No two answers overlap: overlapping chunks must not produce duplicates.
        for i, (s1, e1) in enumerate(spans):
            for s2, e2 in spans[i + 1 :]:
                assert e1 <= s2 or e2 <= s1
        margins = [a.reader_margin for a in result.answers]
        assert margins == sorted(margins, reverse=True)  # the reader's order


@pytest.mark.parametrize(
    "question",
    [
        "What is the population of Ningbo?",
        "How many electric cars did Tesla sell in Shanghai?",
    ],
)
def test_unanswerable_question_abstains_but_returns_passages(
    seed_pipeline: QAPipeline, question: str
) -> None:
    result = seed_pipeline.ask(question)
    assert result.no_answer
    assert result.answers == []
    assert result.message == "I found no answer in the documents."
    assert result.passages


@pytest.mark.parametrize("question", ["", "   \n\t", "x" * 1001])
def test_bad_questions_are_rejected(seed_pipeline: QAPipeline, question: str) -> None:
    with pytest.raises(QuestionError):
        seed_pipeline.ask(question)
