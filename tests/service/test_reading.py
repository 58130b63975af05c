from __future__ import annotations

import numpy as np
import pytest
from citeqa.service.qa.reader import Reader, WindowLogits, decode_window
from citeqa.service.settings import Settings
from pydantic import ValidationError


def _window(start: list[float], end: list[float], mask: list[bool]) -> WindowLogits:
    offsets = [(0, 0)] + [(i * 5, i * 5 + 4) for i in range(len(start) - 1)]
    return WindowLogits(0, np.array(start), np.array(end), offsets, np.array(mask))


def test_decode_picks_best_valid_pair_and_null_score() -> None:
    # token 0 is [CLS]; tokens 1-2 belong to the question; 3-6 to the passage.
    window = _window(
        start=[1.0, 9.0, 0.0, 0.0, 5.0, 0.0, 0.0],
        end=[2.0, 0.0, 9.0, 0.0, 0.0, 6.0, 7.0],
        mask=[False, False, False, True, True, True, True],
    )
    best = decode_window(window, n_best=5, max_answer_tokens=5)[0]
    # Question tokens are never part of an answer even with high logits.
    assert (best.start, best.end) == (15, 29)  # token 4 .. token 6
    assert best.score == 12.0 and best.null_score == 3.0 and best.margin == 9.0


def test_decode_respects_max_answer_length_and_order() -> None:
    # Tokens 1-3 span chars (0,4), (5,9), (10,14). The best pair overall, tokens 1..3 (score 10), is
    # three tokens long: over the limit of 2, so it must be missing; the rest come best first.
    window = _window(start=[0.0, 5.0, 1.0, 0.0], end=[0.0, 0.0, 2.0, 5.0], mask=[False, True, True, True])
    spans = decode_window(window, n_best=10, max_answer_tokens=2)
    assert [(s.start, s.end) for s in spans] == [(0, 9), (5, 14), (0, 4), (10, 14), (5, 9)]
    assert [s.score for s in spans] == [7.0, 6.0, 5.0, 5.0, 3.0]


def test_padding_multiple_is_a_power_of_two_so_padded_windows_stay_within_512_tokens() -> None:
    for good in (1, 16, 128):
        assert Settings(reader_pad_to_multiple_of=good).reader_pad_to_multiple_of == good
    for bad in (0, 48, 256):  # 48: a 510-token window would be padded to 528
        with pytest.raises(ValidationError):
            Settings(reader_pad_to_multiple_of=bad)


@pytest.mark.integration
def test_reader_finds_the_span_in_one_batch(reader: Reader) -> None:
    passages = [
        "The committee meets every spring in Lisbon.",
        "After Ningbo became the first pilot demonstration city in August 2016, Wuhan followed.",
    ]
    candidates = reader.read("Which city became the first pilot demonstration city?", passages)
    best = candidates[0]
    assert passages[best.passage_index][best.start : best.end] == "Ningbo"
    assert best.margin > 0


@pytest.mark.integration
def test_padded_windows_give_the_spans_of_unpadded_ones(
    reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    import citeqa.service.qa.reader as reading

    assert isinstance(reader, reading.WindowReader)
    widths: list[int] = []
    forward = reader._forward

    def recording_forward(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        widths.append(inputs["input_ids"].shape[1])
        return forward(inputs)

    monkeypatch.setattr(reader, "_forward", recording_forward)
    question = "How many days of annual leave do new staff get?"
    passages = [
        "New staff get 25 days of annual leave, rising by one day for each full year of service up to 30.",
        "Leave requests go to your line manager at least two weeks ahead.",
    ]
    multiple = reader.pad_to_multiple_of
    padded = reader.read(question, passages)
    monkeypatch.setattr(reader, "pad_to_multiple_of", 1)
    unpadded = reader.read(question, passages)
    assert widths[1] % multiple != 0  # else this test would not see the padding
    assert widths[0] == -(-widths[1] // multiple) * multiple

    def margins(candidates: list[reading.SpanCandidate]) -> dict[tuple[int, int, int], float]:
        return {(c.passage_index, c.start, c.end): c.margin for c in candidates}

    # The same best span; every span scored both ways within bf16's rounding (the rest may swap places).
    assert margins(padded[:1]).keys() == margins(unpadded[:1]).keys()
    with_padding, without = margins(padded), margins(unpadded)
    both = with_padding.keys() & without.keys()
    assert len(both) >= 10
    assert all(abs(with_padding[span] - without[span]) < 0.2 for span in both)
