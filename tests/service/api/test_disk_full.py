"""A full disk during an upload (issue 19): it answered 500 with a traceback in the log, and the client's
next keep-alive request was reset. Now: 507 with the JSON error, nothing half-kept, and the same
connection goes on serving. ENOSPC is simulated where the upload is kept (a real full disk is not
something a test can make here); the server is real."""

from __future__ import annotations

import errno
import http.client
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from citeqa.eval.bench.live_server import serve_app
from citeqa.indexing.ingest import sources
from citeqa.service.api import create_app
from citeqa.service.qa.pipeline import QAPipeline

from tests.service.api.conftest import API_KEY

pytestmark = pytest.mark.e2e


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_a_full_disk_gives_507_and_the_connection_goes_on(
    make_pipeline: Callable[..., QAPipeline],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipeline = make_pipeline(api_key=API_KEY)

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(sources, "write_atomically", disk_full)
    with serve_app(create_app(pipeline=pipeline)) as url:
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        body, content_type = _multipart("full.txt", b"Full disk\n\nThis upload finds no room on the disk.\n")
        conn.request(
            "POST",
            "/v1/documents",
            body=body,
            headers={"Content-Type": content_type, "Authorization": f"Bearer {API_KEY}"},
        )
        response = conn.getresponse()
        reply = json.loads(response.read())
        assert response.status == 507, reply
        assert reply["error"]["code"] == "insufficient_storage"
        assert "space" in reply["error"]["message"]
        assert conn.sock is not None  # kept alive: the server did not close it
        sock = conn.sock
        conn.request("GET", "/healthz")
        health = conn.getresponse()
        assert health.status == 200 and json.loads(health.read())["status"] == "ok"
        assert conn.sock is sock  # the same connection, not a silent reconnect
        conn.close()
    assert not (pipeline.settings.data_dir / "uploads" / "full.txt").exists()
    assert pipeline.index.snapshot.document("full.txt") is None
    assert "Traceback" not in caplog.text


def test_other_os_errors_stay_internal_errors(
    make_pipeline: Callable[..., QAPipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a full disk (or quota) is 507: anything else the server could not write is its own fault."""
    pipeline = make_pipeline(api_key=API_KEY)

    def denied(path: Path, data: bytes) -> None:
        raise OSError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(sources, "write_atomically", denied)
    with serve_app(create_app(pipeline=pipeline)) as url:
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        body, content_type = _multipart("denied.txt", b"Denied\n\nThis upload may not be written.\n")
        headers = {"Content-Type": content_type, "Authorization": f"Bearer {API_KEY}"}
        conn.request("POST", "/v1/documents", body=body, headers=headers)
        response = conn.getresponse()
        assert response.status == 500
        assert json.loads(response.read())["error"]["code"] == "internal_error"
        conn.close()
