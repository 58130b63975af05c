"""Extractive reader: a span head over (question, passage) windows, decoded into character spans.

`WindowReader` tokenizes and decodes; a runtime supplies only the forward pass: `TransformersReader`
(torch, also what training uses) here, `OnnxReader` (ONNX Runtime) in onnx_reader.py. `make_reader` picks
one from the settings."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from citeqa.indexing.embedding import resolve_device, resolve_dtype
from citeqa.indexing.errors import CiteqaError
from citeqa.indexing.tokenizers import PAD_TO_MULTIPLE_OF, ModelTokenizer
from citeqa.service.qa.batching import ForwardBatcher, Inputs, Logits

if TYPE_CHECKING:
    from citeqa.service.settings import Settings


@dataclass(frozen=True)
class SpanCandidate:
    """A candidate answer inside one passage; offsets are characters of that passage's text."""

    passage_index: int
    start: int
    end: int
    score: float  # start logit + end logit
    null_score: float  # the window's [CLS] start + end logits: the model's "no answer"

    @property
    def margin(self) -> float:
        return self.score - self.null_score


@dataclass(frozen=True)
class WindowLogits:
    """One tokenized window of a passage with the model's logits."""

    passage_index: int
    start_logits: np.ndarray
    end_logits: np.ndarray
    offsets: np.ndarray | Sequence[tuple[int, int]]  # (start, end) characters of each token
    context_mask: np.ndarray  # True for tokens of the passage (not question, special or padding)


def decode_window(window: WindowLogits, n_best: int = 20, max_answer_tokens: int = 30) -> list[SpanCandidate]:
    """Top start/end pairs within the passage tokens, end >= start, at most `max_answer_tokens` long."""
    null_score = float(window.start_logits[0] + window.end_logits[0])
    context = np.flatnonzero(window.context_mask)
    if len(context) == 0:
        return []
    starts = context[np.argsort(-window.start_logits[context], kind="stable")[:n_best]]
    ends = context[np.argsort(-window.end_logits[context], kind="stable")[:n_best]]
    # Every (start, end) pair at once, starts major: the order the stable sort below breaks ties in.
    offsets = np.asarray(window.offsets, dtype=np.int64).reshape(-1, 2)
    char_starts, char_ends = offsets[starts, 0][:, None], offsets[ends, 1][None, :]
    length = ends[None, :] - starts[:, None] + 1
    valid = (length >= 1) & (length <= max_answer_tokens) & (char_ends > char_starts)
    scores = window.start_logits[starts][:, None] + window.end_logits[ends][None, :]
    rows, cols = np.nonzero(valid)
    order = np.argsort(-scores[rows, cols], kind="stable")[:n_best]
    return [
        SpanCandidate(
            passage_index=window.passage_index,
            start=int(char_starts[r, 0]),
            end=int(char_ends[0, c]),
            score=float(window.start_logits[starts[r]] + window.end_logits[ends[c]]),
            null_score=null_score,
        )
        for r, c in zip(rows[order], cols[order], strict=True)
    ]


class Reader(Protocol):
    """What the pipeline needs of a reader. Implementations are cheap to construct, load their model in
    `warm_up()`, and are called from many inference threads at once."""

    def warm_up(self) -> None: ...

    def read(self, question: str, passages: Sequence[str]) -> list[SpanCandidate]:
        """Candidate spans of every passage (offsets into that passage), with their no-answer scores."""
        ...


class WindowReader:
    """Tokenizes (question, passage) windows and decodes the span logits; a subclass supplies the model.

    Cheap to construct; `warm_up()` loads the tokenizer and model once. With `batch_windows` > 0, the
    forward passes of questions read at the same time are merged (see `ForwardBatcher`).
    """

    runtime = "none"

    def __init__(
        self,
        model_path: Path,
        max_length: int = 384,
        stride: int = 128,
        pad_to_multiple_of: int = PAD_TO_MULTIPLE_OF,
        max_question_tokens: int = 64,
        max_answer_tokens: int = 30,
        n_best: int = 20,
        batch_windows: int = 0,
        batch_wait_ms: float = 3.0,
    ) -> None:
        self.model_path = model_path
        self.max_length = max_length
        self.stride = stride
        self.pad_to_multiple_of = pad_to_multiple_of
        self.max_question_tokens = max_question_tokens
        self.max_answer_tokens = max_answer_tokens
        self.n_best = n_best
        self.batch_windows = batch_windows
        self.batch_wait_ms = batch_wait_ms
        self._tokenizer: ModelTokenizer | None = None
        self._batcher: ForwardBatcher | None = None
        self._load_lock = threading.Lock()

    # --- what a runtime supplies -----------------------------------------------------------
    def _load_model(self) -> None:
        raise NotImplementedError

    def _forward(self, inputs: Inputs) -> Logits:
        """Start and end logits (float32, rows x tokens) of a batch of windows."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The runtime, weights' precision, threads and window padding in use (for the bench and /readyz)."""
        return {
            "runtime": self.runtime,
            "model": self.model_path.name,
            "pad_to_multiple_of": self.pad_to_multiple_of,
        }

    # --- shared ----------------------------------------------------------------------------
    def warm_up(self) -> None:
        if self._tokenizer is not None:
            return
        with self._load_lock:
            if self._tokenizer is not None:
                return
            if not (self.model_path / "config.json").is_file():
                raise CiteqaError(f"reader model not found at {self.model_path} (set CITEQA_READER_PATH)")
            self._load_model()
            tokenizer = ModelTokenizer(self.model_path)
            if self.batch_windows > 0:
                pad = {"input_ids": tokenizer.pad_id}
                self._batcher = ForwardBatcher(
                    self._forward, pad, max_rows=self.batch_windows, wait_s=self.batch_wait_ms / 1000
                )
            self._tokenizer = tokenizer

    def close(self) -> None:
        """Stop the batching thread (a reader is normally kept for the life of the process)."""
        if self._batcher is not None:
            self._batcher.close()

    def _clip_question(self, tokenizer: ModelTokenizer, question: str) -> str:
        offsets = tokenizer.offsets(question)
        if len(offsets) <= self.max_question_tokens:
            return question
        return question[: offsets[self.max_question_tokens - 1][1]]

    def read(self, question: str, passages: Sequence[str]) -> list[SpanCandidate]:
        """Candidates from every passage, read in one batched forward pass, best first."""
        if not passages:
            return []
        self.warm_up()
        assert self._tokenizer is not None
        batcher = self._batcher
        if batcher is not None:
            batcher.expect()  # so that the batcher waits for this question while it is tokenized
        try:
            question = self._clip_question(self._tokenizer, question)
            windows = self._tokenizer.windows(
                question, passages, self.max_length, self.stride, self.pad_to_multiple_of
            )
        except BaseException:
            if batcher is not None:
                batcher.unexpect()
            raise
        inputs = windows.inputs
        start_logits, end_logits = batcher.submit(inputs) if batcher is not None else self._forward(inputs)
        candidates: list[SpanCandidate] = []
        for i, passage_index in enumerate(windows.passage_of):
            window = WindowLogits(
                passage_index=passage_index,
                start_logits=start_logits[i],
                end_logits=end_logits[i],
                offsets=windows.offsets[i],
                context_mask=windows.in_passage[i],
            )
            candidates.extend(decode_window(window, self.n_best, self.max_answer_tokens))
        candidates.sort(key=lambda c: -c.margin)
        return candidates


def reader_options(settings: Settings) -> dict[str, Any]:
    """The settings every runtime shares."""
    s = settings
    return {
        "max_length": s.reader_max_length,
        "stride": s.reader_stride,
        "pad_to_multiple_of": s.reader_pad_to_multiple_of,
        "max_question_tokens": s.max_question_tokens,
        "max_answer_tokens": s.max_answer_tokens,
        "batch_windows": s.reader_batch_windows,
        "batch_wait_ms": s.reader_batch_wait_ms,
    }


class TransformersReader(WindowReader):
    """A Hugging Face question-answering model run by torch (start/end logits over question+passage
    windows): the fallback runtime, and the only one on CUDA."""

    runtime = "torch"

    def __init__(
        self,
        model_path: Path,
        device: str = "auto",
        dtype: str = "auto",
        threads: int = 0,
        **options: Any,
    ) -> None:
        """`dtype`: auto, float32, bfloat16 or float16 (see `resolve_dtype`). `threads`: torch's intra-op
        threads, set at load (0 = torch's default, one per core)."""
        super().__init__(model_path, **options)
        self.device = device
        self.dtype = dtype
        self.threads = threads
        self._model: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformersReader:
        s = settings
        return cls(
            s.reader_path, device=s.device, dtype=s.model_dtype, threads=s.reader_threads, **reader_options(s)
        )

    def _load_model(self) -> None:
        import torch
        from transformers import AutoModelForQuestionAnswering

        device = resolve_device(self.device)
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        # bf16 reads 2.8x faster than fp32 on CPUs with AMX/AVX512-BF16, with the same EM/F1 and
        # abstentions on the seed set; int8 dynamic quantization was faster still but lost 9 EM points.
        self._dtype = resolve_dtype(device, self.dtype)
        model = AutoModelForQuestionAnswering.from_pretrained(
            str(self.model_path), dtype=getattr(torch, self._dtype)
        )
        model.to(device).eval()
        self._model, self._torch_device = model, device

    def _forward(self, inputs: Inputs) -> Logits:
        import torch

        tensors = {k: torch.from_numpy(v).to(self._torch_device) for k, v in inputs.items()}
        with torch.inference_mode():
            output = self._model(**tensors)
        return output.start_logits.float().cpu().numpy(), output.end_logits.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        import torch

        self.warm_up()
        return {
            **super().describe(),
            "dtype": self._dtype,
            "device": self._torch_device,
            "threads": torch.get_num_threads(),
        }


def make_reader(settings: Settings) -> Reader:
    """The reader the settings ask for. `auto`: OpenVINO on CPUs with bf16 units (it read a question 1.5x
    faster than torch bf16 there, at the same answers) and with the int8 model where the CPU prefers it
    (see openvino_reader), torch elsewhere (OpenVINO fp32 was no faster than
    torch fp32); `onnx` reads with ONNX Runtime (`citeqa export-reader` first), whose int8 export lost
    about a point of F1 on held-out sets (docs/benchmarks.md#reader-runtimes)."""
    from citeqa.indexing.openvino_runtime import openvino_preferred
    from citeqa.service.qa.openvino_reader import OpenVinoReader, int8_preferred

    runtime = settings.reader_runtime
    if runtime == "onnx":
        from citeqa.service.qa.onnx_reader import OnnxReader

        return OnnxReader.from_settings(settings)
    if runtime == "openvino" or (
        runtime == "auto"
        and (openvino_preferred(settings.device, settings.model_dtype) or int8_preferred(settings))
    ):
        return OpenVinoReader.from_settings(settings)
    return TransformersReader.from_settings(settings)
