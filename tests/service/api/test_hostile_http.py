"""Hostile HTTP input: each attack gets a clear 4xx with the JSON error body, the service stays up and
keeps answering, and nothing is written outside its data directory.

Most cases go through the app in-process; the ones about sockets (a body that never arrives, junk
that is not HTTP, a burst of 10,000 requests) run against a real uvicorn server.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from citeqa.eval.bench.live_server import serve_app
from citeqa.service.api import create_app
from citeqa.service.qa.pipeline import QAPipeline
from fastapi.testclient import TestClient
from pypdf import PdfWriter
from pypdf.generic import NameObject, StreamObject

from tests.service.api.conftest import API_KEY, ClientFactory

pytestmark = pytest.mark.e2e

SEED_ID = "000_d31740c80f9a4c4e.txt"
QUESTION = "Which city was the first Made in China 2025 pilot demonstration city?"
BURST = 10_000
AUTH = {"Authorization": f"Bearer {API_KEY}"}
JSON = {"content-type": "application/json"}


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, str]:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


def assert_still_serving(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    response = client.post("/v1/ask", json={"question": QUESTION})
    assert response.status_code == 200
    assert response.json()["answers"][0]["text"] == "Ningbo"


# --- bodies, questions, methods ----------------------------------------------------------------
# (method, path, request kwargs, status, error code)
BAD_REQUESTS: dict[str, tuple[str, str, dict[str, Any], int, str]] = {
    "text body": (
        "POST",
        "/v1/ask",
        {"content": QUESTION, "headers": {"content-type": "text/plain"}},
        415,
        "unsupported_media_type",
    ),
    "form body": ("POST", "/v1/ask", {"data": {"question": QUESTION}}, 415, "unsupported_media_type"),
    "no content type": ("POST", "/v1/ask", {"content": b'{"question": "hi"}'}, 415, "unsupported_media_type"),
    "broken JSON": ("POST", "/v1/ask", {"content": b'{"question": ', "headers": JSON}, 400, "invalid_json"),
    "JSON array": ("POST", "/v1/ask", {"json": [QUESTION]}, 422, "invalid_request"),
    "JSON null": ("POST", "/v1/ask", {"content": b"null", "headers": JSON}, 422, "invalid_request"),
    "nested 60k deep": ("POST", "/v1/ask", {"content": b"[" * 60_000, "headers": JSON}, 400, None),
    "invalid UTF-8 in JSON": (
        "POST",
        "/v1/ask",
        {"content": b'{"question": "\xff\xfe"}', "headers": JSON},
        400,
        None,
    ),
    "lone surrogate": (
        "POST",
        "/v1/ask",
        {"content": b'{"question": "\\ud800 why"}', "headers": JSON},
        422,
        "invalid_request",
    ),
    "punctuation only": ("POST", "/v1/ask", {"json": {"question": "?!...;:,--"}}, 422, "invalid_question"),
    "symbols only": ("GET", "/v1/search", {"params": {"q": "%$#@!*"}}, 422, "invalid_question"),
    "invalid UTF-8 query": ("GET", "/v1/search?q=%ff%fe", {}, 422, "invalid_question"),
    "NUL in question": ("POST", "/v1/ask", {"json": {"question": "what\x00is it"}}, 422, "invalid_question"),
    "blank question": ("POST", "/v1/ask", {"json": {"question": " \n\t "}}, 422, "invalid_question"),
    "question too long": ("POST", "/v1/ask", {"json": {"question": "why " * 300}}, 422, "invalid_question"),
    "top_k over setting": (
        "POST",
        "/v1/ask",
        {"json": {"question": QUESTION, "top_k": 21}},
        422,
        "invalid_top_k",
    ),
    "top_k over cap": ("GET", "/v1/search", {"params": {"q": QUESTION, "top_k": 10**30}}, 422, None),
    "unknown field": ("POST", "/v1/ask", {"json": {"question": QUESTION, "admin": True}}, 422, None),
    "body over limit": ("POST", "/v1/ask", {"json": {"question": "x" * 70_000}}, 413, "payload_too_large"),
    "chat junk": ("POST", "/v1/chat/completions", {"json": {"messages": "hi"}}, 422, "invalid_request"),
    "PUT ask": ("PUT", "/v1/ask", {"json": {"question": QUESTION}}, 405, "method_not_allowed"),
    "GET ask": ("GET", "/v1/ask", {}, 405, "method_not_allowed"),
    "DELETE search": ("DELETE", "/v1/search", {}, 405, "method_not_allowed"),
    "PATCH documents": ("PATCH", "/v1/documents", {"json": {}}, 405, "method_not_allowed"),
    "unknown route": ("GET", "/v1/admin", {}, 404, "not_found"),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_bad_request_gets_a_clear_4xx(client: TestClient, name: str) -> None:
    method, path, kwargs, status, code = BAD_REQUESTS[name]
    error_of(client.request(method, path, **kwargs), status, code)


def test_service_answers_after_every_bad_request(client: TestClient) -> None:
    for method, path, kwargs, _, _ in BAD_REQUESTS.values():
        client.request(method, path, **kwargs)
    assert_still_serving(client)


def test_request_id_cannot_inject_headers(client: TestClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "abc\tdef<script>"})
    assert response.headers["x-request-id"] != "abc\tdef<script>"
    assert "<" not in response.headers["x-request-id"]


# --- uploads and document ids ------------------------------------------------------------------
def pdf_bomb() -> bytes:
    """A one-page PDF whose 80 KB content stream inflates to 80 MB."""
    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    stream = StreamObject()
    stream._data = zlib.compress(b" " * (80 * 1024 * 1024), 9)
    stream[NameObject("/Filter")] = NameObject("/FlateDecode")
    page[NameObject("/Contents")] = writer._add_object(stream)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def tree(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


TRAVERSAL_NAMES = [
    "../../escape.txt",
    "..\\..\\escape.txt",
    "/etc/escape.txt",
    "C:\\Windows\\escape.txt",
    "....//....//escape.txt",
    "%2e%2e%2fescape.txt",
    "sub/../../escape.txt",
    ".hidden.txt",
    "x" * 5000 + ".txt",
]


def test_upload_names_cannot_escape_the_data_dir(writable_client: ClientFactory, tmp_path: Path) -> None:
    client = writable_client()
    state = client.app.state.citeqa  # type: ignore[attr-defined]
    data_dir = state.settings.data_dir
    outside = data_dir.parent
    before = tree(outside)
    ids = []
    for name in TRAVERSAL_NAMES:
        response = client.post(
            "/v1/documents", files={"file": (name, b"Escape notice.\nNothing here.")}, headers=AUTH
        )
        assert response.status_code in (201, 400, 422), (name[:40], response.text[:300])
        if response.status_code == 201:
            doc_id = response.json()["document"]["id"]
            assert "/" not in doc_id and "\\" not in doc_id and not doc_id.startswith(".")
            assert len(doc_id) <= 200
            ids.append(doc_id)
        else:  # a name the multipart parser itself refuses (over its header size) is a 400
            error_of(response, response.status_code, "bad_request" if response.status_code == 400 else None)
    assert ids, "at least the plain names should have been accepted, sanitized"
    created = {p for p in tree(outside) - before}
    assert created and all(p.parts[0] == data_dir.name for p in created), sorted(created)[:5]
    uploads = state.pipeline.sources().uploads_dir
    assert {p.name for p in uploads.iterdir()} == set(ids)
    assert [p.name for p in state.settings.corpus_dir.iterdir()] == [SEED_ID]
    assert_still_serving(client)


TRAVERSAL_IDS = [
    "../sentinel.txt",
    "..%2Fsentinel.txt",
    "%2e%2e/%2e%2e/sentinel.txt",
    "..%5C..%5Csentinel.txt",
    "/etc/passwd",
    "corpus/../../sentinel.txt",
    "000_d31740c80f9a4c4e.txt/../../sentinel.txt",
]


@pytest.mark.parametrize("doc_id", TRAVERSAL_IDS)
def test_document_ids_cannot_reach_outside(writable_client: ClientFactory, doc_id: str) -> None:
    client = writable_client()
    data_dir = client.app.state.citeqa.settings.data_dir  # type: ignore[attr-defined]
    sentinels = [data_dir / "sentinel.txt", data_dir.parent / "sentinel.txt"]
    for sentinel in sentinels:
        sentinel.write_text("do not delete", encoding="utf-8")
    for method in ("GET", "DELETE"):
        response = client.request(method, f"/v1/documents/{doc_id}", headers=AUTH)
        assert response.status_code == 404, (method, response.text[:300])
        assert response.json()["error"]["code"] in ("document_not_found", "not_found")
    assert all(s.read_text(encoding="utf-8") == "do not delete" for s in sentinels)
    assert client.get("/v1/documents").json()["total"] == 1


BAD_UPLOADS: dict[str, tuple[str, bytes, int, str]] = {
    "PDF bomb": ("bomb.pdf", pdf_bomb(), 422, "unreadable_document"),
    "malformed PDF": ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog", 422, "unreadable_document"),
    "binary junk as .txt": ("junk.txt", bytes(range(256)) * 64, 422, "unreadable_document"),
    "damaged UTF-8": ("mixed.txt", "R\u00e8gles du ".encode() + b"caf\xe9", 422, "unreadable_document"),
    "only whitespace": ("blank.md", b"  \n\n\t ", 422, "unreadable_document"),
    "empty file": ("empty.txt", b"", 422, "empty_file"),
    "executable": ("tool.exe", b"MZ\x90\x00", 415, "unsupported_document_type"),
    "no extension": ("README", b"hello", 422, "invalid_filename"),
    "over upload limit": ("big.txt", b"word " * 60_000, 413, "payload_too_large"),
}


def test_hostile_uploads_are_refused_and_lose_nothing(writable_client: ClientFactory) -> None:
    client = writable_client(max_upload_bytes=256 * 1024)
    version = client.get("/readyz").json()["index_version"]
    for name, (filename, data, status, code) in BAD_UPLOADS.items():
        response = client.post("/v1/documents", files={"file": (filename, data)}, headers=AUTH)
        assert response.status_code == status, (name, response.text[:300])
        error_of(response, status, code)
    # Nothing changed: same index version, same documents, no upload kept, the corpus untouched.
    assert client.get("/readyz").json()["index_version"] == version
    assert [d["id"] for d in client.get("/v1/documents").json()["documents"]] == [SEED_ID]
    state = client.app.state.citeqa  # type: ignore[attr-defined]
    uploads = state.pipeline.sources().uploads_dir
    assert not uploads.exists() or [p.name for p in uploads.iterdir()] == []
    assert [p.name for p in state.settings.corpus_dir.iterdir()] == [SEED_ID]
    assert_still_serving(client)


# --- secrets -----------------------------------------------------------------------------------
def test_writes_are_closed_without_a_key(client: TestClient) -> None:
    error_of(client.post("/v1/documents", files={"file": ("a.txt", b"A note.")}), 403, "writes_disabled")
    error_of(client.delete(f"/v1/documents/{SEED_ID}", headers=AUTH), 403, "writes_disabled")
    assert client.get("/v1/documents").json()["total"] == 1


def test_api_key_is_never_logged_or_echoed(
    writable_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = writable_client()
    wrong = "wrong-" + API_KEY[::-1]
    seen: list[str] = []
    for headers in (AUTH, {"X-API-Key": API_KEY}, {"Authorization": f"Bearer {wrong}"}, {"X-API-Key": wrong}):
        upload = client.post(
            "/v1/documents", files={"file": ("key.txt", b"Key notice.\nA note.")}, headers=headers
        )
        seen += [upload.text, str(upload.headers)]
        deleted = client.delete("/v1/documents/key.txt", headers=headers)
        seen += [deleted.text, str(deleted.headers)]
    for path in ("/metrics", "/readyz", "/openapi.json", "/v1/documents"):
        seen.append(client.get(path).text)
    seen += [record.getMessage() for record in caplog.records]
    seen.append(repr(client.app.state.citeqa.settings))  # type: ignore[attr-defined]
    assert caplog.records, "the requests should have been logged"
    for secret in (API_KEY, wrong):
        assert not [text for text in seen if secret in text]


# --- over real sockets -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def guarded(make_pipeline: Callable[..., QAPipeline]) -> Any:
    """A real server with the rate limit on and a short body deadline."""
    pipeline = make_pipeline(rate_limit_per_minute=60, rate_limit_burst=20, read_timeout_s=1.0)
    with serve_app(create_app(pipeline=pipeline)) as url:
        yield url


def raw_exchange(url: str, payload: bytes, wait: float = 10.0) -> bytes:
    """Send raw bytes; return the reply once it is complete (by its content-length) or closed."""
    host, port = url.removeprefix("http://").split(":")
    reply = b""
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(payload)
        while True:
            head, sep, body = reply.partition(b"\r\n\r\n")
            if sep:
                lengths = [
                    line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")
                ]
                if lengths and len(body) >= int(lengths[0].split(b":")[1]):
                    return reply
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return reply
            if not chunk:
                return reply
            reply += chunk


def test_body_that_never_arrives_times_out(guarded: str) -> None:
    head = (
        b"POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"question": '
    )
    reply = raw_exchange(guarded, head)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert b'"request_timeout"' in reply
    assert httpx.get(f"{guarded}/healthz").status_code == 200


def test_a_request_framed_by_both_content_length_and_transfer_encoding_is_refused(guarded: str) -> None:
    """Issue 19: accepted before. Behind a proxy that reads the other header, the bytes after the body
    this server read would be a second, smuggled request; here it is one 400 and the connection closes."""
    smuggled = b"GET /v1/documents HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    body = b'{"question": "Why?"}'
    payload = (
        b"POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n%s"
        % (len(body), len(body), body, smuggled)
    )
    host, port = guarded.removeprefix("http://").split(":")
    reply = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(payload)
        while chunk := sock.recv(65536):  # read until the server closes
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 "), reply[:200]
    assert reply.count(b"HTTP/1.1 ") == 1  # the smuggled request got no reply: it was never read
    assert httpx.get(f"{guarded}/healthz").status_code == 200


@pytest.mark.parametrize(
    "junk",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200),
        b"POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: lots\r\n\r\n",
        b"\xff" * 5000 + b"\r\n\r\n",
    ],
    ids=["tls-hello", "bad-length", "binary"],
)
def test_junk_on_the_socket(guarded: str, junk: bytes) -> None:
    reply = raw_exchange(guarded, junk, wait=5.0)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400 ")
    assert httpx.get(f"{guarded}/healthz").status_code == 200


def test_burst_of_identical_questions_is_rate_limited(guarded: str) -> None:
    """10,000 identical questions at once from one address: a few are answered, the rest get 429."""

    host, port = guarded.removeprefix("http://").split(":")
    body = json.dumps({"question": QUESTION}).encode()
    request = (
        b"POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )

    async def sender(count: int, replies: list[tuple[int, bytes, bytes]]) -> None:
        # A bare keep-alive connection: httpx's own overhead would dominate 10,000 tiny replies.
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for _ in range(count):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                fields = dict(
                    line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
                )
                payload = await reader.readexactly(int(fields[b"content-length"]))
                replies.append((int(head.split(b" ", 2)[1]), fields.get(b"retry-after", b""), payload))
        finally:
            writer.close()

    async def burst() -> tuple[Counter[int], set[str], int]:
        replies: list[tuple[int, bytes, bytes]] = []
        await asyncio.gather(*(sender(BURST // 50, replies) for _ in range(50)))
        async with httpx.AsyncClient(base_url=guarded) as http:
            assert (await http.get("/healthz")).status_code == 200  # never limited
        assert len(replies) == BURST
        statuses = Counter(status for status, _, _ in replies)
        limited = [(retry, payload) for status, retry, payload in replies if status == 429]
        codes = {json.loads(payload)["error"]["code"] for _, payload in limited}
        return statuses, codes, min(int(retry) for retry, _ in limited)

    statuses, codes, retry_after = asyncio.run(burst())
    assert set(statuses) == {200, 429}, statuses
    assert 20 <= statuses[200] <= 20 + 60  # the burst, plus at most a minute of refill
    assert codes == {"rate_limited"} and retry_after >= 1
