"""`citeqa calibrate` end to end on real models and a tiny SQuAD file, and the fit on known data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from citeqa.eval.calibrate import (
    EVIDENCE_FEATURES,
    CalibrationSet,
    adapt,
    choose_levels,
    fit,
    outcome_metrics,
    run_calibrate,
    top_answers,
)
from citeqa.eval.cli import build_parser
from citeqa.eval.commands import Models
from citeqa.eval.metrics import THRESHOLD_GRID
from citeqa.indexing.embedding import Embedder
from citeqa.indexing.errors import CiteqaError
from citeqa.service.qa.answering import AnswerAggregator, AnsweringConfig
from citeqa.service.qa.confidence import FEATURES, Calibrator
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.reader import Reader
from citeqa.service.qa.types import Answer, Citation, TextSpan
from citeqa.service.settings import Settings


def _answer(text: str, margin: float) -> Answer:
    span = TextSpan(text, 0, len(text))
    citation = Citation("d", "d", None, 0, len(text), None, span, "d#0", span, span)
    features = dict.fromkeys(FEATURES, 0.0) | {"margin": margin}
    return Answer(text=text, score=0.0, reader_margin=margin, citation=citation, features=features)


def _synthetic(n: int, seed: int, answerable_margin: float) -> CalibrationSet:
    rng = np.random.default_rng(seed)
    questions = []
    for i in range(n):
        answerable = i % 2 == 0
        margin = rng.normal(answerable_margin if answerable else -2.0, 2.0)
        questions.append(((f"gold{i}",) if answerable else (), [_answer(f"gold{i}", margin)]))
    return CalibrationSet(f"synthetic-{seed}", questions)


def test_fit_learns_that_margin_predicts_right_answers_and_chooses_threshold_and_floor() -> None:
    sets = [_synthetic(200, 0, 4.0)]
    calibrator = fit(sets, features=["margin"])
    low, high = calibrator.probabilities([{"margin": -4.0}, {"margin": 6.0}])
    assert low < 0.1 and high > 0.9
    tops = [top_answers(s, calibrator) for s in sets]
    threshold, floor = choose_levels(tops)
    assert 0.0 < floor <= threshold < 1.0
    metrics = outcome_metrics(tops[0], threshold, floor)
    # The rules the levels were chosen by hold on the data they were chosen on.
    assert metrics["confident_right"] >= 0.9
    below = [f for f in THRESHOLD_GRID if f <= threshold]
    assert metrics["f1"] == max(outcome_metrics(tops[0], threshold, f)["f1"] for f in below)
    assert metrics["no_ans_accuracy"] >= 0.8  # on this data, what gives users the most also abstains well
    assert metrics["confident"] + metrics["not_sure"] + metrics["no_answer"] == 200
    assert metrics["ece"] < 0.1
    # The pipeline's own `decide`, answering nothing below the floor, shows the confident and "not sure" ones.
    aggregator = AnswerAggregator(
        AnsweringConfig(),
        Calibrator(**{**calibrator.to_json(), "threshold": floor, "floor": floor}),
    )
    shown = sum(bool(aggregator.decide(aggregator.score(a))[0]) for _, a in sets[0].questions)
    assert shown == metrics["confident"] + metrics["not_sure"]


def test_the_fit_is_on_the_answer_shown_not_the_runners_up() -> None:
    # Runner-up spans, here wrong ones with high margins, are never shown first: they do not move the fit.
    shown = _synthetic(200, 0, 4.0)
    with_runners_up = CalibrationSet(
        "runners-up", [(g, [*a, _answer("wrong", 8.0)]) for g, a in shown.questions]
    )
    assert (
        fit([shown], features=["margin"]).to_json() == fit([with_runners_up], features=["margin"]).to_json()
    )


def test_each_set_weighs_the_same_whatever_its_size() -> None:
    # A big set where margins mean little and a small one where they mean much: with equal weight per set
    # the small one still moves the fit, as it would not if every candidate weighed the same.
    big = CalibrationSet("big", _synthetic(2000, 1, -1.5).questions)
    small = _synthetic(100, 2, 6.0)
    both = fit([big, small], features=["margin"]).probabilities([{"margin": 6.0}])[0]
    pooled = fit([CalibrationSet("pooled", big.questions + small.questions)], features=["margin"])
    assert both > pooled.probabilities([{"margin": 6.0}])[0] + 0.05


def test_adapting_rescales_an_under_confident_calibration_to_the_corpus(tmp_path: Path) -> None:
    """Fitted where margins mean little, the calibration is too cautious on a corpus where they mean much:
    rescaling its log-odds on that corpus's questions makes its probabilities match there."""
    base = fit([_synthetic(2000, 1, -1.5)], features=["margin"])
    base.threshold, base.floor = 0.9, 0.4
    own = _synthetic(120, 3, 5.0)
    adapted = adapt(base, own)
    assert adapted.meta["adapted_from"] == base.fingerprint() and adapted.meta["logit_scale"] > 0
    for calibrator in (base, adapted):  # the weights of the evidence are kept: only the log-odds move
        assert calibrator.features == ["margin"]
    before = outcome_metrics(top_answers(own, base), base.threshold, base.floor)
    after = outcome_metrics(top_answers(own, adapted), adapted.threshold, adapted.floor)
    assert after["ece"] < before["ece"] - 0.05 and after["confident"] > before["confident"]
    assert after["confident_right"] >= 0.9
    # Kept in a data directory, the adaptation is what a pipeline of that directory uses, while the
    # reader's calibration is the one it was made from.
    reader_dir, data_dir = tmp_path / "reader", tmp_path / "data"
    reader_dir.mkdir(), data_dir.mkdir()
    base.save(reader_dir / "calibration.json")
    adapted.save(data_dir / "calibration.json")
    assert Calibrator.for_corpus(reader_dir, data_dir).meta["adapted_on"] == own.name
    base.rescaled(2.0, 0.0).save(reader_dir / "calibration.json")  # a new reader calibration
    assert (
        Calibrator.for_corpus(reader_dir, data_dir).to_json()
        == Calibrator.load(reader_dir / "calibration.json").to_json()
    )


@pytest.mark.integration
def test_adapt_command_writes_the_data_directory_calibration_the_pipeline_uses(
    tmp_path: Path, embedder: Embedder, reader: Reader
) -> None:
    own = Path(__file__).parents[2] / "eval" / "data" / "policies" / "questions.jsonl"
    settings = Settings(device="cpu", data_dir=tmp_path / "data")
    parser, _ = build_parser()
    args = parser.parse_args(["calibrate", "--adapt", f"{own}:fit", "--limit", "40"])
    assert run_calibrate(args, settings, Models(embedder=embedder, reader=reader)) == 0
    saved = Calibrator.load(tmp_path / "data" / "calibration.json")
    assert saved.meta["questions"] == 40 and saved.meta["adapted_on"].startswith("questions.jsonl:fit")
    assert 0.0 <= saved.effective_floor <= saved.threshold <= 1.0
    pipeline = QAPipeline(settings, embedder=embedder, reader=reader)
    assert pipeline.aggregator.calibrator.to_json() == saved.to_json()
    with pytest.raises(SystemExit):  # one set, alone
        parser.parse_args(["calibrate", "--adapt", str(own), "--open", str(own), "--bogus"])
    both = parser.parse_args(["calibrate", "--adapt", str(own), "--open", str(own)])
    assert run_calibrate(both, settings, Models(embedder=embedder, reader=reader)) == 2
    few = parser.parse_args(
        ["calibrate", "--adapt", f"{own}:fit", "--limit", "5", "--out", str(tmp_path / "x")]
    )
    with pytest.raises(CiteqaError, match="5 questions; adapting needs at least 30"):
        run_calibrate(few, settings, Models(embedder=embedder, reader=reader))
    assert not (tmp_path / "x").exists()


@pytest.mark.integration
def test_calibrate_command_writes_a_calibration_the_pipeline_uses(
    tmp_path: Path, tiny_squad: Path, embedder: Embedder, reader: Reader, seed_pipeline: QAPipeline
) -> None:
    out = tmp_path / "calibration.json"
    parser, _ = build_parser()
    args = parser.parse_args(
        ["calibrate", "--open", str(tiny_squad), "--scoped", str(tiny_squad), "--out", str(out),
         "--work-dir", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache")]
    )  # fmt: skip
    assert run_calibrate(args, Settings(device="cpu"), Models(embedder=embedder, reader=reader)) == 0
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["features"] == list(EVIDENCE_FEATURES)
    assert 0.0 <= saved["floor"] <= saved["threshold"] <= 1.0
    assert set(saved["meta"]["sets"]) == {"tiny-squad.json (open)", "tiny-squad.json (scoped)"}
    opened = saved["meta"]["sets"]["tiny-squad.json (open)"]
    assert opened["questions"] == 3
    assert opened["confident"] + opened["not_sure"] + opened["no_answer"] == 3
    low, high = opened["f1_interval"]  # how far the set's F1 could move on other questions like these
    assert 0.0 <= low <= opened["f1"] <= high <= 1.0
    # A pipeline whose reader folder holds it scores answers with it.
    calibrator = Calibrator.load(out)
    # Not one of the e2e KNOWN questions: the session-wide pipeline would answer those from its cache next.
    result = seed_pipeline.ask("Which was the first Made in China 2025 pilot demonstration city?")
    expected = calibrator.probabilities([result.candidates[0].features])[0]
    assert 0.0 <= expected <= 1.0
    aggregator = AnswerAggregator(AnsweringConfig(), calibrator)
    scored = aggregator.score(result.candidates)
    assert scored[0].score == pytest.approx(expected, abs=1e-6)
    assert [a.text for a in scored] == [a.text for a in result.candidates]  # the reader's order kept
    # A refit reads the candidates back from the cache: no model is needed, and the fit is the same.
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2
    again = tmp_path / "again.json"
    args.out = again
    assert run_calibrate(args, Settings(device="cpu"), Models(embedder=None, reader=_NoReader())) == 0  # type: ignore[arg-type]
    refit = json.loads(again.read_text(encoding="utf-8"))
    assert refit["coef"] == pytest.approx(saved["coef"]) and refit["threshold"] == saved["threshold"]


class _NoReader:
    def __getattr__(self, name: str) -> None:
        raise AssertionError(f"the reader was used ({name}) although the candidates were cached")


def test_cached_candidates_are_missed_when_the_loaders_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Candidates of a set with its own documents depend on the text the loaders make of them."""
    from citeqa.eval import calibrate

    settings = Settings(reader_path=tmp_path / "no-reader")
    before = calibrate.cache_path(tmp_path, "questions.jsonl:fit", False, settings, None)
    assert before == calibrate.cache_path(tmp_path, "questions.jsonl:fit", False, settings, None)
    monkeypatch.setattr(calibrate, "LOADER_VERSION", calibrate.LOADER_VERSION + 1)
    assert calibrate.cache_path(tmp_path, "questions.jsonl:fit", False, settings, None) != before


@pytest.mark.parametrize(
    "change",
    [{"rrf_k": 10}, {"candidates_k": 50}, {"reader_runtime": "torch"}, {"model_dtype": "float32"},
     {"embedder_path": Path("another-embedder")}, {"top_k": 6}, {"reader_pad_to_multiple_of": 1}],
)  # fmt: skip
def test_cached_candidates_are_missed_when_retrieval_or_runtime_settings_change(
    tmp_path: Path, change: dict[str, object]
) -> None:
    """Another fusion constant or runtime gives other candidates: a cache made under the old one is stale."""
    from citeqa.eval import calibrate

    settings = Settings(reader_path=tmp_path / "no-reader")
    changed = settings.model_copy(update=change)
    spec = "questions.jsonl:fit"
    assert calibrate.cache_path(tmp_path, spec, False, changed, None) != calibrate.cache_path(
        tmp_path, spec, False, settings, None
    )
