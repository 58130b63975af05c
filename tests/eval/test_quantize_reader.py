"""`citeqa quantize-reader`: the reader's int8 model for OpenVINO, made from sample questions over their own
documents, kept beside the weights, and reading the spans the full-precision reader reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from citeqa.eval.cli import main
from citeqa.eval.training.quantize import sample_inputs
from citeqa.indexing.errors import CiteqaError
from citeqa.service.qa.openvino_reader import OpenVinoReader, current_int8_model
from citeqa.service.settings import Settings

from tests.conftest import linked_reader_copy

QUESTION = "Which city became the first pilot demonstration city?"
PASSAGES = [
    "The committee meets every spring in Lisbon.",
    "After Ningbo became the first pilot demonstration city in August 2016, Wuhan followed.",
]


def test_samples_are_each_question_with_passages_of_its_own_document() -> None:
    batches = sample_inputs("default", Settings(), limit=5)
    assert len(batches) == 5
    for inputs in batches:
        rows = len(inputs["input_ids"])
        assert 1 <= rows <= Settings().top_k  # 4 passages, a window each (chunks fit one window)
        assert inputs["input_ids"].shape == inputs["attention_mask"].shape
    with pytest.raises(CiteqaError, match="with its documents"):
        sample_inputs(str(Path(__file__).parents[2] / "eval" / "data" / "seed_qa.jsonl"), Settings())


def test_a_folder_it_cannot_write_is_one_line_before_quantizing(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = linked_reader_copy(tmp_path_factory)
    (folder / "openvino-int8").write_text("in the way")
    assert main(["quantize-reader", "--reader", str(folder)]) != 0
    err = capsys.readouterr().err
    assert "is not a writable folder" in err and "Traceback" not in err and "quantizing" not in err


@pytest.mark.integration
def test_the_int8_reader_reads_the_spans_fp32_reads(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = linked_reader_copy(tmp_path_factory)
    assert current_int8_model(folder) is None
    argv = ["quantize-reader", "--reader", str(folder), "--limit", "6"]
    assert main(argv) == 0
    kept = current_int8_model(folder)
    assert kept is not None
    manifest = json.loads((kept.parent / "quantization.json").read_text())
    assert manifest["questions"] == 6 and manifest["samples"] == "default"
    assert len(manifest["full_precision"]) == 3  # the first three layers' feed-forward outputs
    assert main(argv) == 0  # made from the same weights: kept
    assert "already quantized" in capsys.readouterr().err
    int8 = OpenVinoReader(folder, int8="on")
    fp32 = OpenVinoReader(folder, dtype="float32", int8="on")  # fp32 asked for: the int8 model is not read
    answers = {}
    for name, model in (("int8", int8), ("fp32", fp32)):
        best = model.read(QUESTION, PASSAGES)[0]
        answers[name] = (PASSAGES[best.passage_index][best.start : best.end], best.margin)
        assert model.describe()["dtype"] == ("int8" if name == "int8" else "float32")
    assert answers["int8"][0] == answers["fp32"][0] == "Ningbo"
    assert answers["int8"][1] == pytest.approx(answers["fp32"][1], abs=1.5)
