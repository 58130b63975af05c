"""Answer quality on the seed question set (SQuAD EM/F1), to check that a speed-up costs nothing."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.answering import normalize_answer
from service.settings import REPO_ROOT
from service.types import AskResult

SEED_QA = REPO_ROOT / "eval" / "data" / "seed_qa.jsonl"


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    answers: tuple[str, ...]

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def load_questions(path: Path = SEED_QA) -> list[QAItem]:
    items = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                items.append(QAItem(id=row["id"], question=row["question"], answers=tuple(row["answers"])))
    return items


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def score(items: list[QAItem], results: list[AskResult]) -> dict[str, Any]:
    """EM and F1 (in points) of the top answer on answerable questions; abstentions on the rest."""
    em = f1 = 0.0
    answerable = abstained_correctly = 0
    for item, result in zip(items, results, strict=True):
        if item.answerable:
            answerable += 1
            prediction = "" if result.no_answer or not result.answers else result.answers[0].text
            em += max(exact_match(prediction, gold) for gold in item.answers)
            f1 += max(token_f1(prediction, gold) for gold in item.answers)
        elif result.no_answer:
            abstained_correctly += 1
    return {
        "answerable": answerable,
        "em": round(100 * em / max(answerable, 1), 2),
        "f1": round(100 * f1 / max(answerable, 1), 2),
        "unanswerable": len(items) - answerable,
        "abstained_on_unanswerable": abstained_correctly,
    }
