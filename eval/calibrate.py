"""`citeqa calibrate`: fit the answer calibrator of a reader on held-out data and store it with the reader.

Every question of each calibration set goes through the real pipeline once; the answer it would show, the
reader's best distinct span (with the features `service.answering` computes), is labelled right or wrong
against the gold answers. A logistic regression over those features becomes the answer probability: the
probability that the answer shown is right, fitted on exactly the answers shown (fitted on every candidate, it
learnt mostly about runner-up spans, which are nearly always wrong, and under-rated the best one). The sets
are a mixture of kinds of text (SQuAD dev, PolicyQA dev, the project's own policies) and each weighs the
same in total, so that no one corpus decides what a probability means. Two levels are chosen on the same sets:
- `threshold`: the lowest at which the answers given confidently are right `CONFIDENT_PRECISION` of the time;
- `floor`: the level that gives users the most, the highest F1 over all questions with "not sure" answers
  shown (the mean over the sets, each weighing the same). "No answer" is for nothing plausible found: a
  floor set to keep most unanswerable questions of SQuAD v2.0 (written to look answerable) unanswered
  withheld half the right answers on clean documents.
Between them an answer is given as "not sure"; below the floor, none.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from citeqa.eval.datasets import load_dataset, parse_spec
from citeqa.eval.metrics import (
    THRESHOLD_GRID,
    bootstrap_interval,
    f1_score,
    is_right,
    mean,
    reliability,
    risk_coverage,
)
from citeqa.indexing.errors import CiteqaError
from citeqa.indexing.ingest.loaders import LOADER_VERSION
from citeqa.service.qa.answering import AnswerAggregator, AnsweringConfig
from citeqa.service.qa.confidence import CALIBRATION_FILE, Calibrator
from citeqa.service.qa.types import Answer, Citation, TextSpan
from citeqa.service.settings import REPO_ROOT, Settings

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
OWN_SET = Path(__file__).resolve().parent / "data" / "policies" / "questions.jsonl"
# Held-out parts only: the reader was trained on SQuAD train and the PolicyQA "train" part; the project's own
# policies are split by document into "fit" (here) and "test" (scored, never fitted on).
DEFAULT_OPEN = [f"{SHARED_DATA / 'squad' / 'dev.json.gz'}:calibrate"] + (
    [f"{OWN_SET}:fit"] if OWN_SET.is_file() else []
)
DEFAULT_SCOPED = [f"{SHARED_DATA / 'policyqa' / 'dev.json.gz'}:calibrate"]
CONFIDENT_PRECISION = 0.9  # a confident answer is right at least this often on the mixture

# The features a calibration is fitted on: what the evidence says about this answer (the reader's margins
# against the no-answer score, agreement across passages, the question's words around the answer, the
# kind of value asked for), not how hard the corpus is. Left out: raw retrieval scores, whose scale
# differs per corpus (BM25 grows with the length of the documents), the passage rank, and the null_score and
# span_score on their own, which move with the genre while their difference, the margin, stays.
# `best_margin`, `margin_gap` and `candidate_rank` say nothing of the best span itself (it has the best
# margin, a gap and a rank of 0), so they are left out too.
EVIDENCE_FEATURES: tuple[str, ...] = (
    "margin",
    "span_prob",
    "text_prob",
    "null_prob",
    "support",
    "answer_chars",
    "question_in_passages",
    "question_missing",
    "question_in_sentence",
    "question_in_clause",
    "cut_list",
    "sentence_words",
    "answer_share",
    "answer_in_question",
    "type_match",
)
# Stored candidates are in the pipeline's order, the reader's best first (since the calibration is fitted on
# that one): a cache of another order or feature set misses.
CANDIDATES_VERSION = 2


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
        help="fit the answer probability, threshold and floor of the reader on held-out data",
        description="Run held-out sets through the pipeline, fit the calibrator on their mixture (each set "
        f"weighs the same) and store it as {CALIBRATION_FILE} in the reader's folder (CITEQA_READER_PATH).",
    )
    p.add_argument(
        "--open", action="append", metavar="FILE[:part]",
        help="a set asked over its whole corpus: SQuAD format (one document per paragraph), or JSON lines "
        "with its documents in docs/ beside it (default: SQuAD dev calibrate part, and the project's own "
        "policies, fit part)",
    )  # fmt: skip
    p.add_argument(
        "--scoped", action="append", metavar="FILE[:part]",
        help="a set asked about its own article only, one document per article (default: PolicyQA dev, "
        "calibrate part)",
    )  # fmt: skip
    p.add_argument(
        "--adapt", metavar="FILE[:part]",
        help="instead: adapt the reader's calibration to your corpus with your own questions and answers "
        "(JSON lines, asked over the documents in docs/ beside it, else over the index of CITEQA_DATA_DIR); "
        f"written to <data dir>/{CALIBRATION_FILE}, which the service for that data directory then uses",
    )  # fmt: skip
    p.add_argument("--limit", type=int, help="questions per set (default: all)")
    p.add_argument("--work-dir", type=Path, help="keep the sets' indexes here and reuse them")
    p.add_argument(
        "--cache-dir", type=Path,
        help="keep every set's scored candidates here and reuse them: a refit does not run the reader again",
    )  # fmt: skip
    p.add_argument(
        "--out", type=Path,
        help=f"where to write (default: <reader>/{CALIBRATION_FILE}; --adapt: <data dir>/{CALIBRATION_FILE})",
    )  # fmt: skip
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, help="show progress bars")
    handlers["calibrate"] = cmd_calibrate


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)


def cache_path(cache_dir: Path, spec: str, scoped: bool, settings: Settings, limit: int | None) -> Path:
    """One file per set, reader (its weights' hash), loaders, retrieval, reading and runtime settings and
    question limit: a change to any of them (a loader that reads a document's text differently, another
    fusion constant, torch instead of OpenVINO, whose bf16 logits differ a little) misses the cache."""
    from citeqa.indexing.embedding import cpu_has_fast_bf16

    weights = settings.reader_path / "model.safetensors"
    reader = hashlib.sha256(weights.read_bytes()).hexdigest()[:12] if weights.is_file() else "none"
    path, part = parse_spec(spec)
    # The CPU's bf16 units last: what `auto` runtimes and dtypes resolve by.
    key = json.dumps(
        [str(path.resolve()), part, scoped, reader, LOADER_VERSION, CANDIDATES_VERSION, settings.top_k,
         settings.chunk_tokens, settings.chunk_overlap_tokens, settings.reader_max_length,
         settings.reader_stride, settings.reader_pad_to_multiple_of, settings.max_answer_tokens, limit,
         str(settings.embedder_path),
         settings.candidates_k, settings.rrf_k, settings.device, settings.model_dtype,
         settings.reader_runtime, settings.embedder_runtime, cpu_has_fast_bf16()]
    )  # fmt: skip
    return cache_dir / f"{_slug(Path(spec).name)}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def save_set(path: Path, calibration_set: CalibrationSet) -> None:
    """What a refit needs of each candidate: its text, margin and features (not its citation)."""
    payload = {
        "name": calibration_set.name,
        "questions": [
            {"answers": list(golds),
             "candidates": [{"text": a.text, "reader_margin": a.reader_margin, "features": a.features}
                            for a in answers]}
            for golds, answers in calibration_set.questions
        ],
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload), encoding="utf-8")
    tmp.replace(path)


_NO_SPAN = TextSpan("", 0, 0)


def load_set(path: Path) -> CalibrationSet:
    raw = json.loads(path.read_text(encoding="utf-8"))
    questions = []
    for question in raw["questions"]:
        answers = [
            Answer(text=c["text"], score=0.0, reader_margin=float(c["reader_margin"]),
                   citation=Citation("", "", None, 0, 0, None, _NO_SPAN, "", _NO_SPAN, _NO_SPAN),
                   features={k: float(v) for k, v in c["features"].items()})
            for c in question["candidates"]
        ]  # fmt: skip
        questions.append((tuple(question["answers"]), answers))
    return CalibrationSet(str(raw["name"]), questions)


def collect(
    spec: str, scoped: bool, settings: Settings, models: Any, work_dir: Path | None, limit: int | None,
    progress: bool, cache_dir: Path | None = None,
) -> CalibrationSet:  # fmt: skip
    """Every question of one set through the pipeline: gold answers and scored candidates."""
    from citeqa.eval.commands import pipeline_for
    from citeqa.eval.harness import Evaluator, PipelineBackend

    cached = cache_path(cache_dir, spec, scoped, settings, limit) if cache_dir is not None else None
    if cached is not None and cached.is_file():
        print(f"{spec}: candidates from {cached}", file=sys.stderr)
        return load_set(cached)
    eval_set = load_dataset(spec, None, "article" if scoped else "paragraph").limited(limit)
    index_dir = None
    if work_dir is not None:
        path = Path(spec.rpartition(":")[0] if ":" in Path(spec).name else spec)
        index_dir = work_dir / _slug(f"{path.parent.name}-{path.name}-{'article' if scoped else 'paragraph'}")
    with pipeline_for(eval_set, settings, models, index_dir, progress=progress) as pipeline:
        evaluator = Evaluator(
            eval_set, settings.top_k, pipeline.aggregator, "document" if scoped else "corpus",
            show_progress=progress,
        )  # fmt: skip
        report = evaluator.run(PipelineBackend(pipeline))
    questions = [(r.item.answers, list(r.candidates or [])) for r in report.results if r.error is None]
    collected = CalibrationSet(f"{eval_set.name} ({'scoped' if scoped else 'open'})", questions)
    if cached is not None:
        save_set(cached, collected)
    return collected


def fit(
    sets: Sequence[CalibrationSet], features: Sequence[str] = EVIDENCE_FEATURES, c: float = 1.0
) -> Calibrator:
    """Logistic regression over the answer each question would show (its first candidate).

    Each set carries the same total weight, and within a set each question."""
    from sklearn.linear_model import LogisticRegression

    rows: list[list[float]] = []
    labels: list[bool] = []
    weights: list[float] = []
    for calibration_set in sets:
        asked = [(golds, answers) for golds, answers in calibration_set.questions if answers]
        for golds, answers in asked:
            rows.append([answers[0].features[name] for name in features])
            labels.append(is_right(answers[0].text, golds))
            weights.append(1.0 / len(asked))
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


@dataclass(frozen=True)
class Top:
    """A question's most probable answer ("" when the reader proposed none) and its gold answers."""

    golds: tuple[str, ...]
    text: str
    probability: float

    # Computed once: choosing the levels scores every question at each of 101 levels.
    @functools.cached_property
    def right(self) -> bool:
        return is_right(self.text, self.golds)

    @functools.cached_property
    def f1_given(self) -> float:
        return f1_score(self.text, self.golds)

    @functools.cached_property
    def f1_withheld(self) -> float:
        return f1_score("", self.golds)


def top_answers(calibration_set: CalibrationSet, calibrator: Calibrator) -> list[Top]:
    """What the pipeline would show for each question: `AnswerAggregator.score`'s best, replayed."""
    aggregator = AnswerAggregator(AnsweringConfig(), calibrator)
    tops = []
    for golds, answers in calibration_set.questions:
        scored = aggregator.score(answers)
        best = scored[0] if scored else None
        tops.append(Top(tuple(golds), best.text if best else "", best.score if best else 0.0))
    return tops


def shown_f1s(tops: Sequence[Top], floor: float) -> list[float]:
    """Each question's F1 when answers from `floor` up are shown and the rest withheld."""
    return [t.f1_given if t.text and t.probability >= floor else t.f1_withheld for t in tops]


def outcome_metrics(tops: Sequence[Top], threshold: float, floor: float) -> dict[str, Any]:
    """One set at a threshold and floor: the three outcomes, what they are worth, and the calibration."""
    given = [t for t in tops if t.text]
    confident = [t for t in given if t.probability >= threshold]
    shown = [t for t in given if t.probability >= floor]  # confident or "not sure"
    answerable = [t for t in tops if t.golds]
    unanswerable = [t for t in tops if not t.golds]

    def f1_at(cut: float, questions: Sequence[Top]) -> float | None:
        return mean(shown_f1s(questions, cut))

    calibration = reliability([t.probability for t in given], [t.right for t in given])
    return {
        "questions": len(tops),
        "unanswerable": len(unanswerable),
        "confident": len(confident),
        "not_sure": len(shown) - len(confident),
        "no_answer": len(tops) - len(shown),
        "confident_right": mean([float(t.right) for t in confident]),
        "answerable_shown_right": mean([float(t.right and t.probability >= floor) for t in answerable]),
        "f1": f1_at(floor, tops),  # what a user sees: confident and "not sure" answers both given
        "has_ans_f1": f1_at(floor, answerable),
        "no_ans_accuracy": mean([float(not t.text or t.probability < floor) for t in unanswerable]),
        "f1_confident_only": f1_at(threshold, tops),
        "f1_never_abstaining": f1_at(0.0, tops),
        "ece": calibration.ece,
        "risk_coverage": risk_coverage([t.probability for t in given], [t.right for t in given]),
    }


def choose_levels(tops_per_set: Sequence[Sequence[Top]]) -> tuple[float, float]:
    """The threshold and floor (see the module's docstring), each set weighing the same."""
    threshold = 1.0
    for t in THRESHOLD_GRID:
        right = answered = 0.0
        for tops in tops_per_set:
            confident = [top for top in tops if top.text and top.probability >= t]
            right += sum(top.right for top in confident) / len(tops)
            answered += len(confident) / len(tops)
        if answered > 0 and right / answered >= CONFIDENT_PRECISION:
            threshold = t
            break
    floor, best = threshold, -1.0
    for f in THRESHOLD_GRID:
        if f > threshold:
            break
        shown_f1 = float(np.mean([outcome_metrics(tops, threshold, f)["f1"] for tops in tops_per_set]))
        if shown_f1 > best + 1e-9:  # ties keep the lower floor: fewer right answers withheld
            floor, best = f, shown_f1
    return threshold, floor


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from citeqa.eval.commands import Models

    return run_calibrate(args, settings, Models())


def run_calibrate(args: argparse.Namespace, settings: Settings, models: Any) -> int:
    progress = sys.stderr.isatty() if args.progress is None else bool(args.progress)
    if args.limit is not None and args.limit < 1:
        print("citeqa: error: --limit must be at least 1", file=sys.stderr)
        return 2
    if getattr(args, "adapt", None):
        if args.open or args.scoped:
            print(
                "citeqa: error: --adapt takes your own question set alone (no --open or --scoped)",
                file=sys.stderr,
            )
            return 2
        return run_adapt(args, settings, models, progress)
    specs = [(s, False) for s in args.open or (DEFAULT_OPEN if not args.scoped else [])]
    specs += [(s, True) for s in args.scoped or (DEFAULT_SCOPED if not args.open else [])]
    sets = [
        collect(spec, scoped, settings, models, args.work_dir, args.limit, progress, args.cache_dir)
        for spec, scoped in specs
    ]
    calibrator = fit(sets)
    tops = [top_answers(s, calibrator) for s in sets]
    threshold, floor = choose_levels(tops)
    calibrator.threshold = threshold
    calibrator.floor = floor
    per_set = {}
    for calibration_set, set_tops in zip(sets, tops, strict=True):
        metrics = outcome_metrics(set_tops, threshold, floor)
        metrics["f1_interval"] = bootstrap_interval(shown_f1s(set_tops, floor))
        per_set[calibration_set.name] = metrics
    calibrator.meta = {
        "fitted": True,
        "date": datetime.date.today().isoformat(),
        "reader": settings.reader_path.name,
        "right_means": "token F1 >= 0.5 with a gold answer",
        "fitted_on": "each question's answer shown: the reader's best distinct span",
        "weights": "each set the same in total, each question the same within its set",
        "threshold_chosen_by": f"confident answers right >= {CONFIDENT_PRECISION:.0%} on the mixture",
        "floor_chosen_by": "the highest F1 over all questions, not-sure answers shown (set mean)",
        "limit": args.limit,
        "sets": per_set,
        "top_k": settings.top_k,
    }
    out = args.out or settings.reader_path / CALIBRATION_FILE
    calibrator.save(out)
    for name, m in per_set.items():
        print(
            f"{name}: {m['questions']} questions: {m['confident']} confident ({_pct(m['confident_right'])} "
            f"right), {m['not_sure']} not sure, {m['no_answer']} no answer; F1 {_pct(m['f1'])}"
            f"{_interval(m['f1_interval'])}, answerable "
            f"F1 {_pct(m['has_ans_f1'])}, unanswerable accuracy {_pct(m['no_ans_accuracy'])}, ECE "
            f"{m['ece']:.3f}"
        )
    print(f"threshold {threshold}, floor {floor}; calibration written to {out}")
    return 0


# Below WARN the levels move a lot from one sample to another (docs/quality.md); below MIN they are noise:
# three questions set threshold and floor to 0.27, making nearly every answer confident.
MIN_ADAPT_QUESTIONS = 30
WARN_ADAPT_QUESTIONS = 50


def adapt(base: Calibrator, own: CalibrationSet) -> Calibrator:
    """`base` adapted to one corpus: its log-odds rescaled (`Calibrator.rescaled`) by a logistic regression
    on the corpus's own questions, then the threshold and floor chosen on them by the rule of the module."""
    from sklearn.linear_model import LogisticRegression

    z, right = [], []
    for top in top_answers(own, base):
        if top.text:
            p = min(max(top.probability, 1e-6), 1 - 1e-6)
            z.append(math.log(p / (1 - p)))
            right.append(top.right)
    if len(set(right)) < 2:
        raise CiteqaError(
            f"{own.name}: adapting needs questions answered both right and wrong; add questions"
        )
    model = LogisticRegression().fit(np.asarray(z)[:, None], np.asarray(right))
    scale, shift = float(model.coef_[0][0]), float(model.intercept_[0])
    adapted = base.rescaled(scale, shift)
    adapted.threshold, adapted.floor = choose_levels([top_answers(own, adapted)])
    adapted.meta = {
        "fitted": True,
        "adapted_from": base.fingerprint(),
        "adapted_on": own.name,
        "questions": len(own.questions),
        "logit_scale": round(scale, 4),
        "logit_shift": round(shift, 4),
        "date": datetime.date.today().isoformat(),
        "reader": base.meta.get("reader"),
        "threshold_chosen_by": f"confident answers right >= {CONFIDENT_PRECISION:.0%} on these questions",
        "floor_chosen_by": "the highest F1 over these questions, not-sure answers shown",
    }
    return adapted


def run_adapt(args: argparse.Namespace, settings: Settings, models: Any, progress: bool) -> int:
    base = Calibrator.for_reader(settings.reader_path)
    if not base.meta.get("fitted", True):
        raise CiteqaError(f"{settings.reader_path.name} has no calibration to adapt (run citeqa calibrate)")
    own = collect(args.adapt, False, settings, models, args.work_dir, args.limit, progress, args.cache_dir)
    if len(own.questions) < MIN_ADAPT_QUESTIONS:
        raise CiteqaError(
            f"{own.name}: {len(own.questions)} questions; adapting needs at least {MIN_ADAPT_QUESTIONS} "
            f"(100 or more for levels that hold on other questions)"
        )
    if len(own.questions) < WARN_ADAPT_QUESTIONS:
        print(f"warning: {len(own.questions)} questions; below {WARN_ADAPT_QUESTIONS} the levels move a lot "
              "from one sample of questions to another", file=sys.stderr)  # fmt: skip
    adapted = adapt(base, own)
    out = args.out or settings.data_dir / CALIBRATION_FILE
    adapted.save(out)
    for name, calibrator in (("the reader's calibration", base), ("adapted", adapted)):
        m = outcome_metrics(top_answers(own, calibrator), calibrator.threshold, calibrator.effective_floor)
        print(
            f"{name} on these questions: threshold {calibrator.threshold}, "
            f"floor {calibrator.effective_floor}: "
            f"{m['confident']} confident ({_pct(m['confident_right'])} right), {m['not_sure']} not sure, "
            f"{m['no_answer']} no answer; F1 {_pct(m['f1'])}, ECE {m['ece']:.3f}"
        )
    print(
        f"adapted calibration written to {out} (scored on the questions it was fitted on: check it on others)"
    )
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _interval(bounds: tuple[float, float] | None) -> str:
    return "" if bounds is None else f" ({100 * bounds[0]:.1f}-{100 * bounds[1]:.1f})"
