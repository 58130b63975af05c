"""The OpenAI-compatible chat endpoint: cited Markdown replies, structured citations, SSE streaming."""

from __future__ import annotations

import json

import pytest
from citeqa.service.api.internal.errors import ApiError
from citeqa.service.api.routers.chat import _question, chat_citations, render_markdown
from citeqa.service.qa.types import AskResult
from citeqa.service.wire import ChatCitation, ChatCompletionRequest
from fastapi.testclient import TestClient

from tests.service.outcome_fakes import CONFIDENT, NONE, NOT_SURE, OutcomePipeline

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


# Unit tests of the reply's wording on a pipeline without models (tests/service/outcome_fakes.py).


def _reply(question: str, best_guess: bool = False) -> tuple[str, list[ChatCitation], AskResult]:
    result = OutcomePipeline().ask(question, best_guess=best_guess)
    citations = chat_citations(result, "http://h")
    return render_markdown(result, citations, "http://h"), citations, result


def test_markdown_of_a_confident_answer_claims_it_plainly() -> None:
    content, citations, _ = _reply(CONFIDENT)
    assert content.startswith("**14 days** [1]")
    assert "Not sure" not in content.split("\n")[0]
    assert [c.confidence_level for c in citations] == ["answer", "not_sure"]
    # The alternative below the threshold is marked, in the list and in its source line.
    assert "5 euros [2] (not sure)" in content
    assert "(probability 0.40, not sure)" in content and "(probability 0.90)" in content


def test_markdown_of_a_not_sure_answer_says_so_with_its_probability_and_source() -> None:
    content, citations, _ = _reply(NOT_SURE)
    first, answer_line = content.split("\n")[:3:2]
    assert first == "**Not sure.** Low confidence — check the source. Best guess, probability 0.45:"
    assert answer_line == "**5 euros** [1]"
    assert "**Sources**" in content and citations[0].url in content
    assert "“Shipping costs **5 euros**.”" in content  # the cited sentence, the answer in bold


def test_markdown_of_no_answer_claims_no_more_than_the_search_found() -> None:
    content, citations, result = _reply(NONE)
    assert citations == [] and result.no_answer
    assert content.startswith("I found no answer in the documents.")
    assert "do not answer" not in content
    assert "*Refund policy*" in content and "Reply *best guess*" in content
    guess, citations, _ = _reply(NONE, best_guess=True)
    assert guess.startswith("**Not sure.**") and "**Berlin** [1]" in guess
    assert citations[0].confidence_level == "not_sure" and citations[0].score == 0.12


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (["How much?"], ("How much?", False)),
        (["How much?", "best guess"], ("How much?", True)),
        (["How much?", " Guess! "], ("How much?", True)),
        (
            ["How much?", "What is the best guess for the fee?"],
            ("What is the best guess for the fee?", False),
        ),
    ],
)
def test_a_reply_of_best_guess_asks_the_previous_question_again(
    messages: list[str], expected: tuple[str, bool]
) -> None:
    body = ChatCompletionRequest(messages=[{"role": "user", "content": m} for m in messages])  # type: ignore[list-item]
    assert _question(body) == expected


def test_best_guess_with_no_question_before_it_is_refused() -> None:
    body = ChatCompletionRequest(messages=[{"role": "user", "content": "best guess"}])  # type: ignore[list-item]
    with pytest.raises(ApiError) as error:
        _question(body)
    assert error.value.status == 422
