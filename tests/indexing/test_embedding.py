"""The embedder's runtimes: OpenVINO stands in for torch with the same vectors, keeps its conversion, and is
chosen from the model folder's files (no torch import on that path)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from citeqa.indexing import embedding, openvino_runtime
from citeqa.indexing.embedding import Embedder, default_embedder_path, resolve_device
from citeqa.indexing.openvino_runtime import openvino_preferred, weights_sha256

from tests.conftest import child_env

TEXTS = [
    "How many days of annual leave do employees get?",
    "Refunds are paid within 14 days of the returned item reaching our warehouse, to the card used to pay.",
    "When?",
    "The committee meets every spring in Lisbon; its minutes are published on the intranet within a month.",
]


@pytest.fixture(scope="module")
def linked_embedder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default embedder in a folder of its own (links to its files), so a conversion lands there."""
    folder = tmp_path_factory.mktemp("embedder")
    for item in default_embedder_path().iterdir():
        (folder / item.name).symlink_to(item)
    return folder


@pytest.mark.integration
def test_openvino_embeds_as_torch_does(linked_embedder_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch_vectors = Embedder(linked_embedder_dir, device="cpu", dtype="float32", runtime="torch").embed(TEXTS)
    openvino = Embedder(linked_embedder_dir, device="cpu", dtype="float32", runtime="openvino")
    vectors = openvino.embed(TEXTS)  # one padded batch: the pooling must skip the padding
    assert vectors.shape == torch_vectors.shape == (4, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.einsum("ij,ij->i", vectors, torch_vectors).min() > 0.9999
    assert np.allclose(openvino.embed_query(TEXTS[2]), vectors[2], atol=1e-4)  # alone as in a batch
    kept = linked_embedder_dir / "openvino" / weights_sha256(linked_embedder_dir)[:16]
    assert (kept / "model.xml").is_file()

    # The next start reads the kept conversion.
    def convert(_: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(openvino_runtime, "convert_module", convert)
    again = Embedder(linked_embedder_dir, device="cpu", dtype="float32", runtime="openvino")
    assert np.allclose(again.embed(TEXTS), vectors, atol=1e-6)


def copied_model_files(folder: Path, pooling: dict[str, object] | None = None, extra: str = "") -> Path:
    """The default embedder's description files (no weights) in `folder`, its pooling or modules changed."""
    source = default_embedder_path()
    (folder / "1_Pooling").mkdir(parents=True)
    base = json.loads((source / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({**base, **(pooling or {})}))
    modules = json.loads((source / "modules.json").read_text(encoding="utf-8"))
    if extra:
        kind = f"sentence_transformers.models.{extra}"
        modules.append({"idx": len(modules), "name": extra, "path": extra, "type": kind})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text((source / "sentence_bert_config.json").read_text())
    return folder


def test_openvino_stands_in_for_a_transformer_with_mean_pooling_only(tmp_path: Path) -> None:
    stand_in = embedding._openvino_stand_in
    assert stand_in(default_embedder_path()) == (384, 256)
    assert stand_in(copied_model_files(tmp_path / "same")) == (384, 256)
    max_pooled = {"pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True}
    assert stand_in(copied_model_files(tmp_path / "max", pooling=max_pooled)) is None
    assert stand_in(copied_model_files(tmp_path / "dense", extra="Dense")) is None
    assert stand_in(tmp_path / "nothing-here") is None


def test_the_tokenizer_is_read_where_the_transformer_module_lives(tmp_path: Path) -> None:
    assert embedding._transformer_folder(default_embedder_path()) == default_embedder_path()
    modules = [
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"}
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    assert embedding._transformer_folder(tmp_path) == tmp_path / "0_Transformer"


@pytest.mark.parametrize(
    ("flags", "int8"),
    [
        ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, True),  # AMD Zen 4: VNNI, bf16, no AMX
        ({"avx2", "avx_vnni"}, True),  # Intel desktop cores since Alder Lake
        ({"avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}, False),  # Xeon with AMX: bf16 tiles win
        ({"avx2", "fma"}, False),  # no int8 dot products
        (set(), False),
    ],
)
def test_int8_is_preferred_on_cpus_with_vnni_and_without_amx(
    flags: set[str], int8: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedding, "cpu_flags", lambda: frozenset(flags))
    assert embedding.cpu_prefers_int8() is int8
    assert embedding.cpu_has_fast_bf16() is bool(flags & {"avx512_bf16", "amx_bf16"})


def test_auto_device_is_cpu_without_a_gpu_driver_and_asks_torch_with_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedding, "_GPU_DRIVER_FILES", (str(tmp_path / "nvidia"),))
    if sys.platform == "linux":
        assert resolve_device("auto") == "cpu"
    (tmp_path / "nvidia").touch()
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cpu") == "cpu"


@pytest.mark.integration
@pytest.mark.skipif(
    not openvino_preferred("auto", "auto"), reason="OpenVINO runs the models on bf16 CPUs only"
)
def test_the_openvino_path_answers_without_importing_torch(openvino_reader_dir: Path) -> None:
    """A cold start on OpenVINO (the models' conversions kept) loads neither torch nor transformers nor
    sentence-transformers: they cost about 7 of a cold `citeqa ask`'s 8 seconds."""
    code = """
import sys
from citeqa.indexing.embedding import Embedder
from citeqa.service.qa.reader import make_reader
from citeqa.service.settings import Settings
assert Embedder().embed_query("When?").shape == (384,)
assert make_reader(Settings()).read("When?", ["The committee meets every spring."])
print(sorted({"torch", "transformers", "sentence_transformers"} & set(sys.modules)))
"""
    env = child_env(CITEQA_READER_PATH=str(openvino_reader_dir))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
