"""POST /v1/feedback stores judgements in SQLite; `citeqa feedback export` writes them as eval JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from citeqa.service.cli import main
from fastapi.testclient import TestClient

from tests.service.api.conftest import ClientFactory

pytestmark = pytest.mark.integration


def test_feedback_is_stored_and_exported(
    writable_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = writable_client()
    state = client.app.state.citeqa  # type: ignore[attr-defined]
    items = [
        {
            "question": "Which city was first?",
            "answer": "Ningbo",
            "correct": True,
            "doc_id": "d.txt",
            "start": 1,
            "end": 7,
        },
        {"question": "Who is the minister?", "answer": "", "correct": True, "comment": "not in the text"},
        {"question": "How many cities?", "answer": "three", "correct": False, "comment": "it said 30"},
    ]
    ids = []
    for item in items:
        response = client.post("/v1/feedback", json=item)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    assert ids == sorted(ids) and len(set(ids)) == 3
    db = state.settings.resolved_feedback_db
    assert db.is_file()
    assert state.settings.resolved_index_dir not in db.parents

    monkeypatch.setenv("CITEQA_DATA_DIR", str(state.settings.data_dir))
    out = tmp_path / "feedback.jsonl"
    assert main(["feedback", "export", "-o", str(out)]) == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["question"] for e in exported] == ["Which city was first?", "Who is the minister?"]
    assert exported[0]["answers"] == ["Ningbo"] and exported[0]["doc_id"] == "d.txt"
    assert exported[1]["answers"] == []

    assert main(["feedback", "export", "-o", str(out), "--include-rejected"]) == 0
    everything = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(everything) == 3
    assert everything[2]["answers"] is None
    assert everything[2]["rejected_answers"] == ["three"]
    assert main(["feedback", "export", "-o", str(tmp_path / "no-such-folder" / "f.jsonl")]) == 1
    assert not (tmp_path / "no-such-folder").exists()  # made before, wherever the path pointed


def test_bad_feedback_is_rejected(client: TestClient) -> None:
    bad = [
        {"answer": "x", "correct": True},
        {"question": " ", "answer": "x", "correct": True},
        {"question": "q", "answer": "x", "correct": "maybe"},
        {"question": "q", "answer": "x", "correct": True, "start": 5},
        {"question": "q", "answer": "x", "correct": True, "start": 9, "end": 2},
    ]
    for body in bad:
        response = client.post("/v1/feedback", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["message"]
    assert client.post("/v1/feedback", content="q", headers={"content-type": "text/plain"}).status_code == 415
