"""The reader on ONNX Runtime: the same tokenization and span decoding as the torch reader (WindowReader),
with the forward pass of an ONNX export of the reader folder's model.

`export_reader` (the `citeqa export-reader` command; `citeqa bench` runs it too) writes, beside the model:

    <reader>/onnx/model.onnx        fp32, ONNX Runtime's transformer fusions applied (attention, GELU,
                                    layer norms), about 90 MB
    <reader>/onnx/model.int8.onnx   the same with its matrix weights quantized to int8 (dynamic
                                    quantization: activations are quantized per call), about 22 MB
    <reader>/onnx/export.json       what it was exported from: the weights' SHA-256, the variant chosen

The files are derived from model.safetensors and rebuilt in seconds, so they are git-ignored, not
committed (they would go stale with every retraining). An export of other weights than those now in the
folder is refused until it is exported again, never read.

`CITEQA_READER_RUNTIME=onnx` selects this runtime; `auto` stays on torch: measured side by side on this
project's CPUs, ONNX Runtime fp32 read no faster than torch fp32 and 2.5x slower than torch bf16 (AMX), and
int8, as fast as torch bf16, lost about a point of F1 on held-out sets (docs/benchmarks.md#reader-runtimes).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeqa.indexing.errors import CiteqaError
from citeqa.indexing.openvino_runtime import weights_sha256
from citeqa.service.qa.batching import Inputs, Logits
from citeqa.service.qa.reader import WindowReader, reader_options

if TYPE_CHECKING:
    from citeqa.service.settings import Settings

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"
EXPORT_MANIFEST = "export.json"
VARIANTS = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("start_logits", "end_logits")


class ExportError(CiteqaError):
    """The reader cannot be exported or its export cannot be loaded."""


def read_manifest(model_path: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((model_path / ONNX_DIR / EXPORT_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def current_export(model_path: Path, variant: str) -> Path | None:
    """The exported file of `variant` when it exists and was exported from the weights now in the folder."""
    path = model_path / ONNX_DIR / VARIANTS[variant]
    manifest = read_manifest(model_path)
    if not path.is_file() or manifest is None or (model_path / "model.safetensors").is_file() is False:
        return None
    if manifest.get("weights_sha256") != weights_sha256(model_path):
        log.warning("%s was exported from other weights: run `citeqa export-reader` again", path)
        return None
    return path


def onnx_available(settings: Settings) -> bool:
    """Whether ONNX Runtime can read: on the CPU, with onnxruntime installed and a current export."""
    if settings.device == "cuda":
        return False
    if settings.device == "auto":
        from citeqa.indexing.embedding import resolve_device

        if resolve_device("auto") != "cpu":
            return False
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return current_export(settings.reader_path, settings.reader_onnx_variant) is not None


def default_threads() -> int:
    """One intra-op thread per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class OnnxReader(WindowReader):
    """The reader's forward pass on ONNX Runtime's CPU provider. One session serves every thread
    (`InferenceSession.run` is thread-safe); its own thread pool is sized here, not by OpenMP."""

    runtime = "onnxruntime"

    def __init__(self, model_path: Path, variant: str = "int8", threads: int = 0, **options: Any) -> None:
        super().__init__(model_path, **options)
        if variant not in VARIANTS:
            raise ValueError(f"unknown ONNX variant {variant!r}; one of {sorted(VARIANTS)}")
        self.variant = variant
        self.threads = threads or default_threads()
        self._session: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OnnxReader:
        s = settings
        return cls(
            s.reader_path, variant=s.reader_onnx_variant, threads=s.reader_threads, **reader_options(s)
        )

    @property
    def onnx_path(self) -> Path:
        return self.model_path / ONNX_DIR / VARIANTS[self.variant]

    def _load_model(self) -> None:
        import onnxruntime as ort

        if current_export(self.model_path, self.variant) is None:
            raise ExportError(
                f"no current ONNX export at {self.onnx_path}: run `citeqa export-reader "
                f"--reader {self.model_path}` (or use CITEQA_READER_RUNTIME=torch)"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads sleep rather than spin, as OMP_WAIT_POLICY=PASSIVE makes torch's do: on
        # cores shared with other processes spinning threads slow every query several-fold.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in session.get_inputs()}
        self._session = session

    def _forward(self, inputs: Inputs) -> Logits:
        feed = {name: array for name, array in inputs.items() if name in self._input_names}
        start, end = self._session.run(list(OUTPUT_NAMES), feed)
        return start, end

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "dtype": self.variant,
            "device": "cpu",
            "threads": self.threads,
            "file": str(self.onnx_path),
        }


# --- export ------------------------------------------------------------------------------------
def _export_fp32(model_path: Path, raw: Path) -> None:
    import torch
    from transformers import AutoModelForQuestionAnswering

    # Eager attention exports as plain MatMul/Softmax, which ONNX Runtime's optimizer fuses into its
    # Attention kernel; the SDPA path exports a graph it does not recognise.
    model = AutoModelForQuestionAnswering.from_pretrained(
        str(model_path), dtype=torch.float32, attn_implementation="eager"
    ).eval()

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.start_logits, out.end_logits

    ids = torch.ones(2, 16, dtype=torch.long)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUT_NAMES, *OUTPUT_NAMES)}
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            Logits(),
            (ids, ids, torch.zeros_like(ids)),
            str(raw),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def quantize_int8(fused: Path, out: Path) -> list[str]:
    """Dynamic int8 quantization of the matrix weights, per output channel; returns the nodes left in
    fp32. Per-channel scales halved the logit error of per-tensor ones on SQuAD dev (max 2.7 vs 5.4)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep_fp32 = [n.name for n in onnx.load(str(fused)).graph.node if n.name.endswith("qa_outputs/MatMul")]
    quantize_dynamic(
        str(fused),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=keep_fp32,
        # The fused graph's contrib ops (Attention, SkipLayerNormalization) defeat shape inference.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return keep_fp32


def export_reader(model_path: Path, force: bool = False) -> dict[str, Any]:
    """Export the reader folder's model to ONNX (fp32, fused) and int8; skipped when current."""
    if not (model_path / "config.json").is_file() or not (model_path / "model.safetensors").is_file():
        raise ExportError(f"no reader model (config.json, model.safetensors) at {model_path}")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"exporting needs onnx and onnxruntime ({exc})") from exc
    out_dir = model_path / ONNX_DIR
    sha = weights_sha256(model_path)
    manifest = read_manifest(model_path)
    if (
        not force
        and manifest is not None
        and manifest.get("weights_sha256") == sha
        and all((out_dir / name).is_file() for name in VARIANTS.values())
    ):
        return {**manifest, "skipped": True}
    from onnxruntime.transformers import optimizer
    from transformers import AutoConfig

    out_dir.mkdir(parents=True, exist_ok=True)
    config = AutoConfig.from_pretrained(str(model_path))
    raw = out_dir / "model.raw.onnx"
    fused = out_dir / VARIANTS["fp32"]
    int8 = out_dir / VARIANTS["int8"]
    try:
        _export_fp32(model_path, raw)
        optimized = optimizer.optimize_model(
            str(raw),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
        )
        tmp_fused = fused.with_suffix(".tmp")
        optimized.save_model_to_file(str(tmp_fused))
        os.replace(tmp_fused, fused)
        tmp_int8 = int8.with_suffix(".tmp")
        kept = quantize_int8(fused, tmp_int8)
        os.replace(tmp_int8, int8)
    finally:
        raw.unlink(missing_ok=True)
    manifest = {
        "source": model_path.name,
        "weights_sha256": sha,
        "files": dict(VARIANTS),
        "fused_operators": {k: v for k, v in optimized.get_fused_operator_statistics().items() if v},
        "int8": {"method": "dynamic, per-channel weights", "kept_fp32": kept},
        "opset": 17,
    }
    # Written last: its hash is what makes the files current, so an interrupted export is never used.
    (out_dir / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
