"""The reader on OpenVINO (see citeqa.indexing.openvino_runtime): the same tokenization and span decoding
as the torch reader (WindowReader), with the forward pass compiled by OpenVINO's CPU plugin. `auto` reads
with it on CPUs with bf16 units; the conversion is kept in <reader>/openvino/."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeqa.indexing.embedding import resolve_dtype
from citeqa.indexing.openvino_runtime import CompiledForCpu, convert_module, load_or_convert
from citeqa.service.qa.batching import Inputs, Logits
from citeqa.service.qa.reader import WindowReader, reader_options

if TYPE_CHECKING:
    from citeqa.service.settings import Settings


def _convert_reader(model_path: Path) -> Any:
    import torch
    from transformers import AutoModelForQuestionAnswering

    # Eager attention converts to plain MatMul/Softmax, which the CPU plugin fuses into its own kernel.
    model = AutoModelForQuestionAnswering.from_pretrained(
        str(model_path), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    return convert_module(model)


class OpenVinoReader(WindowReader):
    """The reader's forward pass compiled by OpenVINO for the CPU, shared by every thread."""

    runtime = "openvino"

    def __init__(self, model_path: Path, dtype: str = "auto", threads: int = 0, **options: Any) -> None:
        """`dtype`: auto (bf16 on CPUs with bf16 units, else fp32), bfloat16 or float32."""
        super().__init__(model_path, **options)
        self.dtype = dtype
        self.threads = threads  # 0: one per core
        self._model: CompiledForCpu | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenVinoReader:
        s = settings
        return cls(s.reader_path, dtype=s.model_dtype, threads=s.reader_threads, **reader_options(s))

    @property
    def resolved_dtype(self) -> str:
        """bfloat16 (on CPUs with bf16 units for `auto`) or float32: what the CPU plugin computes in."""
        return "bfloat16" if resolve_dtype("cpu", self.dtype) == "bfloat16" else "float32"

    def _load_model(self) -> None:
        model = load_or_convert(self.model_path, lambda: _convert_reader(self.model_path))
        self._model = CompiledForCpu(model, self.resolved_dtype, self.threads)

    def _forward(self, inputs: Inputs) -> Logits:
        assert self._model is not None
        start, end = self._model(inputs, outputs=2)
        return start, end

    def describe(self) -> dict[str, Any]:
        self.warm_up()
        return {
            **super().describe(),
            "dtype": self.resolved_dtype,
            "device": "cpu",
            "threads": self._model.threads if self._model is not None else self.threads,
        }
