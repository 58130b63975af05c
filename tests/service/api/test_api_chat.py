"""The OpenAI-compatible chat endpoint: cited Markdown replies, structured citations, SSE streaming."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

QUESTION = "Which city was the first Made in China 2025 pilot demonstration city?"


def _chat(client: TestClient, question: str, **extra: object):  # type: ignore[no-untyped-def]
    messages = [
        {"role": "system", "content": "Answer from the documents."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": question},
    ]
    return client.post("/v1/chat/completions", json={"model": "citeqa", "messages": messages, **extra})


def test_chat_reply_is_cited_markdown(client: TestClient, seed_text: str) -> None:
    response = _chat(client, QUESTION, temperature=0.2)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    content = body["choices"][0]["message"]["content"]
    assert content.startswith("**Ningbo** [1]")
    assert "**Sources**" in content
    citation = body["citations"][0]
    assert citation["quote"] == "Ningbo" == seed_text[citation["start"] : citation["end"]]
    assert citation["url"] in content
    assert citation["url"].startswith("http://127.0.0.1/v1/documents/")
    assert body["no_answer"] is False


def test_chat_says_plainly_when_documents_do_not_answer(client: TestClient) -> None:
    body = _chat(client, "What is the boiling point of mercury on Mars?").json()
    assert body["no_answer"] is True
    assert body["citations"] == []
    assert body["confidence_level"] == "none"
    content = body["choices"][0]["message"]["content"]
    assert content.startswith("I found no answer in the documents.")
    assert "Reply *best guess*" in content


def test_chat_best_guess_by_reply_or_by_field(client: TestClient) -> None:
    """A chat tool that cannot send `best_guess` replies "best guess" to the question it was not answered."""
    question = "What is the boiling point of mercury on Mars?"
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": "I found no answer"}]
    reply = client.post(
        "/v1/chat/completions", json={"messages": [*messages, {"role": "user", "content": "Best guess?"}]}
    ).json()
    field = client.post("/v1/chat/completions", json={"messages": messages[:1], "best_guess": True}).json()
    for body in (reply, field):
        assert body["no_answer"] is False and body["confidence_level"] == "not_sure"
        assert body["citations"][0]["confidence_level"] == "not_sure"
        assert body["choices"][0]["message"]["content"].startswith("**Not sure.** Low confidence")
    assert reply["citations"] == field["citations"]


def test_chat_accepts_content_parts(client: TestClient) -> None:
    parts = [{"type": "text", "text": QUESTION}]
    body = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": parts}]}).json()
    assert body["citations"][0]["quote"] == "Ningbo"


def test_chat_streams_server_sent_events(client: TestClient) -> None:
    plain = _chat(client, QUESTION).json()
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": QUESTION}], "stream": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert content == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["citations"][0]["quote"] == "Ningbo"


def test_chat_errors(client: TestClient) -> None:
    no_user = client.post("/v1/chat/completions", json={"messages": [{"role": "system", "content": "hi"}]})
    assert no_user.status_code == 422
    assert no_user.json()["error"]["code"] == "no_user_message"
    assert client.post("/v1/chat/completions", json={"messages": []}).status_code == 422
    empty = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": " "}]})
    assert empty.status_code == 422
    assert empty.json()["error"]["code"] == "invalid_question"


def test_models_lists_the_one_model(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["citeqa"]
