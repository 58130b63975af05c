"""The real server: uvicorn on a free loopback port, queried over HTTP by httpx, the official `openai`
client and the MCP SDK's client (streamable HTTP, and stdio through `citeqa mcp`)."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters
from openai import OpenAI

from tests.e2e.conftest import API_KEY, LiveServer

pytestmark = pytest.mark.e2e

QUESTION = "Which city was the first Made in China 2025 pilot demonstration city?"


def test_ask_over_http_with_request_log(
    live_server: LiveServer, seed_text: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="citeqa.access")
    assert httpx.get(f"{live_server.url}/healthz").json() == {"status": "ok"}
    response = httpx.post(f"{live_server.url}/v1/ask", json={"question": QUESTION}, timeout=30)
    assert response.status_code == 200
    answer = response.json()["answers"][0]
    assert answer["text"] == "Ningbo" == seed_text[answer["start"] : answer["end"]]
    cited = httpx.get(live_server.url + answer["citation"]["url"]).json()
    assert cited["span"]["text"] == "Ningbo"
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "citeqa.access"]
    ask_line = next(line for line in lines if line["request_id"] == response.headers["x-request-id"])
    assert ask_line["status"] == 200 and ask_line["route"] == "/v1/ask"
    assert set(ask_line["stages_ms"]) >= {"queue", "retrieve", "read", "total"}


def test_openai_client_gets_the_cited_answer(live_server: LiveServer) -> None:
    client = OpenAI(base_url=f"{live_server.url}/v1", api_key="not-checked", max_retries=0)
    assert [m.id for m in client.models.list()] == ["citeqa"]
    reply = client.chat.completions.create(model="citeqa", messages=[{"role": "user", "content": QUESTION}])
    content = reply.choices[0].message.content
    assert content is not None and content.startswith("**Ningbo** [1]")
    citations = (reply.model_extra or {})["citations"]
    assert citations[0]["quote"] == "Ningbo"
    assert citations[0]["url"].startswith(f"{live_server.url}/v1/documents/")

    stream = client.chat.completions.create(
        model="citeqa", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces) == content


def test_mcp_client_over_streamable_http(live_server: LiveServer) -> None:
    async def session() -> None:
        async with Client(f"{live_server.url}/mcp") as client:
            assert {t.name for t in (await client.list_tools()).tools} == {"ask", "search"}
            asked = await client.call_tool("ask", {"question": QUESTION})
            assert asked.structured_content["answers"][0]["text"] == "Ningbo"  # type: ignore[index]
            found = await client.call_tool("search", {"query": "Ningbo pilot city", "top_k": 2})
            assert len(found.structured_content["passages"]) == 2  # type: ignore[index]

    anyio.run(session)


def test_mcp_client_over_stdio(live_server: LiveServer) -> None:
    """`citeqa mcp` in a subprocess, over the same index."""
    settings = live_server.pipeline.settings
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "CITEQA_DATA_DIR": str(settings.data_dir),
        "CITEQA_DEVICE": "cpu",
    }
    params = StdioServerParameters(command=sys.executable, args=["-m", "citeqa.service.cli", "mcp"], env=env)

    async def session() -> None:
        with anyio.fail_after(120):
            async with Client(params) as client:
                asked = await client.call_tool("ask", {"question": QUESTION})
                assert asked.structured_content["answers"][0]["text"] == "Ningbo"  # type: ignore[index]
                found = await client.call_tool("search", {"query": "Ningbo"})
                assert found.structured_content["passages"]  # type: ignore[index]

    anyio.run(session)


def test_upload_and_delete_do_not_fail_queries_in_flight(live_server: LiveServer) -> None:
    errors: list[str] = []
    answered = 0
    done = threading.Event()
    lock = threading.Lock()

    def ask_repeatedly() -> None:
        nonlocal answered
        with httpx.Client(base_url=live_server.url, timeout=60) as http:
            while not done.is_set():
                response = http.post("/v1/ask", json={"question": QUESTION})
                with lock:
                    if response.status_code != 200 or response.json()["answers"][0]["text"] != "Ningbo":
                        errors.append(response.text[:200])
                    answered += 1

    workers = [threading.Thread(target=ask_repeatedly) for _ in range(4)]
    for worker in workers:
        worker.start()
    auth = {"Authorization": f"Bearer {API_KEY}"}
    try:
        for round_number in range(2):
            text = f"Memo {round_number}\n\nThe canteen opens at {7 + round_number} o'clock on weekdays.\n"
            created = httpx.post(
                f"{live_server.url}/v1/documents",
                files={"file": ("memo.txt", text.encode())},
                headers=auth,
                timeout=60,
            )
            assert created.status_code == 201, created.text
            deleted = httpx.delete(f"{live_server.url}/v1/documents/memo.txt", headers=auth, timeout=60)
            assert deleted.status_code == 200, deleted.text
    finally:
        done.set()
        for worker in workers:
            worker.join(timeout=60)
    assert errors == []
    assert answered >= 4
