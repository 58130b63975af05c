"""The models are shared by the inference worker pool: many threads at once must get what one gets."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from citeqa.indexing.embedding import Embedder
from citeqa.service.qa.reader import Reader, SpanCandidate

pytestmark = pytest.mark.integration

THREADS = 8
# Calls per thread. The race it guards against showed about once in 1,000 reads; CITEQA_STRESS_CALLS
# raises the count for a long soak (the default keeps the suite within its time budget on 2 cores).
CALLS = int(os.environ.get("CITEQA_STRESS_CALLS", "40"))


def _inputs(seed_text: str) -> list[tuple[str, list[str]]]:
    """Questions over 1-5 passages of varied length, so each call pads and truncates differently."""
    sentences = [s.strip() for s in seed_text.split(".") if len(s.strip()) > 20]
    questions = ["Which city was the first pilot city?", "What does the plan cover?", "When?", "Who?"]
    cases = []
    for i in range(24):
        passages = [". ".join(sentences[i * 3 + j : i * 3 + j + 1 + i % 4]) for j in range(1 + i % 5)]
        cases.append((questions[i % len(questions)] * (1 + i % 3), passages))
    return cases


def _key(candidates: list[SpanCandidate]) -> list[tuple[int, int, int, float]]:
    return [(c.passage_index, c.start, c.end, round(c.score, 3)) for c in candidates[:5]]


def _hammer(work: list[int], call: object) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def run(thread: int) -> None:
        barrier.wait()  # all threads start together, so calls overlap from the first one
        for n in range(CALLS):
            try:
                call(work[(thread * 7 + n) % len(work)])  # type: ignore[operator]
            except BaseException as exc:
                errors.append(exc)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(run, range(THREADS)))
    return errors


def test_reader_from_many_threads_matches_single_thread(reader: Reader, seed_text: str) -> None:
    cases = _inputs(seed_text)
    expected = [_key(reader.read(q, p)) for q, p in cases]
    mismatches: list[int] = []

    def call(i: int) -> None:
        if _key(reader.read(*cases[i])) != expected[i]:
            mismatches.append(i)

    errors = _hammer(list(range(len(cases))), call)
    assert errors == []
    assert mismatches == []


def test_embedder_from_many_threads_matches_single_thread(embedder: Embedder, seed_text: str) -> None:
    cases = [[q, *p] for q, p in _inputs(seed_text)]
    expected = [embedder.embed(texts) for texts in cases]
    mismatches: list[int] = []

    def call(i: int) -> None:
        if not np.allclose(embedder.embed(cases[i]), expected[i], atol=1e-5):
            mismatches.append(i)
        # Chunking counts tokens with the same tokenizer, from whichever thread indexes.
        embedder.tokenizer.offsets(cases[i][1])

    errors = _hammer(list(range(len(cases))), call)
    assert errors == []
    assert mismatches == []
