"""OpenVINO for the models' forward passes on CPUs with bf16 units (AMX, AVX512-BF16): the embedder's and
the reader's (service/qa/openvino_reader.py).

There OpenVINO runs a model in bf16 with pre-packed weights and fused kernels: measured side by side on
this project's Xeon (2 cores, AMX), one question's 4 reader windows took 32 ms against torch bf16's 50, and a
query's embedding 3.7 ms against 24, at the same outputs to within bf16's rounding
(docs/benchmarks.md#reader-runtimes). On CPUs without bf16 units it measured no faster than torch fp32, so
`auto` uses it only where they are.

A model is converted from its folder's torch weights the first time it is loaded (a second or two) and the
result kept beside them, in <model>/openvino/<hash of the weights>/ (git-ignored, done again whenever the
weights change); where that folder cannot be written it is converted again at each start.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

OPENVINO_DIR = "openvino"
MODEL_FILE = "model.xml"  # with model.bin beside it


def openvino_installed() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def openvino_preferred(device: str, dtype: str) -> bool:
    """Whether `auto` runs a model on OpenVINO: on a CPU with bf16 units, bf16 allowed, OpenVINO installed."""
    from citeqa.indexing.embedding import cpu_has_fast_bf16, resolve_device

    if dtype not in ("auto", "bfloat16") or resolve_device(device) != "cpu":
        return False
    return cpu_has_fast_bf16() and openvino_installed()


def weights_sha256(model_path: Path) -> str:
    """The SHA-256 of a model folder's model.safetensors: what derived files are checked against."""
    digest = hashlib.sha256()
    with (model_path / "model.safetensors").open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_module(module: Any) -> Any:
    """A BERT-style torch module taking input_ids, attention_mask and token_type_ids, as an OpenVINO model
    (fp32 weights: the precision is chosen when it is compiled)."""
    import openvino as ov
    import torch

    ids = torch.ones(2, 16, dtype=torch.long)
    example = {"input_ids": ids, "attention_mask": ids, "token_type_ids": torch.zeros_like(ids)}
    # Tracing warns about Python branches it records as constants (the attention-mask padding check, fixed
    # for inputs of this kind) and transformers about deprecations: noise on a user's first ask, not news.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ov.convert_model(module, example_input=example)


def derived_folder(model_path: Path, kind: str = OPENVINO_DIR) -> Path:
    """Where a model derived from the folder's weights is kept: <model>/<kind>/<hash of the weights>/."""
    return model_path / kind / weights_sha256(model_path)[:16]


def keep_model(model: Any, folder: Path) -> None:
    """Save `model` as folder/model.xml, removing what its parent holds for earlier weights. Written to a
    folder of its own first and renamed into place, so that processes starting together never read a
    half-written one. Raises OSError where the folder cannot be written."""
    import openvino as ov

    root = folder.parent
    root.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="converting-", dir=root))
    ov.save_model(model, str(staging / MODEL_FILE), compress_to_fp16=False)
    for stale in root.iterdir():  # derived from earlier weights
        if stale.is_dir() and stale not in (staging, folder) and not stale.name.startswith("converting-"):
            shutil.rmtree(stale, ignore_errors=True)
    try:
        staging.rename(folder)
    except OSError:  # another process put its model there first
        shutil.rmtree(staging, ignore_errors=True)


def load_or_convert(model_path: Path, convert: Callable[[], Any]) -> Any:
    """The converted model: read from <model>/openvino/<hash of the weights>/ when there, else `convert()`ed
    now and kept there (when the folder can be written)."""
    import openvino as ov

    folder = derived_folder(model_path)
    if (folder / MODEL_FILE).is_file():
        return ov.Core().read_model(str(folder / MODEL_FILE))
    converted = convert()
    try:
        keep_model(converted, folder)
    except OSError as exc:
        log.info("could not keep the OpenVINO model in %s (%s): it is converted at each start", folder, exc)
    return converted


class CompiledForCpu:
    """A model compiled for the CPU, callable from any thread: one compiled model, an infer request per
    thread (a request is not thread-safe, and it reuses its output buffers, so outputs are copied)."""

    def __init__(self, model: Any, dtype: str, threads: int) -> None:
        """`dtype`: a resolved dtype (`resolve_dtype`): bfloat16 runs in bf16, anything else in fp32."""
        import openvino as ov

        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "bf16" if dtype == "bfloat16" else "f32",
            # One stream: concurrent requests take turns on all the threads rather than split the cores.
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads > 0:  # else OpenVINO's default: one per core this process may use
            config["INFERENCE_NUM_THREADS"] = threads
        self._compiled = ov.Core().compile_model(model, "CPU", config)
        self._names = {port.get_any_name() for port in self._compiled.inputs}
        self._requests = threading.local()

    @property
    def threads(self) -> int:
        return int(self._compiled.get_property("INFERENCE_NUM_THREADS"))

    def __call__(self, inputs: Mapping[str, np.ndarray], outputs: int = 1) -> list[np.ndarray]:
        """The first `outputs` outputs, float32, for the inputs the model takes (others are ignored)."""
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        result = request.infer({name: array for name, array in inputs.items() if name in self._names})
        return [np.array(result[port], dtype=np.float32) for port in self._compiled.outputs[:outputs]]
