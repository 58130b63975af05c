"""M3 and the low items about stored input: huge words, feedback floods, upload names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from citeqa.service.cli import main

from tests.service.api.conftest import API_KEY, ClientFactory

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def upload(client, name: str, data: bytes):  # type: ignore[no-untyped-def]
    return client.post("/v1/documents", headers=AUTH, files={"file": (name, data, "text/plain")})


def test_one_huge_word_gives_small_responses(writable_client: ClientFactory) -> None:
    """M3: a 300,000-character "word" is one tokenizer token; it made one chunk, and every answer,
    passage and search hit quoted all of it (an 85 MB /v1/ask for a 9.5 MB word)."""
    client = writable_client()
    word = "Q" * 300_000
    text = f"Harbor notes.\n\nThe code word is {word} and nothing else.\n"
    assert upload(client, "huge.txt", text.encode()).status_code == 201
    question = {"question": "What is the code word?", "document_ids": ["huge.txt"], "max_answers": 3}
    asked = client.post("/v1/ask", json=question)
    searched = client.get("/v1/search", params={"q": "code word", "top_k": 20})
    chat = client.post(
        "/v1/chat/completions",
        json={"model": "citeqa", "messages": [{"role": "user", "content": "What is the code word?"}]},
    )
    for response in (asked, searched, chat):
        assert response.status_code == 200, response.text[:300]
        assert len(response.content) < 100_000, len(response.content)
    assert any("Q" * 100 in p["text"] for p in asked.json()["passages"])  # the word is still found


def test_feedback_store_has_a_size_cap(writable_client: ClientFactory) -> None:
    client = writable_client(max_feedback_bytes=64 * 1024)
    comment = "c" * 2000
    statuses = [
        client.post(
            "/v1/feedback", json={"question": "q?", "answer": "a", "correct": True, "comment": comment}
        ).status_code
        for _ in range(60)
    ]
    assert statuses[0] == 201 and statuses[-1] == 507
    assert statuses.index(507) > 10
    db = client.app.state.citeqa.settings.resolved_feedback_db  # type: ignore[attr-defined]
    assert db.stat().st_size < 2 * 64 * 1024
    too_long = {"question": "q?", "answer": "a", "correct": True, "comment": "c" * 2001}
    assert client.post("/v1/feedback", json=too_long).status_code == 422


def test_feedback_export_says_what_it_left_out(
    writable_client: ClientFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = writable_client()
    for correct in (True, False):
        body = {"question": "Which city?", "answer": "Ningbo", "correct": correct}
        assert client.post("/v1/feedback", json=body).status_code == 201
    monkeypatch.setenv("CITEQA_DATA_DIR", str(client.app.state.citeqa.settings.data_dir))  # type: ignore[attr-defined]
    assert main(["feedback", "export", "-o", str(tmp_path / "f.jsonl")]) == 0
    message = capsys.readouterr().err
    assert "exported 1 feedback items" in message
    assert "left out 1 answers marked wrong" in message and "--include-rejected" in message


def test_unicode_upload_names_are_kept_and_collisions_refused(writable_client: ClientFactory) -> None:
    client = writable_client()
    first, second = upload(client, "aé.txt", b"First text."), upload(client, "añ.txt", b"Second text.")
    assert (first.status_code, second.status_code) == (201, 201)
    assert {first.json()["document"]["id"], second.json()["document"]["id"]} == {"aé.txt", "añ.txt"}
    # Two names that both become a_b.txt: the second is refused, not silently put in the first's place.
    assert upload(client, "a?b.txt", b"Third text.").status_code == 201
    clash = upload(client, "a*b.txt", b"Fourth text.")
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "name_collision"
    assert client.get("/v1/documents/a_b.txt").json()["text"] == "Third text."
    # The same name again replaces, as before.
    again = upload(client, "aé.txt", b"First text, revised.")
    assert again.status_code == 201 and again.json()["replaced"] is True


@pytest.mark.parametrize("suffix", [".txt", ".html", ".pdf"])
def test_long_upload_names_keep_their_type(writable_client: ClientFactory, suffix: str) -> None:
    client = writable_client()
    data = b"<p>Long named.</p>" if suffix == ".html" else b"Long named."
    response = upload(client, "n" * 250 + suffix, data)
    if suffix == ".pdf":  # not a PDF: refused as unreadable, not as "unsupported type"
        assert response.status_code == 422 and response.json()["error"]["code"] == "unreadable_document"
        return
    assert response.status_code == 201, response.text
    doc_id = response.json()["document"]["id"]
    assert doc_id.endswith(suffix) and len(doc_id.encode()) <= 200
    assert client.get(f"/v1/documents/{doc_id}").json()["text"] == "Long named."


def test_uploads_do_not_shadow_corpus_documents(writable_client: ClientFactory) -> None:
    """An upload named like a corpus file replaced it, and deleting the upload deleted the corpus file's
    document too. Now the upload is refused until the corpus document is deleted explicitly."""
    from tests.conftest import SEED_DOC_ID

    client = writable_client()
    refused = upload(client, SEED_DOC_ID, b"Not the seed document.")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "document_in_corpus"
    assert "Ningbo" in client.get(f"/v1/documents/{SEED_DOC_ID}").json()["text"]
    assert client.delete(f"/v1/documents/{SEED_DOC_ID}", headers=AUTH).status_code == 200
    assert upload(client, SEED_DOC_ID, b"A replacement, made explicit.").status_code == 201
    assert (
        json.loads(client.get(f"/v1/documents/{SEED_DOC_ID}").text)["text"] == "A replacement, made explicit."
    )
