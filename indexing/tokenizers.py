"""The models' tokenizers: each model folder's tokenizer.json run by the `tokenizers` library.

Not through transformers: importing it and its tokenizer classes took about a second and 60 MB of every
process, and `AutoTokenizer` imports torch, which the OpenVINO path otherwise never loads. The encodings are
those transformers gives for the same calls (tests/indexing/test_tokenizers.py compares them), since its fast
tokenizers run this same library: a text alone, batches of texts, and (question, passage) windows.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from citeqa.indexing.errors import CiteqaError

if TYPE_CHECKING:
    from tokenizers import Encoding
    from tokenizers import Tokenizer as Backend

# Batches are padded to a multiple of 16 tokens: the CPU kernels (oneDNN under torch and OpenVINO) take a
# slower path on odd lengths. Side by side on SQuAD dev text (docs/benchmarks.md#padded-lengths): a
# question's 4 reader windows (98-148 tokens) 21.2 -> 14.3 ms p50 on OpenVINO and 26.2 -> 22.1 on torch; a
# query's embedding 3.3 -> 2.5 ms on OpenVINO. Padding is masked, so outputs move only by rounding (reader
# logits by at most 0.06 in bf16, embeddings by 0.0015) and no best span changed.
PAD_TO_MULTIPLE_OF = 16

Inputs = dict[str, np.ndarray]  # input_ids, token_type_ids, attention_mask: rows x tokens, int64


class Tokenizer(Protocol):
    """What chunking needs of a tokenizer: the character span of each token of a text."""

    def offsets(self, text: str) -> Sequence[tuple[int, int]]: ...


@dataclass(frozen=True)
class Windows:
    """(question, passage) windows, one or more per passage (a long passage overflows into the next)."""

    inputs: Inputs
    passage_of: list[int]  # each window's passage
    offsets: np.ndarray  # windows x tokens x 2: each token's characters in its passage or question
    in_passage: np.ndarray  # windows x tokens: True for the passage's tokens


class ModelTokenizer:
    """A model folder's tokenizer, safe to call from many threads at once.

    The library keeps truncation and padding as a tokenizer's state, and changing it while another thread
    encodes fails ("Already borrowed": huggingface/tokenizers#537). So each way of calling it (no limits; a
    length, stride and strategy) gets a copy of its own, set up once and never changed, and encoding only
    reads them: the threads run in parallel without a copy each.
    """

    def __init__(self, model_path: Path) -> None:
        from tokenizers import Tokenizer as Backend

        if not (model_path / "tokenizer.json").is_file():
            raise CiteqaError(
                f"no tokenizer.json in {model_path}: citeqa reads a model's fast tokenizer only"
            )
        self._file = str(model_path / "tokenizer.json")
        self._plain = Backend.from_file(self._file)  # its file's own truncation and padding switched off
        self._plain.no_truncation()
        self._plain.no_padding()
        try:
            config = json.loads((model_path / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
        self._pad_token = str(config.get("pad_token") or "[PAD]")
        self.pad_id = self._plain.token_to_id(self._pad_token) or 0
        self._limited: dict[tuple[int, int, str, int], Backend] = {}
        self._lock = threading.Lock()

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """The text's tokens' character spans, no special tokens."""
        return [(int(s), int(e)) for s, e in self._plain.encode(text, add_special_tokens=False).offsets]

    def batch(self, texts: Sequence[str], max_length: int) -> Inputs:
        """Each text truncated to `max_length` tokens, padded to the longest (a multiple of 16)."""
        return _inputs(
            self._with(max_length, 0, "longest_first", PAD_TO_MULTIPLE_OF).encode_batch(list(texts))
        )

    def windows(
        self, question: str, passages: Sequence[str], max_length: int, stride: int, pad_to_multiple_of: int
    ) -> Windows:
        """The question with each passage, a passage longer than a window continued in the next (`stride`
        tokens shared); every window padded to the longest, a multiple of `pad_to_multiple_of`."""
        limited = self._with(max_length, stride, "only_second", pad_to_multiple_of)
        windows, passage_of = [], []
        for passage, encoding in enumerate(limited.encode_batch([(question, p) for p in passages])):
            windows += [encoding, *encoding.overflowing]
            passage_of += [passage] * (1 + len(encoding.overflowing))
        return Windows(
            inputs=_inputs(windows),
            passage_of=passage_of,
            offsets=np.array([w.offsets for w in windows], dtype=np.int64).reshape(len(windows), -1, 2),
            in_passage=np.array([[s == 1 for s in w.sequence_ids] for w in windows], dtype=bool),
        )

    def _with(self, max_length: int, stride: int, strategy: str, pad_to_multiple_of: int) -> Backend:
        key = (max_length, stride, strategy, pad_to_multiple_of)
        limited = self._limited.get(key)
        if limited is None:
            from tokenizers import Tokenizer as Backend

            with self._lock:
                limited = self._limited.get(key)
                if limited is None:
                    limited = Backend.from_file(self._file)
                    limited.enable_truncation(max_length, stride=stride, strategy=strategy)
                    limited.enable_padding(
                        pad_id=self.pad_id, pad_token=self._pad_token, pad_to_multiple_of=pad_to_multiple_of
                    )
                    self._limited[key] = limited
        return limited


def _inputs(encodings: Sequence[Encoding]) -> Inputs:
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }
