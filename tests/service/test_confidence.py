"""The calibrator: stored as JSON with the reader, refused when it does not fit this version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from citeqa.indexing.errors import CiteqaError
from citeqa.service.qa.confidence import (
    CALIBRATION_FILE,
    DEFAULT_FLOOR_FRACTION,
    Calibrator,
    expected_type,
    type_match,
)


def test_round_trip_and_probabilities(tmp_path: Path) -> None:
    calibrator = Calibrator(["margin", "support"], [1.0, 0.5], [2.0, 0.5], [1.5, 0.7], -0.2, 0.4, {"x": 1})
    calibrator.save(tmp_path / CALIBRATION_FILE)
    loaded = Calibrator.for_reader(tmp_path)
    assert loaded.to_json() == calibrator.to_json()
    rows = [{"margin": m, "support": 0.5} for m in (-5.0, 0.0, 5.0)]
    p = loaded.probabilities(rows)
    assert 0 < p[0] < p[1] < p[2] < 1  # monotone in a positive-weight feature


def test_a_reader_without_calibration_uses_its_own_margin(tmp_path: Path) -> None:
    rule = Calibrator.for_reader(tmp_path)
    assert rule.meta == {"fitted": False}
    low, high = rule.probabilities([{"margin": -1.0}, {"margin": 1.0}])
    assert low < rule.threshold < high


@pytest.mark.parametrize(
    "content",
    ['{"features": ["margin"]}', "not json", '{"features": ["telepathy"], "mean": [0], "scale": [1], '
     '"coef": [1], "intercept": 0, "threshold": 0.5}'],
)  # fmt: skip
def test_a_broken_calibration_is_refused_with_its_path(tmp_path: Path, content: str) -> None:
    (tmp_path / CALIBRATION_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(CiteqaError, match="calibration"):
        Calibrator.for_reader(tmp_path)


def test_expected_answer_type() -> None:
    assert expected_type("How many cities were chosen?") == "number"
    assert expected_type("When does the levy start?") == "date"
    assert expected_type("Who pays the fee?") == "name"
    assert expected_type("Do you share my data?") is None
    assert type_match("How much is the fee outside Europe?", "75 euros") == 1.0
    assert type_match("How much is the fee outside Europe?", "the fee") == 0.0
    assert type_match("Do you sell data?", "no") == 0.5


def test_the_floor_is_stored_with_the_calibration_or_half_the_threshold(tmp_path: Path) -> None:
    fitted = Calibrator(["margin"], [0.0], [1.0], [1.0], 0.0, 0.6, floor=0.15)
    fitted.save(tmp_path / CALIBRATION_FILE)
    loaded = Calibrator.for_reader(tmp_path)
    assert loaded.floor == loaded.effective_floor == 0.15
    # A calibration from before floors existed: half its threshold, following a threshold set later.
    raw = {k: v for k, v in fitted.to_json().items() if k != "floor"}
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(raw), encoding="utf-8")
    older = Calibrator.for_reader(tmp_path)
    assert older.floor is None and older.effective_floor == DEFAULT_FLOOR_FRACTION * 0.6 == 0.3
    older.threshold = 0.5
    assert older.effective_floor == 0.25
    # A floor above the threshold would hide confident answers: it stops at the threshold.
    assert Calibrator(["margin"], [0.0], [1.0], [1.0], 0.0, 0.4, floor=0.7).effective_floor == 0.4
    # The margin-only rule of an uncalibrated reader has no "not sure" band.
    rule = Calibrator.margin_only()
    assert rule.effective_floor == rule.threshold


@pytest.mark.parametrize("field", ["threshold", "floor"])
def test_a_floor_or_threshold_outside_0_1_is_refused(tmp_path: Path, field: str) -> None:
    raw = Calibrator(["margin"], [0.0], [1.0], [1.0], 0.0, 0.6, floor=0.2).to_json()
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({**raw, field: 1.5}), encoding="utf-8")
    with pytest.raises(CiteqaError, match="between 0 and 1"):
        Calibrator.for_reader(tmp_path)
