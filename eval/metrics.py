"""Scores: SQuAD EM/F1, retrieval recall@k/MRR/nDCG, abstention, the no-answer margin sweep, latency."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.answering import AnsweringConfig, combined_score, normalize_answer

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


# --- the no-answer margin --------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredSpan:
    """A candidate answer as the pipeline returned it, with what its ranking depends on."""

    text: str
    margin: float
    retrieval_score: float


def predict_at_margin(spans: Sequence[ScoredSpan], margin: float, config: AnsweringConfig) -> str:
    """The answer the pipeline would give with `no_answer_margin=margin` ("" = abstain).

    Mirrors AnswerAggregator: abstain when the best margin falls short, else rank by the
    combined score (which itself depends on the margin) and then by margin.
    """
    if not spans or max(s.margin for s in spans) < margin:
        return ""
    at_margin = dataclasses.replace(config, no_answer_margin=margin)
    best = min(spans, key=lambda s: (-combined_score(s.margin, s.retrieval_score, at_margin), -s.margin))
    return best.text


@dataclass(frozen=True)
class MarginSweep:
    best_margin: float
    best_f1: float
    best_em: float
    curve: list[tuple[float, float, float]]  # (margin, f1, em), margins ascending


def _scores_at(
    margins: np.ndarray, retrieval: np.ndarray, thresholds: np.ndarray, config: AnsweringConfig
) -> np.ndarray:
    """combined_score for every (threshold, span) pair: the same formula, vectorized."""
    x = np.clip((margins[None, :] - thresholds[:, None]) / config.temperature, -60.0, 60.0)
    reader = 1.0 / (1.0 + np.exp(-x))
    return reader**config.reader_weight * np.maximum(retrieval, 1e-6)[None, :] ** (1.0 - config.reader_weight)


def sweep_no_answer_margin(
    questions: Sequence[tuple[Sequence[str], Sequence[ScoredSpan]]], config: AnsweringConfig
) -> MarginSweep:
    """Try a margin between every pair of neighbouring best-margins; keep the one with the best F1.

    `questions` pairs each question's gold answers ([] if unanswerable) with the candidates the
    pipeline returned when it was told never to abstain. Among tied margins the middle one wins,
    so that the chosen value sits inside the plateau rather than on its edge. Each question is
    replayed at every margin at once (numpy), as `predict_at_margin` would one margin at a time.
    """
    if not questions:
        raise ValueError("no questions to sweep over")
    best_margins = sorted({round(max(s.margin for s in spans), 4) for _, spans in questions if spans})
    if best_margins:
        points = [best_margins[0] - 1.0]
        points += [(a + b) / 2 for a, b in itertools.pairwise(best_margins)]
        points.append(best_margins[-1] + 1.0)
    else:
        points = [0.0]
    thresholds = np.asarray(points, dtype=np.float64)
    f1_sum = np.zeros(len(thresholds))
    em_sum = np.zeros(len(thresholds))
    for golds, spans in questions:
        abstain_f1 = f1_score("", golds)
        abstain_em = exact_match("", golds)
        if not spans:
            f1_sum += abstain_f1
            em_sum += abstain_em
            continue
        margins = np.asarray([s.margin for s in spans], dtype=np.float64)
        retrieval = np.asarray([s.retrieval_score for s in spans], dtype=np.float64)
        span_f1 = np.asarray([f1_score(s.text, golds) for s in spans])
        span_em = np.asarray([exact_match(s.text, golds) for s in spans])
        scores = _scores_at(margins, retrieval, thresholds, config)
        # Best score first, then best margin: the aggregator's sort key.
        top = scores == scores.max(axis=1, keepdims=True)
        chosen = np.argmax(np.where(top, margins[None, :], -np.inf), axis=1)
        abstain = margins.max() < thresholds
        f1_sum += np.where(abstain, abstain_f1, span_f1[chosen])
        em_sum += np.where(abstain, abstain_em, span_em[chosen])
    n = len(questions)
    curve = [
        (round(float(t), 4), float(f) / n, float(e) / n)
        for t, f, e in zip(thresholds, f1_sum, em_sum, strict=True)
    ]
    top_f1 = max(f1 for _, f1, _ in curve)
    tied = [point for point in curve if point[1] >= top_f1 - 1e-12]
    margin, f1, em = tied[len(tied) // 2]
    return MarginSweep(best_margin=margin, best_f1=f1, best_em=em, curve=curve)


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
