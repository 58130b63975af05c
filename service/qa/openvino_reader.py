"""The reader on OpenVINO (see citeqa.indexing.openvino_runtime): the same tokenization and span decoding
as the torch reader (WindowReader), with the forward pass compiled by OpenVINO's CPU plugin. `auto` reads
with it on CPUs with bf16 units; the conversion is kept in <reader>/openvino/.

Where `citeqa quantize-reader` has written an int8 model of the same weights (<reader>/openvino-int8/, most
matrix products' inputs quantized to 8 bits with ranges measured on sample questions), `auto` reads with it
on CPUs whose VNNI units make int8 faster than bf16 and that have no AMX: on an AMD EPYC (Zen 4) a
question's 4 windows took 0.71 of bf16's time, with held-out F1 within 0.2 of bf16's on SQuAD, PolicyQA and
the own policies (docs/benchmarks.md, "OpenVINO int8")."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from citeqa.indexing.embedding import cpu_prefers_int8, resolve_device, resolve_dtype
from citeqa.indexing.errors import CiteqaError
from citeqa.indexing.openvino_runtime import (
    MODEL_FILE,
    CompiledForCpu,
    convert_module,
    derived_folder,
    load_or_convert,
    openvino_installed,
)
from citeqa.service.qa.batching import Inputs, Logits
from citeqa.service.qa.reader import WindowReader, reader_options

if TYPE_CHECKING:
    from citeqa.service.settings import Settings

INT8_DIR = "openvino-int8"
Int8Choice = Literal["auto", "on", "off"]


def current_int8_model(model_path: Path) -> Path | None:
    """The int8 model `citeqa quantize-reader` made from the weights now in the reader folder, if any (a
    model of earlier weights is never read)."""
    if not (model_path / INT8_DIR).is_dir() or not (model_path / "model.safetensors").is_file():
        return None
    path = derived_folder(model_path, INT8_DIR) / MODEL_FILE
    return path if path.is_file() else None


def int8_model_file(model_path: Path, choice: Int8Choice, dtype: str = "auto") -> Path | None:
    """The int8 model to read for `choice`: `auto` the current one on a CPU that prefers int8; `on` the
    current one anywhere (an error without one); none for `off` or where fp32 is asked for."""
    if choice == "off" or dtype not in ("auto", "bfloat16"):
        return None
    if choice == "auto" and not cpu_prefers_int8():  # before hashing the weights (35 ms at every start)
        return None
    path = current_int8_model(model_path)
    if path is None and choice == "on":
        raise CiteqaError(f"no int8 model of {model_path}: run `citeqa quantize-reader` first")
    return path


def int8_preferred(settings: Settings) -> bool:
    """Whether `auto` reads with OpenVINO for its int8 model (see `int8_model_file`)."""
    s = settings
    if s.reader_int8 == "off" or resolve_device(s.device) != "cpu" or not openvino_installed():
        return False
    try:
        return int8_model_file(s.reader_path, s.reader_int8, s.model_dtype) is not None
    except CiteqaError:
        return True  # asked for and missing: the OpenVINO reader says so when it loads
    except OSError:
        return False


def convert_reader(model_path: Path) -> Any:
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

    def __init__(
        self,
        model_path: Path,
        dtype: str = "auto",
        threads: int = 0,
        int8: Int8Choice = "auto",
        **options: Any,
    ) -> None:
        """`dtype`: auto (bf16 on CPUs with bf16 units, else fp32), bfloat16 or float32. `int8`: auto reads
        with the int8 model where there is one and the CPU prefers int8; on wherever there is one (else an
        error); off never."""
        super().__init__(model_path, **options)
        self.dtype = dtype
        self.int8 = int8
        self.threads = threads  # 0: one per core
        self._model: CompiledForCpu | None = None
        self._int8_in_use = False

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenVinoReader:
        s = settings
        return cls(
            s.reader_path,
            dtype=s.model_dtype,
            threads=s.reader_threads,
            int8=s.reader_int8,
            **reader_options(s),
        )

    @property
    def resolved_dtype(self) -> str:
        """bfloat16 (on CPUs with bf16 units for `auto`) or float32: what the CPU plugin computes in (with
        the int8 model, the operations left unquantized)."""
        return "bfloat16" if resolve_dtype("cpu", self.dtype) == "bfloat16" else "float32"

    def _load_model(self) -> None:
        import openvino as ov

        int8_file = int8_model_file(self.model_path, self.int8, self.dtype)
        if int8_file is not None:
            model = ov.Core().read_model(str(int8_file))
        else:
            model = load_or_convert(self.model_path, lambda: convert_reader(self.model_path))
        self._model = CompiledForCpu(model, self.resolved_dtype, self.threads)
        self._int8_in_use = int8_file is not None

    def _forward(self, inputs: Inputs) -> Logits:
        assert self._model is not None
        start, end = self._model(inputs, outputs=2)
        return start, end

    def describe(self) -> dict[str, Any]:
        self.warm_up()
        return {
            **super().describe(),
            "dtype": "int8" if self._int8_in_use else self.resolved_dtype,
            "device": "cpu",
            "threads": self._model.threads if self._model is not None else self.threads,
        }
