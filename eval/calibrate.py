"""`citeqa calibrate`: fit the answer calibrator of a reader on held-out data and store it with the reader.

Every question of each calibration set goes through the real pipeline once; each distinct candidate
answer (with the features `service.answering` computes) is labelled right or wrong against the gold
answers. A logistic regression over those features becomes the answer probability; the abstention
threshold is the one that maximises all-question F1, averaged over the sets (each set weighs the same),
replaying the pipeline's own `AnswerAggregator.decide`.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from citeqa.eval.datasets import load_dataset
from citeqa.eval.metrics import THRESHOLD_GRID, is_right, mean, reliability, sweep_threshold
from citeqa.service.qa.answering import AnswerAggregator, AnsweringConfig
from citeqa.service.qa.confidence import CALIBRATION_FILE, FEATURES, Calibrator
from citeqa.service.qa.types import Answer
from citeqa.service.settings import REPO_ROOT, Settings

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# Held-out parts only: the reader was trained on SQuAD train and the PolicyQA "train" part.
DEFAULT_OPEN = [f"{SHARED_DATA / 'squad' / 'dev.json.gz'}:calibrate"]
DEFAULT_SCOPED = [f"{SHARED_DATA / 'policyqa' / 'dev.json.gz'}:calibrate"]


@dataclass
class CalibrationSet:
    """One data set's questions: gold answers and every candidate the pipeline scored."""

    name: str
    questions: list[tuple[tuple[str, ...], list[Answer]]]


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], handlers: dict[str, Any]
) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="fit the answer probability and abstention threshold of the reader on held-out data",
        description="Run held-out SQuAD-format sets through the pipeline, fit the calibrator and store it "
        f"as {CALIBRATION_FILE} in the reader's folder (CITEQA_READER_PATH).",
    )
    p.add_argument(
        "--open", action="append", metavar="FILE[:part]",
        help="a set asked over its whole corpus, one document per paragraph (default: SQuAD dev, "
        "calibrate part)",
    )  # fmt: skip
    p.add_argument(
        "--scoped", action="append", metavar="FILE[:part]",
        help="a set asked about its own article only, one document per article (default: PolicyQA dev, "
        "calibrate part)",
    )  # fmt: skip
    p.add_argument("--limit", type=int, help="questions per set (default: all)")
    p.add_argument("--work-dir", type=Path, help="keep the sets' indexes here and reuse them")
    p.add_argument("--out", type=Path, help=f"where to write (default: <reader>/{CALIBRATION_FILE})")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, help="show progress bars")
    handlers["calibrate"] = cmd_calibrate


def collect(
    spec: str, scoped: bool, settings: Settings, models: Any, work_dir: Path | None, limit: int | None,
    progress: bool,
) -> CalibrationSet:  # fmt: skip
    """Every question of one set through the pipeline: gold answers and scored candidates."""
    from citeqa.eval.commands import pipeline_for
    from citeqa.eval.harness import Evaluator, PipelineBackend

    eval_set = load_dataset(spec, "squad", "article" if scoped else "paragraph").limited(limit)
    index_dir = None
    if work_dir is not None:
        path = Path(spec.rpartition(":")[0] if ":" in Path(spec).name else spec)
        slug = f"{path.parent.name}-{path.name}-{'article' if scoped else 'paragraph'}"
        index_dir = work_dir / "".join(ch if ch.isalnum() else "_" for ch in slug)
    with pipeline_for(eval_set, settings, models, index_dir, progress=progress) as pipeline:
        evaluator = Evaluator(
            eval_set, settings.top_k, pipeline.aggregator, "document" if scoped else "corpus",
            show_progress=progress,
        )  # fmt: skip
        report = evaluator.run(PipelineBackend(pipeline))
    questions = [(r.item.answers, list(r.candidates or [])) for r in report.results if r.error is None]
    return CalibrationSet(f"{eval_set.name} ({'scoped' if scoped else 'open'})", questions)


def fit(sets: Sequence[CalibrationSet], features: Sequence[str] = FEATURES, c: float = 1.0) -> Calibrator:
    """Logistic regression over every candidate of every set; each set carries the same total weight."""
    from sklearn.linear_model import LogisticRegression

    rows: list[list[float]] = []
    labels: list[bool] = []
    weights: list[float] = []
    for calibration_set in sets:
        candidates = [(a, golds) for golds, answers in calibration_set.questions for a in answers]
        for answer, golds in candidates:
            rows.append([answer.features[name] for name in features])
            labels.append(is_right(answer.text, golds))
            weights.append(1.0 / len(candidates))
    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(labels)
    if len(set(labels)) < 2:
        raise ValueError("calibration needs both right and wrong candidates")
    center = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=c, max_iter=5000)
    # Mean weight 1, so that the regularisation means the same whatever the number of candidates.
    model.fit((x - center) / scale, y, sample_weight=np.asarray(weights) * len(weights) / sum(weights))
    return Calibrator(
        features=list(features),
        mean=center.tolist(),
        scale=scale.tolist(),
        coef=model.coef_[0].tolist(),
        intercept=float(model.intercept_[0]),
        threshold=0.5,
    )


def rescored(calibration_set: CalibrationSet, aggregator: AnswerAggregator) -> list[tuple[Any, list[Answer]]]:
    return [(golds, aggregator.score(answers)) for golds, answers in calibration_set.questions]


def decide_with(aggregator: AnswerAggregator) -> Callable[[Sequence[Answer], float], str]:
    from citeqa.eval.harness import replay_decision  # the harness pulls in the pipeline: not for --help

    return functools.partial(replay_decision, aggregator)


def choose_threshold(sets: Sequence[CalibrationSet], calibrator: Calibrator) -> tuple[float, dict[str, Any]]:
    """The threshold with the best all-question F1 averaged over the sets, and each set's metrics."""
    aggregator = AnswerAggregator(AnsweringConfig(), calibrator)
    decide = decide_with(aggregator)
    curves = []
    per_set: dict[str, Any] = {}
    for calibration_set in sets:
        questions = rescored(calibration_set, aggregator)
        sweep = sweep_threshold(questions, decide)
        curves.append([f1 for _, f1, _ in sweep.curve])
        tops = [(answers[0], golds) for golds, answers in questions if answers]
        calibration = reliability([a.score for a, _ in tops], [is_right(a.text, g) for a, g in tops])
        per_set[calibration_set.name] = {
            "questions": len(questions),
            "unanswerable": sum(1 for golds, _ in questions if not golds),
            "ece": calibration.ece,
            "best_threshold": sweep.best_threshold,
            "best_f1": sweep.best_f1,
            "curve": sweep.curve,
        }
    average = np.mean(np.asarray(curves), axis=0)
    best = float(average.max())
    tied = [t for t, f1 in zip(THRESHOLD_GRID, average, strict=True) if f1 >= best - 1e-12]
    threshold = tied[len(tied) // 2]
    at = THRESHOLD_GRID.index(threshold)
    for metrics in per_set.values():
        _, metrics["f1"], metrics["em"] = metrics.pop("curve")[at]
    return threshold, per_set


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from citeqa.eval.commands import Models

    return run_calibrate(args, settings, Models())


def run_calibrate(args: argparse.Namespace, settings: Settings, models: Any) -> int:
    progress = sys.stderr.isatty() if args.progress is None else bool(args.progress)
    if args.limit is not None and args.limit < 1:
        print("citeqa: error: --limit must be at least 1", file=sys.stderr)
        return 2
    specs = [(s, False) for s in args.open or (DEFAULT_OPEN if not args.scoped else [])]
    specs += [(s, True) for s in args.scoped or (DEFAULT_SCOPED if not args.open else [])]
    sets = [
        collect(spec, scoped, settings, models, args.work_dir, args.limit, progress) for spec, scoped in specs
    ]
    calibrator = fit(sets)
    threshold, per_set = choose_threshold(sets, calibrator)
    calibrator.threshold = threshold
    calibrator.meta = {
        "fitted": True,
        "date": datetime.date.today().isoformat(),
        "reader": settings.reader_path.name,
        "right_means": "token F1 >= 0.5 with a gold answer",
        "threshold_chosen_by": "all-question F1 averaged over the sets",
        "sets": per_set,
        "top_k": settings.top_k,
    }
    out = args.out or settings.reader_path / CALIBRATION_FILE
    calibrator.save(out)
    for name, metrics in per_set.items():
        print(
            f"{name}: {metrics['questions']} questions, F1 {100 * metrics['f1']:.1f}% at threshold "
            f"{threshold} (best on this set alone: {metrics['best_threshold']}), ECE {metrics['ece']:.3f}"
        )
    print(
        f"mean F1 {100 * (mean([m['f1'] for m in per_set.values()]) or 0):.1f}%; calibration written to {out}"
    )
    return 0
