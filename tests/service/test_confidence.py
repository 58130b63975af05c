"""The calibrator: stored as JSON with the reader, refused when it does not fit this version."""

from __future__ import annotations

from pathlib import Path

import pytest
from citeqa.indexing.errors import CiteqaError
from citeqa.service.qa.confidence import CALIBRATION_FILE, Calibrator, expected_type, type_match


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
