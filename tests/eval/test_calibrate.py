"""`citeqa calibrate` end to end on real models and a tiny SQuAD file, and the fit on known data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from citeqa.eval.calibrate import CalibrationSet, choose_threshold, fit, run_calibrate
from citeqa.eval.cli import build_parser
from citeqa.eval.commands import Models
from citeqa.indexing.embedding import Embedder
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


def test_fit_learns_that_margin_predicts_right_answers() -> None:
    rng = np.random.default_rng(0)
    questions = []
    for i in range(200):
        answerable = i % 2 == 0
        margin = rng.normal(4.0 if answerable else -2.0, 2.0)
        questions.append(((f"gold{i}",) if answerable else (), [_answer(f"gold{i}", margin)]))
    sets = [CalibrationSet("synthetic", questions)]
    calibrator = fit(sets, features=["margin"])
    low, high = calibrator.probabilities([{"margin": -4.0}, {"margin": 6.0}])
    assert low < 0.1 and high > 0.9
    threshold, metrics = choose_threshold(sets, calibrator)
    assert 0.1 < threshold < 0.9  # between the two groups
    assert metrics["synthetic"]["f1"] > 0.8 and metrics["synthetic"]["ece"] < 0.1
    # The chosen threshold is the replayed decision's best: the pipeline's own `decide` reproduces it
    # when it answers nothing below it (the floor at the threshold: no "not sure" band).
    aggregator = AnswerAggregator(
        AnsweringConfig(),
        Calibrator(**{**calibrator.to_json(), "threshold": threshold, "floor": threshold}),
    )
    f1 = np.mean([bool(aggregator.decide(aggregator.score(a))[0]) == bool(g) for g, a in questions])
    assert f1 == pytest.approx(metrics["synthetic"]["f1"])


@pytest.mark.integration
def test_calibrate_command_writes_a_calibration_the_pipeline_uses(
    tmp_path: Path, tiny_squad: Path, embedder: Embedder, reader: Reader, seed_pipeline: QAPipeline
) -> None:
    out = tmp_path / "calibration.json"
    parser, _ = build_parser()
    args = parser.parse_args(
        ["calibrate", "--open", str(tiny_squad), "--scoped", str(tiny_squad), "--out", str(out),
         "--work-dir", str(tmp_path / "work")]
    )  # fmt: skip
    assert run_calibrate(args, Settings(device="cpu"), Models(embedder=embedder, reader=reader)) == 0
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["features"] == list(FEATURES) and 0.0 <= saved["threshold"] <= 1.0
    assert set(saved["meta"]["sets"]) == {"tiny-squad.json (open)", "tiny-squad.json (scoped)"}
    assert saved["meta"]["sets"]["tiny-squad.json (open)"]["questions"] == 3
    # A pipeline whose reader folder holds it scores answers with it.
    calibrator = Calibrator.load(out)
    result = seed_pipeline.ask("Which city was the first Made in China 2025 pilot demonstration city?")
    expected = calibrator.probabilities([result.candidates[0].features])[0]
    assert 0.0 <= expected <= 1.0
    aggregator = AnswerAggregator(AnsweringConfig(), calibrator)
    assert aggregator.score(result.candidates)[0].score == pytest.approx(
        max(calibrator.probabilities([a.features for a in result.candidates])), abs=1e-6
    )
