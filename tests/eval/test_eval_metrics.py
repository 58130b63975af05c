"""Metrics on hand-made cases with known values."""

from __future__ import annotations

import math
import random

import pytest

from eval.gate import baseline_from, compare
from eval.metrics import (
    ScoredSpan,
    abstention_scores,
    exact_match,
    f1_score,
    latency_summary,
    ndcg_at_k,
    passage_is_relevant,
    predict_at_margin,
    recall_at_k,
    reciprocal_rank,
    sweep_no_answer_margin,
)
from indexing.errors import CiteqaError
from service.answering import AnsweringConfig


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


def test_predict_at_margin_reranks_like_the_aggregator() -> None:
    config = AnsweringConfig(reader_weight=0.8, temperature=4.0)
    spans = [ScoredSpan("weak passage", 9.0, 1.0), ScoredSpan("strong reader", 12.0, 0.5)]
    # At a low margin both reader scores saturate, so retrieval decides; at a high one the reader does.
    assert predict_at_margin(spans, -100.0, config) == "weak passage"
    assert predict_at_margin(spans, 10.0, config) == "strong reader"
    assert predict_at_margin(spans, 12.5, config) == ""
    assert predict_at_margin([], 0.0, config) == ""


def test_margin_sweep_finds_the_separating_threshold() -> None:
    config = AnsweringConfig()
    questions = [
        (["Ningbo"], [ScoredSpan("Ningbo", 8.0, 1.0)]),
        (["2016"], [ScoredSpan("2016", 6.0, 1.0)]),
        ([], [ScoredSpan("wrong", 3.0, 1.0)]),
        ([], [ScoredSpan("also wrong", 1.0, 1.0)]),
    ]
    sweep = sweep_no_answer_margin(questions, config)
    # Any margin in (3, 6) answers the two answerable questions and abstains on the rest.
    assert 3.0 < sweep.best_margin < 6.0
    assert sweep.best_f1 == 1.0 and sweep.best_em == 1.0
    assert [m for m, _, _ in sweep.curve] == sorted(m for m, _, _ in sweep.curve)
    assert sweep.curve[0][1] == 0.5  # never abstain: two of four right


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


def test_margin_sweep_matches_replaying_each_margin() -> None:
    """The vectorized sweep agrees with predict_at_margin, one margin at a time."""
    rng = random.Random(7)
    config = AnsweringConfig()
    words = ["Ningbo", "Wuhan", "2016", "the expert group", "thirty cities"]
    questions = []
    for _ in range(40):
        golds = rng.sample(words, 1) if rng.random() < 0.7 else []
        spans = [
            ScoredSpan(rng.choice(words), round(rng.uniform(-5, 15), 4), round(rng.uniform(0.2, 1.0), 3))
            for _ in range(rng.randint(0, 5))
        ]
        questions.append((golds, spans))
    sweep = sweep_no_answer_margin(questions, config)
    for margin, f1, em in sweep.curve:
        predictions = [predict_at_margin(spans, margin, config) for _, spans in questions]
        pairs = list(zip(predictions, [g for g, _ in questions], strict=True))
        assert f1 == pytest.approx(sum(f1_score(p, g) for p, g in pairs) / len(pairs))
        assert em == pytest.approx(sum(exact_match(p, g) for p, g in pairs) / len(pairs))
