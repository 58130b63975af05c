"""The seed evaluation set is well formed and every gold string is verbatim in its document."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from citeqa.eval.datasets import (
    SEED_SET,
    DatasetError,
    answer_sentence,
    load_dataset,
    load_jsonl,
    load_squad,
)
from citeqa.service.settings import REPO_ROOT

SEEDS = REPO_ROOT / "seeds"


def test_seed_set_size_and_balance() -> None:
    items = load_jsonl(SEED_SET).items
    assert len(items) >= 80
    assert len({i.id for i in items}) == len(items)
    assert len({i.question for i in items}) == len(items)
    assert sum(i.answerable for i in items) >= 60
    assert sum(not i.answerable for i in items) >= 15


def test_every_answer_and_evidence_is_verbatim_in_its_document() -> None:
    texts: dict[str, str] = {}
    for item in load_jsonl(SEED_SET).items:
        path = SEEDS / item.doc_id
        assert path.is_file(), f"{item.id}: no document {item.doc_id}"
        text = texts.setdefault(item.doc_id, path.read_text(encoding="utf-8"))
        for answer in item.answers:
            assert answer in text, f"{item.id}: answer {answer!r} is not in {item.doc_id}"
        if item.answerable:
            assert item.evidence, f"{item.id}: answerable but no evidence"
            assert item.evidence in text, f"{item.id}: evidence is not verbatim in {item.doc_id}"
            assert any(a in item.evidence for a in item.answers), f"{item.id}: no answer inside the evidence"
        else:
            assert item.evidence is None, f"{item.id}: unanswerable items carry no evidence"


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": "a", "question": "q", "answers": [], "doc_id": "d"}\n{"id": "b"\n', encoding="utf-8"
    )
    with pytest.raises(DatasetError, match=r"bad.jsonl:2: not valid JSON \(.* at column \d+\)"):
        load_jsonl(bad)
    bad.write_text('{"id": "a", "question": "q", "answers": "x", "doc_id": "d"}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match="'answers' must be a list"):
        load_jsonl(bad)
    with pytest.raises(DatasetError, match="does not exist"):
        load_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(DatasetError, match="is a folder; give the question file"):
        load_jsonl(tmp_path)


def test_a_jsonl_part_and_the_documents_beside_it(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "leave.md").write_text("# Leave\n\nStaff get 25 days of leave.\n", encoding="utf-8")
    records = [
        {"id": "a", "question": "How many days?", "answers": ["25 days"], "doc_id": "leave.md"},
        {"id": "b", "question": "Who approves?", "answers": [], "doc_id": "leave.md"},
    ]
    for record, split in zip(records, ("fit", "test"), strict=True):
        record["split"] = split
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    fit = load_dataset(f"{path}:fit")
    assert fit.name == "questions.jsonl:fit" and [i.id for i in fit.items] == ["a"]
    # The set carries its own corpus, every document of it whatever the part, to be indexed on its own.
    assert [d.id for d in fit.documents or []] == ["leave.md"]
    assert [i.id for i in load_dataset(path).items] == ["a", "b"]
    with pytest.raises(DatasetError, match="no questions in part 'dev'"):
        load_dataset(f"{path}:dev")
    # The seed set has no documents beside it: it is asked of the configured index.
    assert load_jsonl(SEED_SET).documents is None


SQUAD = {
    "version": "v2.0",
    "data": [
        {
            "title": "Harbours",
            "paragraphs": [
                {
                    "context": "Ningbo has a deep port. It opened in 1973. Ships call daily.",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "When did the port open?",
                            "answers": [
                                {"text": "1973", "answer_start": 37},
                                {"text": "1973", "answer_start": 37},
                            ],
                        },
                        {"id": "q2", "question": "Who owns it?", "answers": [], "is_impossible": True},
                    ],
                },
                {"context": "Second paragraph.", "qas": []},
            ],
        }
    ],
}


def test_squad_paragraphs_become_documents(tmp_path: Path) -> None:
    path = tmp_path / "tiny.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump(SQUAD, handle)
    loaded = load_dataset(path)
    assert loaded.documents is not None
    assert [d.id for d in loaded.documents] == ["Harbours/0", "Harbours/1"]
    q1, q2 = loaded.items
    assert q1.answers == ("1973",)  # repeated annotator answers kept once
    assert q1.evidence == "It opened in 1973."
    assert q1.doc_id == "Harbours/0"
    assert not q2.answerable and q2.evidence is None
    assert loaded.limited(1).items == [q1] and len(loaded.limited(1).documents or []) == 2


def test_squad_rejects_other_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"rows": []}', encoding="utf-8")
    with pytest.raises(DatasetError, match="not SQuAD format"):
        load_squad(path)


def test_answer_sentence_falls_back_to_the_answer() -> None:
    assert answer_sentence("One. Two three. Four.", 5, "Two") == "Two three."
    assert answer_sentence("One. Two three. Four.", 0, "Two") == "Two"  # offset does not match
