"""Answer quality on the seed question set (SQuAD EM/F1), to check that a speed-up costs nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from citeqa.eval.datasets import SEED_SET, EvalItem, load_jsonl
from citeqa.eval.metrics import exact_match, f1_score
from citeqa.service.qa.types import AskResult


def load_questions(path: Path = SEED_SET) -> list[EvalItem]:
    return load_jsonl(path).items


def seed_questions() -> list[str]:
    return [item.question for item in load_questions()]


def score(items: list[EvalItem], results: list[AskResult]) -> dict[str, Any]:
    """EM and F1 (in points) of the top answer on answerable questions; abstentions on the rest."""
    em = f1 = 0.0
    answerable = abstained_correctly = 0
    for item, result in zip(items, results, strict=True):
        if item.answerable:
            answerable += 1
            prediction = "" if result.no_answer or not result.answers else result.answers[0].text
            em += exact_match(prediction, item.answers)
            f1 += f1_score(prediction, item.answers)
        elif result.no_answer:
            abstained_correctly += 1
    return {
        "answerable": answerable,
        "em": round(100 * em / max(answerable, 1), 2),
        "f1": round(100 * f1 / max(answerable, 1), 2),
        "unanswerable": len(items) - answerable,
        "abstained_on_unanswerable": abstained_correctly,
    }
