"""The report counts the three outcomes (confident, not sure, none) and how often each kind of answer is
right; built from hand-made results, so no model is needed."""

from __future__ import annotations

from typing import Any

from citeqa.eval.datasets import EvalItem
from citeqa.eval.harness import QuestionResult, outcome_counts
from citeqa.eval.metrics import exact_match, f1_score
from citeqa.eval.report import report_markdown, terminal_table
from citeqa.service.wire import ask_json

from tests.service.outcome_fakes import CONFIDENT, NONE, NOT_SURE, OutcomePipeline


def _result(gold: tuple[str, ...], payload: dict[str, Any]) -> QuestionResult:
    item = EvalItem(id=f"q{len(gold)}-{payload['question'][:6]}", question=payload["question"],
                    answers=gold, doc_id="refunds.md")  # fmt: skip
    answers = payload["answers"]
    abstained = payload["no_answer"]
    prediction = "" if abstained else answers[0]["text"]
    return QuestionResult(
        item=item, prediction=prediction, abstained=abstained, answers=answers, passages=[], relevance=[],
        timings_ms={"total": 3.0}, em=exact_match(prediction, gold), f1=f1_score(prediction, gold),
    )  # fmt: skip


def _results() -> list[QuestionResult]:
    pipeline = OutcomePipeline()
    asked = {q: ask_json(pipeline.ask(q)) for q in (CONFIDENT, NOT_SURE, NONE)}
    return [
        _result(("14 days",), asked[CONFIDENT]),  # confident, right
        _result(("within 14 days",), asked[CONFIDENT]),  # confident, right (F1 >= 0.5)
        _result((), asked[CONFIDENT]),  # confident, wrong: unanswerable
        _result(("5 euros",), asked[NOT_SURE]),  # not sure, right
        _result(("7 euros",), asked[NOT_SURE]),  # not sure, half right (F1 0.5 counts as right)
        _result(("nobody",), asked[NOT_SURE]),  # not sure, wrong
        _result(("the clerk",), asked[NONE]),  # none on an answerable question
        _result((), asked[NONE]),  # none, rightly
    ]


def test_outcomes_are_counted_by_kind_of_question() -> None:
    counts = outcome_counts(_results())
    assert (counts["outcome_answer"], counts["outcome_not_sure"], counts["outcome_none"]) == (3, 3, 2)
    assert (counts["outcome_answer_answerable"], counts["outcome_answer_unanswerable"]) == (2, 1)
    assert (counts["outcome_not_sure_answerable"], counts["outcome_not_sure_unanswerable"]) == (3, 0)
    assert (counts["outcome_none_answerable"], counts["outcome_none_unanswerable"]) == (1, 1)
    assert counts["answer_right"] == 2 / 3 and counts["not_sure_right"] == 2 / 3
    # Risk-coverage at the two operating points: confident only, then confident or not sure.
    assert counts["coverage_answer"] == 3 / 8 and counts["accuracy_answer"] == 2 / 3
    assert counts["coverage_not_sure"] == 6 / 8 and counts["accuracy_not_sure"] == 4 / 6
    assert counts["answerable_right"] == 4 / 6


def test_a_service_without_confidence_levels_counts_as_confident() -> None:
    result = _results()[0]
    for answer in result.answers:
        del answer["confidence_level"]
    assert result.outcome == "answer"


def test_the_report_shows_the_outcome_table() -> None:
    from citeqa.eval.harness import EvalReport

    results = _results()
    summary = {"n": len(results), **outcome_counts(results)}
    report = EvalReport(
        dataset="fake", backend="fake", config={"top_k": 4, "scope": "corpus", "answer_threshold": 0.6,
                                                 "answer_floor": 0.3},
        summary=summary, latency={}, confidence=None, results=results, wall_s=0.1,
    )  # fmt: skip
    markdown = report_markdown(report)
    assert "| confident | 2 | 1 | 3 | 66.7% | 37.5% | 66.7% |" in markdown
    assert "| not sure | 3 | 0 | 3 | 66.7% | 75.0% | 66.7% |" in markdown
    assert "| no answer | 1 | 1 | 2 |" in markdown
    assert "wrong (not sure)" in markdown  # the misses say which kind of answer was wrong
    table = terminal_table(report)
    assert "not-sure answers" in table and "confident answers right" in table
    report.summary["answerable_right"] = 0.75
    report.summary["intervals"] = {"answerable_right": (0.5, 0.875), "f1": None}
    row = next(line for line in terminal_table(report).splitlines() if line.startswith("answerable: right"))
    assert row.endswith("75.0%  (95% interval 50.0-87.5)")
