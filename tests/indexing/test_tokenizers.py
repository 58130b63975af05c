"""`ModelTokenizer` encodes as transformers' tokenizer of the same folder does, for each of the three calls
the service makes, from many threads at once, and without importing transformers or torch."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from citeqa.indexing.embedding import default_embedder_path
from citeqa.indexing.errors import CiteqaError
from citeqa.indexing.tokenizers import ModelTokenizer
from citeqa.service.settings import Settings
from transformers import AutoTokenizer

QUESTION = "How many days of annual leave do new starters get?"
PASSAGES = [
    "4.2 Annual leave. New starters get 25 days' annual leave, rising to 27 after six years' service. " * 6,
    "Holidays of more than two weeks in a row need your department head's approval.",
    "naïve café — “quotes” 你好 🙂 e\u0301clair\u00a0x\t\n",
]


@pytest.fixture(
    scope="module", params=[Settings().reader_path, default_embedder_path()], ids=["reader", "embedder"]
)
def folder(request: pytest.FixtureRequest) -> Path:
    return Path(request.param)


def test_windows_are_transformers_windows(folder: Path) -> None:
    ours, theirs = ModelTokenizer(folder), AutoTokenizer.from_pretrained(str(folder))
    for max_length, stride, multiple in [(64, 16, 16), (384, 128, 16), (48, 8, 1)]:
        windows = ours.windows(QUESTION, PASSAGES, max_length, stride, multiple)
        expected = theirs(
            [QUESTION] * len(PASSAGES), PASSAGES, truncation="only_second", max_length=max_length,
            stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True, padding="longest",
            pad_to_multiple_of=multiple, return_tensors="np",
        )  # fmt: skip
        assert windows.passage_of == expected["overflow_to_sample_mapping"].tolist()
        assert all(
            np.array_equal(windows.inputs[key], expected[key]) for key in expected if key in windows.inputs
        )
        assert set(windows.inputs) == {"input_ids", "token_type_ids", "attention_mask"}
        assert np.array_equal(windows.offsets, expected["offset_mapping"])
        in_passage = [[s == 1 for s in expected.sequence_ids(i)] for i in range(len(windows.passage_of))]
        assert windows.in_passage.tolist() == in_passage
    assert len(ours.windows(QUESTION, PASSAGES, 64, 16, 16).passage_of) > len(PASSAGES), (
        "the long one overflows"
    )


def test_batches_and_plain_offsets_are_transformers_ones(folder: Path) -> None:
    ours, theirs = ModelTokenizer(folder), AutoTokenizer.from_pretrained(str(folder))
    texts = [QUESTION, *PASSAGES, ""]
    expected = theirs(
        texts,
        padding=True,
        pad_to_multiple_of=16,
        truncation="longest_first",
        max_length=48,
        return_tensors="np",
    )
    batch = ours.batch(texts, 48)
    assert batch["input_ids"].shape[1] == 48 and all(np.array_equal(batch[k], expected[k]) for k in batch)
    for text in texts:
        plain = theirs(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        assert ours.offsets(text) == [tuple(span) for span in plain]
    assert ours.pad_id == theirs.pad_token_id


def test_threads_share_one_tokenizer() -> None:
    """The library keeps truncation and padding as state: calls with other limits must not change a call's."""
    tokenizer = ModelTokenizer(Settings().reader_path)
    limits = [(64, 16, 16), (384, 128, 16), (48, 8, 1), (96, 32, 8)]
    expected = {limit: tokenizer.windows(QUESTION, PASSAGES, *limit).inputs["input_ids"] for limit in limits}

    def call(i: int) -> bool:
        limit = limits[i % len(limits)]
        return np.array_equal(
            tokenizer.windows(QUESTION, PASSAGES, *limit).inputs["input_ids"], expected[limit]
        )

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(call, range(400)))


def test_tokenizing_imports_neither_transformers_nor_torch() -> None:
    code = (
        "import sys; from pathlib import Path; from citeqa.indexing.tokenizers import ModelTokenizer; "
        f"ModelTokenizer(Path({str(Settings().reader_path)!r})).windows('q', ['p'], 64, 16, 16); "
        "print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_folder_without_a_fast_tokenizer_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CiteqaError, match=r"no tokenizer\.json in"):
        ModelTokenizer(tmp_path)
