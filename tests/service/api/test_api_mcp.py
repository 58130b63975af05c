"""The MCP tools, called with the official SDK's client (in-process here; over HTTP in tests/e2e)."""

from __future__ import annotations

import anyio
import pytest
from citeqa.service.api.routers.mcp import build_mcp_server
from citeqa.service.qa.pipeline import QAPipeline
from fastapi.testclient import TestClient
from mcp import Client

pytestmark = pytest.mark.integration

QUESTION = "Which city was the first Made in China 2025 pilot demonstration city?"


def test_mcp_tools_ask_and_search(seed_pipeline: QAPipeline, seed_text: str) -> None:
    async def session() -> None:
        async with Client(build_mcp_server(lambda: seed_pipeline)) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == {"ask", "search"}
            assert "question" in tools["ask"].input_schema["required"]

            asked = await client.call_tool("ask", {"question": QUESTION, "max_answers": 1})
            assert not asked.is_error
            answer = asked.structured_content["answers"][0]  # type: ignore[index]
            assert answer["text"] == "Ningbo" == seed_text[answer["start"] : answer["end"]]

            found = await client.call_tool("search", {"query": "pilot demonstration city", "top_k": 3})
            passages = found.structured_content["passages"]  # type: ignore[index]
            assert len(passages) == 3
            assert all(seed_text[p["start"] : p["end"]] == p["text"] for p in passages)

            empty = await client.call_tool("ask", {"question": "   "})
            assert empty.is_error
            assert "empty" in empty.content[0].text  # type: ignore[union-attr]

    anyio.run(session)


def test_mcp_is_mounted_on_the_app(client: TestClient) -> None:
    response = client.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-06-18"},
    )
    assert response.status_code == 200
    assert {t["name"] for t in response.json()["result"]["tools"]} == {"ask", "search"}


def test_mcp_tools_advertise_the_configured_top_k_limit(client: TestClient) -> None:
    """They advertised 50 (the hard cap) and then refused anything over the setting's 20."""
    response = client.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-06-18"},
    )
    limit = client.app.state.citeqa.settings.max_top_k  # type: ignore[attr-defined]
    for tool in response.json()["result"]["tools"]:
        assert tool["inputSchema"]["properties"]["top_k"]["anyOf"][0]["maximum"] == limit


def test_mcp_ask_searches_only_the_documents_named(seed_pipeline: QAPipeline) -> None:
    """`document_ids`, as /v1/ask takes it: the tool ignored it, and every other unknown argument."""
    (doc_id,) = seed_pipeline.document_ids()

    async def session() -> None:
        async with Client(build_mcp_server(lambda: seed_pipeline)) as client:
            inside = await client.call_tool(
                "ask", {"question": QUESTION, "max_answers": 1, "document_ids": [doc_id]}
            )
            assert inside.structured_content["answers"][0]["text"] == "Ningbo"  # type: ignore[index]

            outside = await client.call_tool(
                "ask", {"question": QUESTION, "document_ids": ["no-such-document"]}
            )
            assert outside.is_error  # as /v1/ask refuses it (404)
            assert "no-such-document" in outside.content[0].text  # type: ignore[union-attr]

            unknown = await client.call_tool("ask", {"question": QUESTION, "evil": 1})
            assert unknown.is_error
            assert "evil" in unknown.content[0].text  # type: ignore[union-attr]

    anyio.run(session)
