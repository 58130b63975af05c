"""Tokenizers loaded by the class their folder names: the same encodings as AutoTokenizer's, without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from citeqa.indexing.embedding import default_embedder_path
from citeqa.indexing.tokenizers import load_tokenizer
from citeqa.service.settings import Settings
from transformers import AutoTokenizer

QUESTIONS = ["How many days of annual leave do new starters get?", "Who signs off a three-week holiday?"]
PASSAGES = [
    "4.2 Annual leave. New starters get 25 days' annual leave, rising to 27 after six years' service. " * 6,
    "Holidays of more than two weeks in a row need your department head's approval.",
]


def model_folders() -> list[Path]:
    return [Settings().reader_path, default_embedder_path()]


@pytest.mark.parametrize("folder", model_folders(), ids=lambda p: p.name)
def test_the_named_class_encodes_as_autotokenizer_does(folder: Path) -> None:
    loaded, auto = load_tokenizer(folder), AutoTokenizer.from_pretrained(str(folder))
    assert type(loaded) is type(auto)
    options = dict(truncation="only_second", max_length=64, stride=16, return_overflowing_tokens=True,
                   return_offsets_mapping=True, padding="longest", pad_to_multiple_of=16,
                   return_tensors="np")  # fmt: skip
    ours, theirs = loaded(QUESTIONS, PASSAGES, **options), auto(QUESTIONS, PASSAGES, **options)
    assert set(ours) == set(theirs) >= {"input_ids", "token_type_ids", "attention_mask", "offset_mapping"}
    assert all(np.array_equal(ours[key], theirs[key]) for key in theirs)
    assert len(ours["input_ids"]) > 2, "the long passage overflows into more windows"
    assert [ours.sequence_ids(i) for i in range(len(ours["input_ids"]))] == [
        theirs.sequence_ids(i) for i in range(len(theirs["input_ids"]))
    ]


def test_a_class_transformers_lacks_falls_back_to_autotokenizer(tmp_path: Path) -> None:
    source = Settings().reader_path
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).symlink_to(source / name)
    config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    unknown = {**config, "tokenizer_class": "NoSuchTokenizer"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(unknown))
    tokenizer = load_tokenizer(tmp_path)
    assert tokenizer(QUESTIONS[0])["input_ids"] == load_tokenizer(source)(QUESTIONS[0])["input_ids"]


def test_loading_a_tokenizer_does_not_import_torch() -> None:
    code = (
        "import sys; from pathlib import Path; from citeqa.indexing.tokenizers import load_tokenizer; "
        f"load_tokenizer(Path({str(Settings().reader_path)!r})); print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "False"
