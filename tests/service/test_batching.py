"""ForwardBatcher: concurrent questions share forward passes, and each gets exactly its own logits back."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from citeqa.service.qa.batching import ForwardBatcher, Inputs, Logits


class RecordingModel:
    """A stand-in forward pass whose logits are a function of each row's own tokens only (as a real
    model's are, given the attention mask), so a caller can check it got its own rows back."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.batches: list[tuple[int, int]] = []  # (rows, tokens) of each call
        self.lock = threading.Lock()

    def __call__(self, inputs: Inputs) -> Logits:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        with self.lock:
            self.batches.append(ids.shape)
        if self.fail_on is not None and (ids == self.fail_on).any():
            raise ValueError("the model failed")
        time.sleep(self.delay)
        start = np.where(mask == 1, ids * 2.0, -1e4).astype(np.float32)
        return start, start + 1


def expected(ids: np.ndarray) -> np.ndarray:
    return ids * 2.0


def make_inputs(value: int, rows: int, tokens: int) -> Inputs:
    ids = np.full((rows, tokens), value, dtype=np.int64)
    ids[:, 0] = 101
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def submit(batcher: ForwardBatcher, inputs: Inputs) -> Logits:
    batcher.expect()
    return batcher.submit(inputs)


def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    model = RecordingModel(delay=0.02)
    batcher = ForwardBatcher(model, pad={"input_ids": 0}, max_rows=16, wait_s=0.005)
    cases = [make_inputs(value=i + 1, rows=1 + i % 4, tokens=5 + i % 7) for i in range(40)]
    start = threading.Barrier(8)

    def call(i: int) -> bool:
        if i < 8:
            start.wait()
        got_start, got_end = submit(batcher, cases[i])
        ids = cases[i]["input_ids"]
        return (
            got_start.shape == ids.shape
            and np.array_equal(got_start, expected(ids))
            and np.array_equal(got_end, expected(ids) + 1)
        )

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(len(cases))))
    batcher.close()
    assert all(results)
    assert batcher.requests == len(cases)
    # Merged: fewer forward passes than questions, none over the bound.
    assert batcher.batches < len(cases)
    assert all(rows <= 16 for rows, _ in model.batches)
    assert max(rows for rows, _ in model.batches) > 4


def test_a_request_larger_than_the_bound_runs_alone() -> None:
    model = RecordingModel()
    batcher = ForwardBatcher(model, pad={}, max_rows=2)
    got, _ = submit(batcher, make_inputs(3, rows=5, tokens=4))
    batcher.close()
    assert got.shape == (5, 4) and model.batches == [(5, 4)]


def test_a_lone_client_does_not_wait() -> None:
    # A wait of 10 s would show in a lone call if the batcher waited for company that is not coming.
    batcher = ForwardBatcher(RecordingModel(), pad={}, wait_s=10.0)
    started = time.monotonic()
    for value in range(3):
        submit(batcher, make_inputs(value, rows=2, tokens=3))
    batcher.close()
    assert time.monotonic() - started < 5.0
    assert batcher.batches == 3


def test_waits_for_a_question_being_tokenized() -> None:
    model = RecordingModel()
    batcher = ForwardBatcher(model, pad={"input_ids": 0}, max_rows=8, wait_s=10.0)
    batcher.expect()  # a second question has entered the reader and is still being tokenized
    results: list[Logits] = []
    first = threading.Thread(target=lambda: results.append(submit(batcher, make_inputs(1, 2, 3))))
    first.start()
    time.sleep(0.1)
    second = batcher.submit(make_inputs(2, 1, 6))  # its `expect` was the one above
    first.join()
    batcher.close()
    assert model.batches == [(3, 6)]  # one forward pass, padded to the longer question
    assert np.array_equal(results[0][0], expected(make_inputs(1, 2, 3)["input_ids"]))
    assert np.array_equal(second[0], expected(make_inputs(2, 1, 6)["input_ids"]))


def test_a_failed_tokenization_stops_the_wait() -> None:
    batcher = ForwardBatcher(RecordingModel(), pad={}, wait_s=10.0)
    batcher.expect()
    timer = threading.Timer(0.1, batcher.unexpect)
    timer.start()
    started = time.monotonic()
    submit(batcher, make_inputs(1, 1, 3))
    batcher.close()
    assert time.monotonic() - started < 5.0


def test_an_error_reaches_every_caller_of_its_batch_and_the_batcher_goes_on() -> None:
    model = RecordingModel(fail_on=666)
    batcher = ForwardBatcher(model, pad={}, wait_s=0.0)
    with pytest.raises(ValueError, match="the model failed"):
        submit(batcher, make_inputs(666, 1, 3))
    got, _ = submit(batcher, make_inputs(2, 1, 3))
    batcher.close()
    assert np.array_equal(got, expected(make_inputs(2, 1, 3)["input_ids"]))


def test_closed_batcher_refuses_work() -> None:
    batcher = ForwardBatcher(RecordingModel(), pad={})
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        submit(batcher, make_inputs(1, 1, 3))
