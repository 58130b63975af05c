"""The reader's runtimes: which one `auto` loads, the ONNX export and the OpenVINO conversion, equal spans,
threads kept from FAISS, and batching across concurrent questions with the real models."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import pytest
import torch
from citeqa.indexing import embedding
from citeqa.indexing.errors import CiteqaError
from citeqa.indexing.openvino_runtime import derived_folder
from citeqa.indexing.store.faiss_index import faiss_thread_scope, set_faiss_threads
from citeqa.service.qa import onnx_reader, openvino_reader
from citeqa.service.qa.onnx_reader import OnnxReader, export_reader, weights_sha256
from citeqa.service.qa.openvino_reader import INT8_DIR, OpenVinoReader, current_int8_model, int8_model_file
from citeqa.service.qa.reader import Reader, SpanCandidate, TransformersReader, make_reader
from citeqa.service.settings import Settings

from tests.conftest import PipelineFactory

READER = Settings().reader_path
QUESTION = "Which city became the first pilot demonstration city?"
PASSAGES = [
    "The committee meets every spring in Lisbon.",
    "After Ningbo became the first pilot demonstration city in August 2016, Wuhan followed.",
]


def fake_reader_folder(root: Path, exported: bool, weights: bytes = b"weights") -> Path:
    folder = root / "reader"
    (folder / "onnx").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(weights)
    if exported:
        for name in onnx_reader.VARIANTS.values():
            (folder / "onnx" / name).write_bytes(b"onnx")
        manifest = {"weights_sha256": weights_sha256(folder)}
        (folder / "onnx" / "export.json").write_text(json.dumps(manifest))
    return folder


def test_runtime_setting_picks_the_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exported = fake_reader_folder(tmp_path, exported=True)
    assert isinstance(make_reader(Settings(reader_path=exported, reader_runtime="onnx")), OnnxReader)
    assert isinstance(make_reader(Settings(reader_path=exported, reader_runtime="torch")), TransformersReader)
    assert isinstance(make_reader(Settings(reader_path=exported, reader_runtime="openvino")), OpenVinoReader)
    # auto: OpenVINO where the CPU has bf16 units, torch elsewhere and whenever fp32 is asked for.
    for fast_bf16, dtype, expected in [
        (True, "auto", OpenVinoReader),
        (False, "auto", TransformersReader),
        (True, "float32", TransformersReader),
    ]:
        monkeypatch.setattr(embedding, "cpu_has_fast_bf16", lambda fast=fast_bf16: fast)
        settings = Settings(reader_path=exported, device="cpu", model_dtype=dtype)  # type: ignore[arg-type]
        assert type(make_reader(settings)) is expected


def test_auto_reads_the_int8_model_where_the_cpu_prefers_int8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = fake_reader_folder(tmp_path, exported=False)
    monkeypatch.setattr(embedding, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(openvino_reader, "cpu_prefers_int8", lambda: True)
    settings = Settings(reader_path=folder, device="cpu")
    assert type(make_reader(settings)) is TransformersReader  # no int8 model yet: fp32 on torch
    kept = derived_folder(folder, INT8_DIR)
    kept.mkdir(parents=True)
    (kept / "model.xml").write_text("<net/>")
    assert type(make_reader(settings)) is OpenVinoReader
    assert int8_model_file(folder, "auto") == kept / "model.xml"
    assert int8_model_file(folder, "auto", dtype="float32") is None  # fp32 asked for
    assert type(make_reader(settings.model_copy(update={"reader_int8": "off"}))) is TransformersReader
    monkeypatch.setattr(openvino_reader, "cpu_prefers_int8", lambda: False)  # an AMX Xeon: bf16 wins
    assert int8_model_file(folder, "auto") is None
    assert int8_model_file(folder, "on") == kept / "model.xml"
    (folder / "model.safetensors").write_bytes(b"retrained weights")  # quantized from other weights
    assert current_int8_model(folder) is None
    with pytest.raises(CiteqaError, match="citeqa quantize-reader"):
        int8_model_file(folder, "on")
    with pytest.raises(CiteqaError, match="citeqa quantize-reader"):
        OpenVinoReader(folder, int8="on").warm_up()


def test_an_export_of_other_weights_is_refused(tmp_path: Path) -> None:
    folder = fake_reader_folder(tmp_path, exported=True)
    assert onnx_reader.current_export(folder, "int8") is not None
    (folder / "model.safetensors").write_bytes(b"retrained weights")
    assert onnx_reader.current_export(folder, "int8") is None
    assert not onnx_reader.onnx_available(Settings(reader_path=folder, device="cpu"))
    with pytest.raises(onnx_reader.ExportError, match="citeqa export-reader"):
        OnnxReader(folder).warm_up()
    bare = fake_reader_folder(tmp_path / "bare", exported=False)
    assert onnx_reader.current_export(bare, "fp32") is None


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to tell 1 thread from 2")
def test_faiss_threads_are_scoped_to_the_search() -> None:
    torch.set_num_threads(2)
    set_faiss_threads(1)
    try:
        with faiss_thread_scope():
            inside = faiss.omp_get_max_threads()
        # One process-wide omp_set_num_threads(1) used to leave torch (same libgomp) with 1 thread.
        assert (inside, torch.get_num_threads()) == (1, 2)
    finally:
        set_faiss_threads(0)


# --- with the real models ----------------------------------------------------------------------
def onnx(folder: Path, variant: str, **options: object) -> OnnxReader:
    model = OnnxReader(folder, variant=variant, **options)  # type: ignore[arg-type]
    model.warm_up()
    return model


def best_text(model: Reader) -> tuple[str, float]:
    best = model.read(QUESTION, PASSAGES)[0]
    return PASSAGES[best.passage_index][best.start : best.end], best.margin


@pytest.mark.integration
@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_onnx_reader_finds_the_span_torch_finds(
    exported_reader_dir: Path, reader: Reader, variant: str
) -> None:
    text, margin = best_text(onnx(exported_reader_dir, variant))
    torch_text, torch_margin = best_text(reader)
    assert text == torch_text == "Ningbo"
    assert margin == pytest.approx(torch_margin, abs=1.0)
    manifest = json.loads((exported_reader_dir / "onnx" / "export.json").read_text())
    assert export_reader(exported_reader_dir)["skipped"] is True
    assert manifest["fused_operators"]["Attention"] == 6


@pytest.mark.integration
def test_openvino_reader_finds_the_span_torch_finds(
    linked_reader_dir: Path, reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = OpenVinoReader(linked_reader_dir, dtype="float32")
    model.warm_up()
    text, margin = best_text(model)
    torch_text, torch_margin = best_text(reader)
    assert text == torch_text == "Ningbo"
    assert margin == pytest.approx(torch_margin, abs=0.5)
    kept = linked_reader_dir / "openvino" / weights_sha256(linked_reader_dir)[:16]
    assert sorted(p.name for p in kept.iterdir()) == ["model.bin", "model.xml"]

    # The next start reads the kept conversion; a conversion of other weights is done again.
    def convert(_: Path) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(openvino_reader, "convert_reader", convert)
    again = OpenVinoReader(linked_reader_dir, dtype="float32")
    again.warm_up()
    assert best_text(again)[0] == "Ningbo"
    kept.rename(kept.with_name("converted-from-other-weights"))
    with pytest.raises(AssertionError, match="converted again"):
        OpenVinoReader(linked_reader_dir).warm_up()


def _key(candidates: list[SpanCandidate]) -> list[tuple[int, int, int]]:
    return [(c.passage_index, c.start, c.end) for c in candidates[:3]]


def _cases(seed_text: str) -> list[tuple[str, list[str]]]:
    sentences = [s.strip() for s in seed_text.split(".") if len(s.strip()) > 20]
    questions = ["Which city was the first pilot city?", "What does the plan cover?", "When?", "Who?"]
    return [
        (questions[i % 4], [". ".join(sentences[i * 2 + j : i * 2 + j + 2]) for j in range(1 + i % 4)])
        for i in range(16)
    ]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("runtime", "batch_windows"),
    [("torch", 16), ("onnx-fp32", 16), ("onnx-int8", 0), ("onnx-fp32", 0), ("openvino", 0), ("openvino", 16)],
)
def test_reads_from_many_threads_match_lone_reads(
    exported_reader_dir: Path, linked_reader_dir: Path, seed_text: str, runtime: str, batch_windows: int
) -> None:
    """Many threads at once get the spans one thread gets alone: with batching, questions merged into one
    forward pass (padding is masked); without, one ONNX Runtime session run from every thread. Batched
    runs are fp32: bf16 and int8 (per-batch activation scales) round differently with the batch's shape."""
    options = {"batch_windows": batch_windows, "batch_wait_ms": 5.0}
    alone: Reader
    many: Reader
    if runtime == "torch":
        alone = TransformersReader(READER, device="cpu", dtype="float32")
        many = TransformersReader(READER, device="cpu", dtype="float32", **options)  # type: ignore[arg-type]
    elif runtime == "openvino":  # one compiled model, an infer request per thread
        alone = OpenVinoReader(linked_reader_dir, dtype="float32")
        many = OpenVinoReader(linked_reader_dir, dtype="float32", **options)  # type: ignore[arg-type]
    else:
        variant = runtime.split("-")[1]
        alone, many = onnx(exported_reader_dir, variant), onnx(exported_reader_dir, variant, **options)
    cases = _cases(seed_text)
    expected = [alone.read(q, p) for q, p in cases]
    barrier = threading.Barrier(8)

    def call(i: int) -> list[SpanCandidate]:
        if i < 8:
            barrier.wait()
        return many.read(*cases[i % len(cases)])

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(call, range(3 * len(cases))))
    for i, candidates in enumerate(got):
        want = expected[i % len(cases)]
        assert _key(candidates) == _key(want)
        assert [c.score for c in candidates[:3]] == pytest.approx([c.score for c in want[:3]], abs=1e-3)
    batcher = many._batcher  # type: ignore[attr-defined]
    if batch_windows:
        assert batcher is not None and batcher.batches < batcher.requests  # some were merged
    else:
        assert batcher is None
    many.close()  # type: ignore[attr-defined]


@pytest.mark.integration
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to tell 1 thread from 2")
def test_reader_keeps_its_threads_after_the_pipeline_starts(make_pipeline: PipelineFactory) -> None:
    torch.set_num_threads(2)
    pipeline = make_pipeline(faiss_threads=1)
    pipeline.ask("Which city was the first pilot demonstration city?")
    assert torch.get_num_threads() == 2
