"""The MCP endpoint over HTTP, without models: what it refuses (issue 19). The transport runs stateless
with JSON replies, so a GET event stream has no purpose (it held a connection slot forever), and a
request whose id is an object or null got 202 with no reply at all."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from citeqa.indexing.errors import CiteqaError
from citeqa.service.api.routers.mcp import McpHttpEndpoint, build_mcp_server
from citeqa.service.qa.pipeline import QAPipeline
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Route

HEADERS = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-06-18"}


def _no_pipeline() -> QAPipeline:
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
