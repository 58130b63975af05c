"""Scores: SQuAD EM/F1, retrieval recall@k/MRR/nDCG, abstention, calibration and thresholds, latency."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from citeqa.service.qa.answering import normalize_answer

# --- answers ---------------------------------------------------------------------------------


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD EM; with no gold answers only an empty prediction (an abstention) is right."""
    if not golds:
        return float(not normalize_answer(prediction))
    norm = normalize_answer(prediction)
    return float(any(norm == normalize_answer(g) for g in golds))


def _f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        # SQuAD v2: an empty side scores 1 only when both are empty.
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD token F1, the best over the gold answers."""
    if not golds:
        return float(not normalize_answer(prediction))
    return max(_f1(prediction, g) for g in golds)


# --- retrieval -------------------------------------------------------------------------------


def passage_is_relevant(
    passage_text: str, passage_doc_id: str, doc_id: str, answers: Sequence[str], evidence: str | None
) -> bool:
    """A passage of the question's document that holds the gold evidence or a gold answer."""
    if passage_doc_id != doc_id:
        return False
    if evidence and evidence in passage_text:
        return True
    return any(a in passage_text for a in answers)


def recall_at_k(relevance: Sequence[bool], k: int) -> float:
    return float(any(relevance[:k]))


def reciprocal_rank(relevance: Sequence[bool]) -> float:
    for rank, relevant in enumerate(relevance, start=1):
        if relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(relevance: Sequence[bool], k: int, n_relevant: int | None = None) -> float:
    """Binary-gain nDCG@k; the ideal list holds `n_relevant` relevant passages (default: those seen)."""
    dcg = sum(1.0 / math.log2(rank + 1) for rank, rel in enumerate(relevance[:k], start=1) if rel)
    ideal_count = min(k, sum(relevance) if n_relevant is None else n_relevant)
    if ideal_count == 0:
        return 0.0
    idcg = sum(1.0 / math.log2(rank + 1) for rank in range(1, ideal_count + 1))
    return dcg / idcg


# --- abstention ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Abstention:
    precision: float | None  # of the abstentions, the share on unanswerable questions
    recall: float | None  # of the unanswerable questions, the share abstained on
    abstained: int
    unanswerable: int


def abstention_scores(abstained: Sequence[bool], answerable: Sequence[bool]) -> Abstention:
    hits = sum(1 for a, ans in zip(abstained, answerable, strict=True) if a and not ans)
    n_abstained = sum(abstained)
    n_unanswerable = sum(1 for ans in answerable if not ans)
    return Abstention(
        precision=hits / n_abstained if n_abstained else None,
        recall=hits / n_unanswerable if n_unanswerable else None,
        abstained=n_abstained,
        unanswerable=n_unanswerable,
    )


# --- confidence ------------------------------------------------------------------------------

# An answer counts as right when its token F1 with a gold answer reaches this: policy answers are long
# clauses where an exact match is rare, and half the words right is what a reader can use.
RIGHT_F1 = 0.5


def is_right(prediction: str, golds: Sequence[str]) -> bool:
    """A given answer is right; an answer to an unanswerable question never is."""
    return bool(golds) and f1_score(prediction, golds) >= RIGHT_F1


@dataclass(frozen=True)
class Reliability:
    """How well probabilities match outcomes: expected calibration error and the diagram's bins."""

    ece: float | None
    bins: list[dict[str, float]]  # lo, hi, n, mean_probability, accuracy


def reliability(probabilities: Sequence[float], right: Sequence[bool], n_bins: int = 10) -> Reliability:
    if not probabilities:
        return Reliability(None, [])
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(right, dtype=np.float64)
    which = np.minimum((p * n_bins).astype(int), n_bins - 1)
    bins = []
    ece = 0.0
    for b in range(n_bins):
        mask = which == b
        if not mask.any():
            continue
        conf, acc = float(p[mask].mean()), float(y[mask].mean())
        ece += mask.mean() * abs(acc - conf)
        bins.append({"lo": b / n_bins, "hi": (b + 1) / n_bins, "n": int(mask.sum()), "mean_probability": conf,
                     "accuracy": acc})  # fmt: skip
    return Reliability(float(ece), bins)


def risk_coverage(
    probabilities: Sequence[float], right: Sequence[bool], coverages: Sequence[float] = (0.5, 0.8, 1.0)
) -> dict[str, float | None]:
    """Share of answers that are right when only the most confident `coverage` of questions is answered."""
    order = np.argsort(-np.asarray(probabilities, dtype=np.float64), kind="stable")
    y = np.asarray(right, dtype=np.float64)[order]
    out: dict[str, float | None] = {}
    for coverage in coverages:
        n = round(coverage * len(y))
        out[f"{round(100 * coverage)}%"] = float(y[:n].mean()) if n else None
    return out


THRESHOLD_GRID = tuple(i / 100 for i in range(101))


@dataclass(frozen=True)
class ThresholdSweep:
    best_threshold: float
    best_f1: float
    best_em: float
    curve: list[tuple[float, float, float]]  # (threshold, f1, em), thresholds ascending


def sweep_threshold(
    questions: Sequence[tuple[Sequence[str], Sequence[Any]]],
    decide: Callable[[Sequence[Any], float], str],
    thresholds: Sequence[float] = THRESHOLD_GRID,
) -> ThresholdSweep:
    """All-question F1 and EM at each threshold, replaying `decide` (the pipeline's own abstention rule:
    candidates, threshold -> the answer given, "" to abstain); ties resolve to the middle threshold."""
    if not questions:
        raise ValueError("no questions to sweep over")
    curve = []
    for t in thresholds:
        predictions = [(decide(candidates, t), golds) for golds, candidates in questions]
        f1 = sum(f1_score(p, g) for p, g in predictions) / len(questions)
        em = sum(exact_match(p, g) for p, g in predictions) / len(questions)
        curve.append((round(float(t), 4), f1, em))
    top_f1 = max(f1 for _, f1, _ in curve)
    tied = [point for point in curve if point[1] >= top_f1 - 1e-12]
    threshold, f1, em = tied[len(tied) // 2]
    return ThresholdSweep(best_threshold=threshold, best_f1=f1, best_em=em, curve=curve)


# --- latency ---------------------------------------------------------------------------------


def latency_summary(values_ms: Sequence[float]) -> dict[str, float | None]:
    if not values_ms:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    array = np.asarray(values_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(array, [50, 95, 99])
    return {
        "p50": round(float(p50), 2),
        "p95": round(float(p95), 2),
        "p99": round(float(p99), 2),
        "mean": round(float(array.mean()), 2),
        "max": round(float(array.max()), 2),
    }


def mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def bootstrap_interval(
    values: Sequence[float], resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean over questions: how far a score could move on another
    sample of questions of the same kind (on 99 questions an F1 of 75 is give or take 8 points), so that
    a difference between two runs is read against it. Seeded: the same scores give the same interval."""
    if not values:
        return None
    scores = np.asarray(values, dtype=np.float64)
    draws = np.random.default_rng(seed).integers(0, len(scores), size=(resamples, len(scores)))
    means = scores[draws].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))
