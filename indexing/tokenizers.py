"""Tokenizers that are safe to share between the threads of the inference pool."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any

# Batches are padded to a multiple of 16 tokens: the CPU kernels (oneDNN under torch and OpenVINO) take a
# slower path on odd lengths. Side by side on SQuAD dev text (docs/benchmarks.md#padded-lengths): a
# question's 4 reader windows (98-148 tokens) 21.2 -> 14.3 ms p50 on OpenVINO and 26.2 -> 22.1 on torch; a
# query's embedding 3.3 -> 2.5 ms on OpenVINO. Padding is masked, so outputs move only by rounding (reader
# logits by at most 0.06 in bf16, embeddings by 0.0015) and no best span changed.
PAD_TO_MULTIPLE_OF = 16


class PerThreadTokenizer:
    """Hands each thread its own copy of a Hugging Face tokenizer.

    A fast (Rust) tokenizer keeps truncation and padding as state that every call sets, so two threads
    sharing one can change it under each other's call in flight ("Already borrowed", or a batch that
    comes back unpadded: huggingface/tokenizers#537). A lock would serialise tokenization; a copy per
    thread (made once, about 0.1 s and a few MB) keeps the workers fully parallel. The original is
    never called, only copied, so its state never changes while a copy is taken.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._original = tokenizer
        self._local = threading.local()

    def get(self) -> Any:
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            tokenizer = self._local.tokenizer = copy.deepcopy(self._original)
        return tokenizer


def load_tokenizer(model_path: Path) -> Any:
    """The model folder's tokenizer, by the class its tokenizer_config.json names (BertTokenizer).

    `AutoTokenizer` would read config.json to find that class, and transformers' config module imports torch:
    about 2 s of every start on the OpenVINO path, which otherwise never needs torch. Where the folder names
    no class transformers has, `AutoTokenizer` decides as before.
    """
    import transformers

    try:
        config = json.loads((model_path / "tokenizer_config.json").read_text(encoding="utf-8"))
        named = getattr(transformers, str(config.get("tokenizer_class")), None)
    except (OSError, ValueError, AttributeError):
        named = None
    if isinstance(named, type) and issubclass(named, transformers.PreTrainedTokenizerBase):
        return named.from_pretrained(str(model_path))
    return transformers.AutoTokenizer.from_pretrained(str(model_path))
