"""The MCP endpoint over HTTP, without models: what it refuses (issue 19). The transport runs stateless
with JSON replies, so a GET event stream has no purpose (it held a connection slot forever), and a
request whose id is an object or null got 202 with no reply at all. Then the protocol-conformance
findings: batches and non-request bodies got -32602 with a pydantic dump, a wrong Content-Type plain
text, /mcp/ a redirect, unknown tool arguments were ignored, and `citeqa mcp` dropped unparsable lines."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from citeqa.indexing.errors import CiteqaError
from citeqa.service.api import create_app
from citeqa.service.api.routers.mcp import McpHttpEndpoint, build_mcp_server
from citeqa.service.qa.pipeline import QAPipeline
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Route

from tests.service.api.conftest import LOOPBACK_URL, wait_ready

HEADERS = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-06-18"}


PIPELINE_CALLS: list[None] = []  # one per tool call that reached the pipeline


def _no_pipeline() -> QAPipeline:
    PIPELINE_CALLS.append(None)
    raise CiteqaError("no pipeline in this test")


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    endpoint = McpHttpEndpoint(build_mcp_server(_no_pipeline), "127.0.0.1")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with endpoint.running():
            yield

    app = Starlette(routes=[Route("/mcp", endpoint=endpoint)], lifespan=lifespan)
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
def test_only_post_is_served(client: TestClient, method: str) -> None:
    response = client.request(method, "/mcp", headers={"accept": "text/event-stream"})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("bad_id", [None, {"a": 1}, [1], True])
def test_a_request_whose_id_is_not_a_string_or_integer_gets_a_json_rpc_error(
    client: TestClient, bad_id: Any
) -> None:
    response = client.post(
        "/mcp", json={"jsonrpc": "2.0", "id": bad_id, "method": "tools/list"}, headers=HEADERS
    )
    assert response.status_code == 400
    reply = response.json()
    assert reply["jsonrpc"] == "2.0" and reply["id"] is None
    assert reply["error"]["code"] == -32600 and "id" in reply["error"]["message"]


@pytest.mark.parametrize("good_id", [7, "seven"])
def test_string_and_integer_ids_are_answered(client: TestClient, good_id: Any) -> None:
    response = client.post(
        "/mcp", json={"jsonrpc": "2.0", "id": good_id, "method": "tools/list"}, headers=HEADERS
    )
    assert response.status_code == 200
    assert response.json()["id"] == good_id


def test_a_notification_without_id_is_still_accepted(client: TestClient) -> None:
    response = client.post(
        "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=HEADERS
    )
    assert response.status_code == 202


@pytest.mark.parametrize("value", [True, "0.5"])
def test_the_ask_tool_takes_only_json_numbers_for_its_threshold(client: TestClient, value: Any) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "ask", "arguments": {"question": "why?", "min_answer_probability": value}},
    }
    result = client.post("/mcp", json=call, headers=HEADERS).json()["result"]
    assert result["isError"] is True
    assert "min_answer_probability" in result["content"][0]["text"]


def _call(tool: str, arguments: dict[str, Any], request_id: int | None = 1) -> dict[str, Any]:
    message: dict[str, Any] = {
        "jsonrpc": "2.0",
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    return message if request_id is None else {**message, "id": request_id}


def _post(client: TestClient, body: str, path: str = "/mcp", **headers: str) -> Any:
    headers = {**HEADERS, "content-type": "application/json", **headers}
    # Not followed: a redirect is an answer that a client may not follow (the test client would).
    return client.post(path, content=body, headers=headers, follow_redirects=False)


@pytest.fixture
def fake_client(fake_pipeline: QAPipeline) -> Iterator[TestClient]:
    """The whole app (routing and middleware included) on the fake models."""
    with TestClient(create_app(pipeline=fake_pipeline), base_url=LOOPBACK_URL) as test_client:
        wait_ready(test_client)
        yield test_client


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ('[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]', "batch"),
        ("[]", "batch"),
        ('"str"', "object"),
        ('{"hello": "world"}', "jsonrpc"),
        ('{"jsonrpc": "2.0", "id": 1}', "method"),
        ('{"jsonrpc": "2.0", "id": 1, "method": 5}', "method"),
        ('{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": [1]}', "params"),
    ],
)
def test_a_body_that_is_not_one_json_rpc_message_is_an_invalid_request(
    client: TestClient, body: str, hint: str
) -> None:
    """It was -32602 (invalid params) with a many-line pydantic dump as the message."""
    response = _post(client, body)
    assert response.status_code == 400
    reply = response.json()
    assert reply["jsonrpc"] == "2.0" and reply["id"] is None
    assert reply["error"]["code"] == -32600
    message = reply["error"]["message"]
    assert message.startswith("Invalid Request") and hint in message and "\n" not in message


@pytest.mark.parametrize("body", ["garbage{", "", '{"jsonrpc": "2.0",'])
def test_unparsable_json_is_a_parse_error(client: TestClient, body: str) -> None:
    response = _post(client, body)
    assert response.status_code == 400
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "Parse error"},
    }


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_json_by_its_content_type_gets_a_json_rpc_error(
    client: TestClient, content_type: str | None
) -> None:
    """It was the plain text "Invalid Content-Type header"."""
    headers = dict(HEADERS) if content_type is None else {**HEADERS, "content-type": content_type}
    response = client.post(
        "/mcp", content=b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}', headers=headers
    )
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/json"
    reply = response.json()
    assert reply["id"] is None and reply["error"]["code"] == -32600
    assert "application/json" in reply["error"]["message"]


def test_the_sdks_own_plain_text_refusals_come_back_as_json(client: TestClient) -> None:
    """The SDK refuses a foreign Origin (DNS rebinding) with the plain text "Invalid Origin header"."""
    response = _post(
        client, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}), origin="http://evil.test"
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"
    reply = response.json()
    assert reply["id"] is None and reply["error"] == {"code": -32600, "message": "Invalid Origin header"}


def test_a_tool_call_without_id_runs_nothing(client: TestClient) -> None:
    """Without an id it is a notification (no reply), but MCP has no such notification: not handed on."""
    before = len(PIPELINE_CALLS)
    response = _post(client, json.dumps(_call("ask", {"question": "why?"}, request_id=None)))
    assert response.status_code == 202 and response.content == b""
    assert len(PIPELINE_CALLS) == before
    # The same call with an id does reach the pipeline, so the count above can see one.
    assert _post(client, json.dumps(_call("ask", {"question": "why?"}))).json()["result"]["isError"]
    assert len(PIPELINE_CALLS) == before + 1


@pytest.mark.parametrize("tool", ["ask", "search"])
def test_a_tool_refuses_arguments_it_does_not_take(client: TestClient, tool: str) -> None:
    """They were dropped silently, so that a misspelt option changed nothing and said nothing."""
    before = len(PIPELINE_CALLS)
    first = "question" if tool == "ask" else "query"
    result = _post(client, json.dumps(_call(tool, {first: "why?", "evil": 1}))).json()["result"]
    assert result["isError"] is True
    assert "evil" in result["content"][0]["text"] and "unknown argument" in result["content"][0]["text"]
    assert len(PIPELINE_CALLS) == before


def test_the_tools_advertise_that_they_take_no_other_arguments(client: TestClient) -> None:
    tools = _post(client, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).json()["result"][
        "tools"
    ]
    assert all(tool["inputSchema"]["additionalProperties"] is False for tool in tools)
    ask = next(tool for tool in tools if tool["name"] == "ask")
    assert ask["inputSchema"]["properties"]["document_ids"]["anyOf"][0]["type"] == "array"


def test_mcp_slash_is_served_as_mcp(fake_client: TestClient) -> None:
    """It answered 307, a redirect that clients which do not follow one never get past."""
    response = _post(
        fake_client, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}), path="/mcp/"
    )
    assert response.status_code == 200
    assert {tool["name"] for tool in response.json()["result"]["tools"]} == {"ask", "search"}


def test_the_ask_tool_searches_only_the_documents_named(fake_client: TestClient) -> None:
    """`document_ids`, as /v1/ask takes it: it was ignored."""

    def ask(document_ids: list[str]) -> dict[str, Any]:
        arguments = {"question": "How much is the water levy?", "document_ids": document_ids}
        result = _post(fake_client, json.dumps(_call("ask", arguments))).json()["result"]
        assert result["isError"] is False
        return dict(result["structuredContent"])

    assert [a["text"] for a in ask(["water.txt"])["answers"]] == ["3 percent"]
    elsewhere = ask(["roads.txt"])
    assert all(p["doc_id"] == "roads.txt" for p in elsewhere["passages"])
    assert "3 percent" not in [a["text"] for a in elsewhere["answers"]]


@pytest.mark.parametrize("ids", ["water.txt", [1], None])
def test_the_ask_tool_takes_document_ids_as_a_list_of_strings(fake_client: TestClient, ids: Any) -> None:
    arguments: dict[str, Any] = {"question": "How much is the water levy?", "document_ids": ids}
    result = _post(fake_client, json.dumps(_call("ask", arguments))).json()["result"]
    if ids is None:
        assert result["isError"] is False
    else:
        assert result["isError"] is True and "document_ids" in result["content"][0]["text"]


def test_stdio_answers_a_line_that_is_not_a_json_rpc_message() -> None:
    """`citeqa mcp` dropped such a line without a word, leaving the client waiting for a reply."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
    lines = ["garbage{", "[]", '{"hello": "world"}', json.dumps(initialize)]
    stdout = io.StringIO()

    async def serve() -> None:
        stdin = anyio.wrap_file(io.StringIO("".join(line + "\n" for line in lines)))
        with anyio.fail_after(20):
            await build_mcp_server(_no_pipeline).run_stdio_async(stdin, anyio.wrap_file(stdout))

    anyio.run(serve)
    replies = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert [(r["id"], r.get("error", {}).get("code")) for r in replies] == [
        (None, -32700),
        (None, -32600),
        (None, -32600),
        (1, None),
    ]
    assert replies[-1]["result"]["serverInfo"]["name"] == "citeqa"
