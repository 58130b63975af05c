"""Fixtures of the evaluation tests: a two-article SQuAD v2.0 file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def write_tiny_squad(path: Path) -> Path:
    data = {
        "version": "v2.0",
        "data": [
            {
                "title": "Ningbo Port",
                "paragraphs": [
                    {
                        "context": "The port of Ningbo opened to foreign trade in 1844. "
                        "Today it handles more cargo than any other port in the world.",
                        "qas": [
                            {
                                "id": "p1",
                                "question": "In what year did the port of Ningbo open to foreign trade?",
                                "answers": [{"text": "1844", "answer_start": 46}],
                            },
                            {
                                "id": "p2",
                                "question": "Who was the first harbour master of Ningbo?",
                                "answers": [],
                                "is_impossible": True,
                            },
                        ],
                    }
                ],
            },
            {
                "title": "Tea",
                "paragraphs": [
                    {
                        "context": "Longjing tea is grown near Hangzhou. It is pan-fired by hand.",
                        "qas": [
                            {
                                "id": "t1",
                                "question": "Where is Longjing tea grown?",
                                "answers": [{"text": "near Hangzhou", "answer_start": 22}],
                            }
                        ],
                    }
                ],
            },
        ],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture()
def tiny_squad(tmp_path: Path) -> Path:
    return write_tiny_squad(tmp_path / "tiny-squad.json")
