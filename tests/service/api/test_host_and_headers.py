"""M5 (DNS rebinding) and the security headers, over real HTTP to a real server on loopback."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import httpx
import pytest
from citeqa.eval.bench.live_server import serve_app as serve
from citeqa.service.api import create_app
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.settings import Settings

from tests.conftest import SEED_DOC_ID


@pytest.fixture(scope="module")
def server(seed_pipeline: QAPipeline) -> Iterator[str]:
    with serve(create_app(pipeline=seed_pipeline)) as url:
        yield url


def raw_get(url: str, path: str, host: str | None) -> tuple[int, bytes]:
    """One GET with exactly the Host header given (None: no Host header at all)."""
    port = int(url.rsplit(":", 1)[1])
    request = f"GET {path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"{request}Connection: close\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.e2e
def test_a_foreign_host_name_is_refused_with_421(server: str) -> None:
    """The probe's request: a page on rebind.attacker.example reads a document from the user's machine."""
    with httpx.Client() as client:
        response = client.get(
            f"{server}/v1/documents/{SEED_DOC_ID}", headers={"Host": "rebind.attacker.example:8911"}
        )
    assert response.status_code == 421
    assert response.json()["error"]["code"] == "host_not_allowed"
    assert "Ningbo" not in response.text
    for path in ("/v1/documents", "/", "/openapi.json"):
        assert httpx.get(f"{server}{path}", headers={"Host": "evil.example"}).status_code == 421


@pytest.mark.e2e
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:8000", "LOCALHOST", "[::1]:9"])
def test_loopback_names_are_served(server: str, host: str) -> None:
    status, body = raw_get(server, f"/v1/documents/{SEED_DOC_ID}", host)
    assert status == 200 and b"Ningbo" in body


@pytest.mark.e2e
def test_a_request_without_host_is_refused(server: str) -> None:
    status, _ = raw_get(server, "/healthz", None)
    assert status == 400


def test_configured_names_are_allowed_and_any_name_when_bound_beyond_loopback() -> None:
    assert "docs.example.org" in Settings(allowed_hosts="docs.example.org").host_allow_list  # type: ignore[operator]
    assert Settings(host="0.0.0.0").host_allow_list is None
    assert Settings(host="0.0.0.0", allowed_hosts="qa.example").host_allow_list == frozenset(
        {"localhost", "127.0.0.1", "[::1]", "::1", "qa.example"}
    )
    assert Settings(allowed_hosts="*").host_allow_list is None


@pytest.mark.e2e
def test_page_and_api_carry_security_headers(server: str) -> None:
    for path in ("/", "/v1/documents", "/static/app.js", "/docs"):
        headers = httpx.get(f"{server}{path}").headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src" not in headers["content-security-policy"]  # default-src 'self': no inline
    assert "'unsafe-inline'" not in httpx.get(f"{server}/").headers["content-security-policy"]


@pytest.mark.e2e
def test_api_docs_load_their_assets_from_the_service(server: str) -> None:
    """/docs and /redoc worked only online: their scripts came from a CDN."""
    for path in ("/docs", "/redoc"):
        page = httpx.get(f"{server}{path}").text
        assert "http://" not in page and "https://" not in page, page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        response = httpx.get(f"{server}/static/docs/{asset}")
        assert response.status_code == 200 and len(response.content) > 100_000


@pytest.mark.e2e
def test_chat_links_do_not_come_from_an_unchecked_host(make_pipeline: Callable[..., QAPipeline]) -> None:
    """Bound beyond loopback with no allow-list, the Host header is the client's word: links use
    CITEQA_PUBLIC_URL when set, else the address the service is bound to, never that header."""
    question = "Which city was the first Made in China 2025 pilot demonstration city?"
    body = {"model": "citeqa", "messages": [{"role": "user", "content": question}]}
    for public_url, expected in (
        (None, "http://0.0.0.0:8000/v1/documents/"),
        ("https://qa.example.org", "https://qa.example.org/v1/documents/"),
    ):
        pipeline = make_pipeline(host="0.0.0.0", public_url=public_url)
        with serve(create_app(pipeline=pipeline)) as url:
            reply = httpx.post(
                f"{url}/v1/chat/completions", headers={"Host": "evil.example"}, json=body, timeout=60
            ).json()
        assert reply["citations"][0]["url"].startswith(expected)
        assert "evil.example" not in reply["choices"][0]["message"]["content"]
