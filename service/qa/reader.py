"""Extractive reader: a span head over (question, passage) windows, decoded into character spans."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from citeqa.indexing.embedding import resolve_device, resolve_dtype
from citeqa.indexing.tokenizers import PerThreadTokenizer

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
    offsets: Sequence[tuple[int, int]]
    context_mask: np.ndarray  # True for tokens of the passage (not question, special or padding)


def decode_window(window: WindowLogits, n_best: int = 20, max_answer_tokens: int = 30) -> list[SpanCandidate]:
    """Top start/end pairs within the passage tokens, end >= start, at most `max_answer_tokens` long."""
    null_score = float(window.start_logits[0] + window.end_logits[0])
    context = np.flatnonzero(window.context_mask)
    if len(context) == 0:
        return []
    starts = context[np.argsort(-window.start_logits[context], kind="stable")[:n_best]]
    ends = context[np.argsort(-window.end_logits[context], kind="stable")[:n_best]]
    candidates = []
    for s in starts:
        for e in ends:
            if e < s or e - s + 1 > max_answer_tokens:
                continue
            char_start, char_end = window.offsets[s][0], window.offsets[e][1]
            if char_end <= char_start:
                continue
            candidates.append(
                SpanCandidate(
                    passage_index=window.passage_index,
                    start=int(char_start),
                    end=int(char_end),
                    score=float(window.start_logits[s] + window.end_logits[e]),
                    null_score=null_score,
                )
            )
    candidates.sort(key=lambda c: -c.score)
    return candidates[:n_best]


class Reader(Protocol):
    """What the pipeline needs of a reader. Implementations are cheap to construct, load their model in
    `warm_up()`, and are called from many inference threads at once."""

    def warm_up(self) -> None: ...

    def read(self, question: str, passages: Sequence[str]) -> list[SpanCandidate]:
        """Candidate spans of every passage (offsets into that passage), with their no-answer scores."""
        ...


class TransformersReader:
    """A Hugging Face question-answering model (start/end logits over question+passage windows).

    Cheap to construct; `warm_up()` loads the tokenizer and model once.
    """

    def __init__(
        self,
        model_path: Path,
        device: str = "auto",
        max_length: int = 384,
        stride: int = 128,
        max_question_tokens: int = 64,
        max_answer_tokens: int = 30,
        n_best: int = 20,
        dtype: str = "auto",
    ) -> None:
        """`dtype`: auto, float32, bfloat16 or float16 (see `resolve_dtype`)."""
        self.model_path = model_path
        self.device = device
        self.max_length = max_length
        self.stride = stride
        self.max_question_tokens = max_question_tokens
        self.max_answer_tokens = max_answer_tokens
        self.n_best = n_best
        self.dtype = dtype
        self._tokenizers: PerThreadTokenizer | None = None
        self._model: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformersReader:
        s = settings
        return cls(
            s.reader_path,
            device=s.device,
            max_length=s.reader_max_length,
            stride=s.reader_stride,
            max_question_tokens=s.max_question_tokens,
            max_answer_tokens=s.max_answer_tokens,
            dtype=s.model_dtype,
        )

    def warm_up(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        if not (self.model_path / "config.json").is_file():
            from citeqa.indexing.errors import CiteqaError

            raise CiteqaError(f"reader model not found at {self.model_path} (set CITEQA_READER_PATH)")
        device = resolve_device(self.device)
        # bf16 reads 2.8x faster than fp32 on CPUs with AMX/AVX512-BF16, with the same EM/F1 and
        # abstentions on the seed set; int8 dynamic quantization was faster still but lost 9 EM points.
        dtype = getattr(torch, resolve_dtype(device, self.dtype))
        tokenizer = AutoTokenizer.from_pretrained(str(self.model_path))
        model = AutoModelForQuestionAnswering.from_pretrained(str(self.model_path), dtype=dtype)
        model.to(device).eval()
        self._tokenizers, self._model, self._torch_device = PerThreadTokenizer(tokenizer), model, device

    def _clip_question(self, tokenizer: Any, question: str) -> str:
        encoded = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        if len(offsets) <= self.max_question_tokens:
            return question
        return question[: offsets[self.max_question_tokens - 1][1]]

    def read(self, question: str, passages: Sequence[str]) -> list[SpanCandidate]:
        """Candidates from every passage, read in one batched forward pass, best first."""
        if not passages:
            return []
        self.warm_up()
        import torch

        assert self._tokenizers is not None
        tokenizer = self._tokenizers.get()
        question = self._clip_question(tokenizer, question)
        encoded = tokenizer(
            [question] * len(passages),
            list(passages),
            truncation="only_second",
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="longest",
            return_tensors="pt",
        )
        sample_map = encoded.pop("overflow_to_sample_mapping").tolist()
        offsets = encoded.pop("offset_mapping").tolist()
        context_masks = [
            np.array([sid == 1 for sid in encoded.sequence_ids(i)], dtype=bool)
            for i in range(len(sample_map))
        ]
        inputs = {k: v.to(self._torch_device) for k, v in encoded.items()}
        with torch.inference_mode():
            output = self._model(**inputs)
        start_logits = output.start_logits.float().cpu().numpy()
        end_logits = output.end_logits.float().cpu().numpy()
        candidates: list[SpanCandidate] = []
        for i, passage_index in enumerate(sample_map):
            window = WindowLogits(
                passage_index=passage_index,
                start_logits=start_logits[i],
                end_logits=end_logits[i],
                offsets=[(int(o[0]), int(o[1])) for o in offsets[i]],
                context_mask=context_masks[i],
            )
            candidates.extend(decode_window(window, self.n_best, self.max_answer_tokens))
        candidates.sort(key=lambda c: -c.margin)
        return candidates
