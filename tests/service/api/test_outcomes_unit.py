"""The three outcomes in the front ends without models: over HTTP on the fake models (tests/fakes.py),
and, on the fixed probabilities of tests/service/outcome_fakes.py, the chat reply's wording and citations
and the MCP ask tool; plus the OpenAPI schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from citeqa.service.api import create_app
from citeqa.service.api.internal.errors import ApiError
from citeqa.service.api.routers.chat import _question, chat_citations, render_markdown
from citeqa.service.api.routers.mcp import build_mcp_server
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.query import Query
from citeqa.service.qa.types import AskResult
from citeqa.service.settings import Settings
from citeqa.service.wire import ChatCitation, ChatCompletionRequest
from fastapi.testclient import TestClient
from mcp import Client

from tests.service.api.conftest import LOOPBACK_URL, wait_ready
from tests.service.outcome_fakes import CONFIDENT, NONE, NOT_SURE, OutcomePipeline

ANSWERED = "How much is the water levy?"  # the fake reader's "3 percent", far above its threshold
NOT_ANSWERED = "Who chairs the harbour board?"  # only a first word, below its no-answer score


@pytest.fixture
def fake_client(fake_pipeline: QAPipeline) -> Iterator[TestClient]:
    with TestClient(create_app(pipeline=fake_pipeline), base_url=LOOPBACK_URL) as client:
        wait_ready(client)
        yield client


def test_ask_over_http_gives_each_outcome(fake_client: TestClient) -> None:
    confident = fake_client.post("/v1/ask", json={"question": ANSWERED}).json()
    assert confident["confidence_level"] == "answer" and confident["message"] == ""
    assert confident["answers"][0]["confidence_level"] == "answer"
    none = fake_client.post("/v1/ask", json={"question": NOT_ANSWERED}).json()
    assert none["no_answer"] and none["confidence_level"] == "none"
    assert none["message"] == "I found no answer in the documents."
    guess = fake_client.post("/v1/ask", json={"question": NOT_ANSWERED, "best_guess": True}).json()
    assert not guess["no_answer"] and [a["confidence_level"] for a in guess["answers"]] == ["not_sure"]
    assert guess["message"] == "Low confidence — check the source."
    strict = fake_client.post("/v1/ask", json={"question": ANSWERED, "min_answer_probability": 0.99}).json()
    assert strict["answers"][0]["text"] == "3 percent" and strict["confidence_level"] == "not_sure"
    metrics = fake_client.get("/metrics").text
    for outcome in ("answered", "not_sure", "no_answer"):
        assert f'citeqa_answers_total{{outcome="{outcome}"}}' in metrics


def test_chat_over_http_says_not_sure_and_takes_best_guess(fake_client: TestClient) -> None:
    asked = {"role": "user", "content": NOT_ANSWERED}
    none = fake_client.post("/v1/chat/completions", json={"messages": [asked]}).json()
    assert none["confidence_level"] == "none" and none["citations"] == []
    assert none["choices"][0]["message"]["content"].startswith("I found no answer in the documents.")
    follow_up = [asked, {"role": "assistant", "content": "..."}, {"role": "user", "content": "best guess"}]
    for body in (
        {"messages": follow_up},
        {"messages": [asked], "best_guess": True},
        {"messages": follow_up, "stream": True},
    ):
        response = fake_client.post("/v1/chat/completions", json=body)
        if body.get("stream"):
            last = [line for line in response.text.splitlines() if line.startswith("data: {")][-1]
            assert '"confidence_level": "not_sure"' in last
            continue
        reply = response.json()
        assert reply["confidence_level"] == "not_sure" and reply["no_answer"] is False
        assert reply["citations"][0]["confidence_level"] == "not_sure"
        assert reply["choices"][0]["message"]["content"].startswith("**Not sure.** Low confidence")


def test_openapi_documents_the_confidence_levels(tmp_path: Path) -> None:
    """The schema says which values `confidence_level` takes, per answer and per result (no model needed)."""
    app = create_app(Settings(device="cpu", data_dir=tmp_path))
    schemas = app.openapi()["components"]["schemas"]
    answer = schemas["AnswerOut"]["properties"]["confidence_level"]
    assert answer["enum"] == ["answer", "not_sure"] and "not_sure" in answer["description"]
    assert schemas["AskResponse"]["properties"]["confidence_level"]["enum"] == ["answer", "not_sure", "none"]
    assert "confidence_level" in schemas["AnswerOut"]["required"]
    assert schemas["AskRequest"]["properties"]["best_guess"]["type"] == "boolean"
    assert schemas["ChatCitation"]["properties"]["confidence_level"]["enum"] == ["answer", "not_sure"]


def test_mcp_ask_gives_confidence_levels_and_the_best_guess() -> None:
    """On a pipeline without models: the tool passes best_guess and min_answer_probability down, and says
    how sure each answer is."""
    pipeline = OutcomePipeline()

    async def session() -> None:
        async with Client(build_mcp_server(lambda: pipeline)) as client:  # type: ignore[arg-type, return-value]
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert "best_guess" in tools["ask"].input_schema["properties"]
            assert "no answer" in (tools["ask"].description or "")

            async def ask(**arguments: object) -> dict[str, Any]:
                result = await client.call_tool("ask", arguments)
                assert not result.is_error
                return result.structured_content  # type: ignore[return-value]

            none = await ask(question=NONE)
            assert none["no_answer"] and none["confidence_level"] == "none"
            assert none["message"] == "I found no answer in the documents."
            guess = await ask(question=NONE, best_guess=True)
            assert [(a["text"], a["confidence_level"]) for a in guess["answers"]] == [("Berlin", "not_sure")]
            not_sure = await ask(question=NOT_SURE)
            assert not_sure["confidence_level"] == "not_sure" and not not_sure["no_answer"]
            strict = await ask(question=CONFIDENT, min_answer_probability=0.95)
            assert {a["confidence_level"] for a in strict["answers"]} == {"not_sure"}
            assert (await ask(question=CONFIDENT))["confidence_level"] == "answer"
        assert pipeline.calls[1] == {"question": NONE, "best_guess": True}

    anyio.run(session)


def _reply(question: str, best_guess: bool = False) -> tuple[str, list[ChatCitation], AskResult]:
    result = OutcomePipeline().ask(Query(question, best_guess=best_guess))
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
