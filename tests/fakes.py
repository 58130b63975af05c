"""Stand-ins for the two models, for the unit lane only: they let the pipeline, answering and the API run
in milliseconds with no model files, through the same constructor arguments the real models use."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

import numpy as np
from citeqa.service.qa.reader import SpanCandidate

_WORD = re.compile(r"\w+")


class WordTokenizer:
    """The chunker's view of a tokenizer: one token per word, with its character span."""

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]


class HashingEmbedder:
    """Bag-of-words vectors: each lower-cased word hashed to one of `dimension` buckets, then unit length.
    Texts that share words are near; nothing is learned, so it is only as good as word overlap."""

    def __init__(self, dimension: int = 64, max_tokens: int = 256) -> None:
        self._dimension = dimension
        self._max_tokens = max_tokens

    @property
    def name(self) -> str:
        return f"hashing-{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def tokenizer(self) -> WordTokenizer:
        return WordTokenizer()

    def warm_up(self) -> None:
        pass

    def embed(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        vectors = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
                vectors[row, bucket % self._dimension] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


class FixedSpanReader:
    """Answers from a table: for a question containing a key, every passage holding the key's answer
    text yields that span with a clear margin; any other passage yields its first word, below its
    no-answer score."""

    def __init__(self, answers: Mapping[str, str]) -> None:
        self.answers = {key.lower(): text for key, text in answers.items()}
        self.calls = 0

    def warm_up(self) -> None:
        pass

    def read(self, question: str, passages: Sequence[str]) -> list[SpanCandidate]:
        self.calls += 1
        wanted = [text for key, text in self.answers.items() if key in question.lower()]
        candidates = []
        for index, passage in enumerate(passages):
            found = next((passage.find(text) for text in wanted if text in passage), -1)
            if found >= 0:
                text = next(t for t in wanted if t in passage)
                candidates.append(SpanCandidate(index, found, found + len(text), score=12.0, null_score=2.0))
            elif (word := _WORD.search(passage)) is not None:
                candidates.append(SpanCandidate(index, word.start(), word.end(), score=1.0, null_score=6.0))
        return sorted(candidates, key=lambda c: -c.margin)
