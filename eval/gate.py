"""The regression gate: compare a run's summary with the committed baseline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citeqa.indexing.errors import CiteqaError
from citeqa.service.settings import REPO_ROOT

DEFAULT_BASELINE = REPO_ROOT / "eval" / "baseline.json"
# Answerable F1 and unanswerable accuracy are gated each on its own: a change that answers more (or withholds
# more) must not buy one with the other, which the all-question EM and F1 alone would let pass.
GATED_METRICS = ("em", "f1", "has_ans_f1", "no_ans_accuracy", "recall@5")
DEFAULT_TOLERANCE = 0.02  # two points, on the 0..1 scale the summary uses
BASELINE_KEYS = (
    "n", "n_answerable", "n_unanswerable", "em", "f1", "has_ans_em", "has_ans_f1", "no_ans_accuracy",
    "abstention_precision", "abstention_recall", "recall@1", "recall@3", "recall@5", "recall@10", "mrr",
    "ndcg@10", "citation_exact", "citation_overlap", "answer_threshold", "answer_floor", "ece",
)  # fmt: skip


@dataclass(frozen=True)
class Regression:
    metric: str
    baseline: float
    current: float | None

    def describe(self, tolerance: float) -> str:
        now = "n/a" if self.current is None else f"{100 * self.current:.1f}"
        return (
            f"{self.metric} regressed: {now} < baseline {100 * self.baseline:.1f} "
            f"- tolerance {100 * tolerance:.1f} points"
        )


def load_baseline(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CiteqaError(f"no baseline at {path}; write one with `citeqa eval --update-baseline`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CiteqaError(f"baseline {path} is not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("summary"), dict):
        raise CiteqaError(f"baseline {path} has no 'summary' object")
    return data


def compare(
    summary: dict[str, Any], baseline: dict[str, Any], dataset: str, tolerance: float
) -> list[Regression]:
    """The gated metrics that fell more than `tolerance` below the baseline."""
    if baseline.get("dataset") != dataset or baseline["summary"].get("n") != summary.get("n"):
        raise CiteqaError(
            f"the baseline was measured on {baseline.get('dataset')} "
            f"({baseline['summary'].get('n')} questions), "
            f"this run is {dataset} ({summary.get('n')} questions): run the same set to check"
        )
    regressions = []
    for metric in GATED_METRICS:
        expected = baseline["summary"].get(metric)
        if expected is None:
            continue
        current = summary.get(metric)
        if current is None or current < expected - tolerance:
            regressions.append(Regression(metric, float(expected), current))
    return regressions


def baseline_from(summary: dict[str, Any], dataset: str, tolerance: float) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "tolerance": tolerance,
        "gated": list(GATED_METRICS),
        "summary": {k: summary[k] for k in BASELINE_KEYS if k in summary},
    }


def write_baseline(path: Path, summary: dict[str, Any], dataset: str, tolerance: float) -> None:
    path.write_text(json.dumps(baseline_from(summary, dataset, tolerance), indent=2) + "\n", encoding="utf-8")
