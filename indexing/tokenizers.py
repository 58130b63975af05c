"""Tokenizers that are safe to share between the threads of the inference pool."""

from __future__ import annotations

import copy
import threading
from typing import Any


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
