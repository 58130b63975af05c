"""Metrics on hand-made cases with known values."""

from __future__ import annotations

import math

import pytest
from citeqa.eval.gate import baseline_from, compare
from citeqa.eval.metrics import (
    abstention_scores,
    bootstrap_interval,
    exact_match,
    f1_score,
    is_right,
    latency_summary,
    ndcg_at_k,
    passage_is_relevant,
    recall_at_k,
    reciprocal_rank,
    reliability,
    risk_coverage,
    sweep_threshold,
)
from citeqa.indexing.errors import CiteqaError


def test_exact_match_uses_squad_normalization() -> None:
    assert exact_match("The Expert Group.", ["expert group"]) == 1.0
    assert exact_match("expert", ["expert group"]) == 0.0
    assert exact_match("", []) == 1.0  # abstaining on an unanswerable question
    assert exact_match("Ningbo", []) == 0.0


def test_f1_token_overlap() -> None:
    # prediction 2 tokens, gold 3 tokens, 2 shared: P=1, R=2/3, F1=0.8
    assert f1_score("Quanzhou, Chengdu", ["Wuhan, Quanzhou, Chengdu"]) == pytest.approx(0.8)
    assert f1_score("x y", ["z w", "y v"]) == pytest.approx(0.5)  # best over golds
    assert f1_score("", ["Ningbo"]) == 0.0
    assert f1_score("", []) == 1.0


def test_relevance_needs_the_gold_document() -> None:
    assert passage_is_relevant("after Ningbo became", "doc", "doc", ["Ningbo"], "Ningbo became the first")
    assert passage_is_relevant("x Ningbo became the first y", "doc", "doc", [], "Ningbo became the first")
    assert not passage_is_relevant("after Ningbo became", "other", "doc", ["Ningbo"], None)
    assert not passage_is_relevant("nothing here", "doc", "doc", ["Ningbo"], "Ningbo became")


def test_rank_metrics() -> None:
    relevance = [False, True, False, True]
    assert recall_at_k(relevance, 1) == 0.0
    assert recall_at_k(relevance, 3) == 1.0
    assert reciprocal_rank(relevance) == 0.5
    assert reciprocal_rank([False, False]) == 0.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert ndcg_at_k(relevance, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k([True, False], 10) == 1.0
    assert ndcg_at_k([False, True], 10, n_relevant=2) == pytest.approx((1 / math.log2(3)) / idcg)
    assert ndcg_at_k([False, False], 10) == 0.0


def test_abstention_precision_and_recall() -> None:
    scores = abstention_scores(
        abstained=[True, True, False, False, True], answerable=[False, True, False, True, False]
    )
    assert scores.precision == pytest.approx(2 / 3)
    assert scores.recall == pytest.approx(2 / 3)
    assert abstention_scores([False], [True]).precision is None


def test_right_means_half_the_words_of_a_gold_answer() -> None:
    assert is_right("the expert group", ["expert group"])
    assert is_right("the expert group of ten", ["expert group"])  # F1 0.67
    assert not is_right("ten", ["expert group of ten people"])  # F1 0.33
    assert not is_right("anything", [])  # an answer to an unanswerable question is never right


def test_reliability_bins_and_expected_calibration_error() -> None:
    probabilities = [0.05, 0.15, 0.95, 0.95, 0.85, 0.85]
    right = [False, False, True, True, True, False]
    calibration = reliability(probabilities, right)
    by_lo = {round(b["lo"], 1): b for b in calibration.bins}
    assert by_lo[0.9]["n"] == 2 and by_lo[0.9]["accuracy"] == 1.0
    assert by_lo[0.8]["accuracy"] == 0.5
    # |0 - .05| + |0 - .15| + 2|1 - .95| + 2|.5 - .85|, each weighted 1/6
    assert calibration.ece == pytest.approx((0.05 + 0.15 + 0.1 + 0.7) / 6)
    assert reliability([], []).ece is None


def test_risk_coverage_answers_the_most_confident_first() -> None:
    table = risk_coverage([0.9, 0.1, 0.8, 0.2], [True, False, True, True], coverages=(0.5, 1.0))
    assert table == {"50%": 1.0, "100%": 0.75}


def test_threshold_sweep_replays_the_decision() -> None:
    # Candidates are (text, probability); the rule answers the first one at or above the threshold.
    questions = [
        (["Ningbo"], [("Ningbo", 0.8)]),
        (["2016"], [("2016", 0.6)]),
        ([], [("wrong", 0.3)]),
        ([], [("also wrong", 0.1)]),
    ]

    def decide(candidates: list[tuple[str, float]], threshold: float) -> str:
        return next((text for text, p in candidates if p >= threshold), "")

    sweep = sweep_threshold(questions, decide)
    # Any threshold in (0.3, 0.6] answers the two answerable questions and abstains on the rest.
    assert 0.3 < sweep.best_threshold <= 0.6
    assert sweep.best_f1 == 1.0 and sweep.best_em == 1.0
    assert sweep.curve[0][1] == 0.5  # threshold 0: never abstain, two of four right
    assert sweep.curve[-1][1] == 0.5  # threshold 1: always abstain, the two unanswerable right


def test_latency_percentiles() -> None:
    summary = latency_summary([float(v) for v in range(1, 101)])
    assert summary["p50"] == pytest.approx(50.5)
    assert summary["p95"] == pytest.approx(95.05)
    assert summary["max"] == 100.0
    assert latency_summary([])["p50"] is None


def test_gate_flags_drops_beyond_tolerance() -> None:
    baseline = baseline_from({"n": 10, "em": 0.6, "f1": 0.7, "recall@5": 0.9}, "seed_qa.jsonl", 0.02)
    same = {"n": 10, "em": 0.59, "f1": 0.7, "recall@5": 0.95}
    assert compare(same, baseline, "seed_qa.jsonl", 0.02) == []
    worse = {"n": 10, "em": 0.5, "f1": 0.7, "recall@5": 0.85}
    assert [r.metric for r in compare(worse, baseline, "seed_qa.jsonl", 0.02)] == ["em", "recall@5"]
    with pytest.raises(CiteqaError, match="baseline was measured on"):
        compare(same, baseline, "other.json", 0.02)


def test_gate_holds_answerable_f1_and_unanswerable_accuracy_each_on_its_own() -> None:
    # Answering every unanswerable question too can keep the all-question F1 level: the split gates see it.
    before = {"n": 10, "em": 0.6, "f1": 0.7, "has_ans_f1": 0.8, "no_ans_accuracy": 0.9, "recall@5": 0.9}
    baseline = baseline_from(before, "seed_qa.jsonl", 0.02)
    answers_all = before | {"has_ans_f1": 0.95, "no_ans_accuracy": 0.5}
    assert [r.metric for r in compare(answers_all, baseline, "seed_qa.jsonl", 0.02)] == ["no_ans_accuracy"]
    withholds = before | {"has_ans_f1": 0.6, "no_ans_accuracy": 1.0}
    assert [r.metric for r in compare(withholds, baseline, "seed_qa.jsonl", 0.02)] == ["has_ans_f1"]


def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_questions() -> None:
    few = [1.0, 0.0] * 10
    many = [1.0, 0.0] * 500
    low, high = bootstrap_interval(few)
    assert low < 0.5 < high and 0.25 < high - low < 0.6  # 20 questions: about +-0.22
    low_many, high_many = bootstrap_interval(many)
    assert low_many < 0.5 < high_many and high_many - low_many < 0.08
    assert bootstrap_interval(few) == bootstrap_interval(few)  # seeded: a report is reproducible
    assert bootstrap_interval([1.0] * 7) == (1.0, 1.0)
    assert bootstrap_interval([]) is None
