"""The embedder's runtimes: OpenVINO stands in for torch with the same vectors, and keeps its conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from citeqa.indexing import openvino_runtime
from citeqa.indexing.embedding import Embedder, default_embedder_path
from citeqa.indexing.openvino_runtime import weights_sha256

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
