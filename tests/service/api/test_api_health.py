"""Liveness, readiness (503 until an index is loaded), Prometheus metrics and the OpenAPI docs."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from citeqa.indexing.store import current_version_dir
from citeqa.service.api import create_app
from citeqa.service.qa.pipeline import QAPipeline
from fastapi.testclient import TestClient

from tests.service.api.conftest import API_KEY, LOOPBACK_URL, ClientFactory, wait_ready

pytestmark = pytest.mark.integration


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert ready.json()["documents"] == 1


def test_not_ready_without_an_index_until_a_document_is_uploaded(writable_client: ClientFactory) -> None:
    client = writable_client(index=False)
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    # Once the models are loaded the service stays unready for want of an index, and says so.
    for _ in range(600):
        if client.app.state.citeqa.models_loaded:  # type: ignore[attr-defined]
            break
        time.sleep(0.05)
    assert "no index" in client.get("/readyz").json()["message"]
    asked = client.post("/v1/ask", json={"question": "anything?"})
    assert asked.status_code == 503
    assert asked.json()["error"]["code"] == "index_not_found"
    created = client.post(
        "/v1/documents",
        files={"file": ("note.md", b"# Note\n\nThe meeting is on Tuesday in Room 4.\n")},
        headers={"X-API-Key": API_KEY},
    )
    assert created.status_code == 201, created.text
    wait_ready(client, timeout=5)
    assert client.get("/readyz").json()["documents"] == 1


def test_metrics_count_requests_and_stage_latency(client: TestClient) -> None:
    for _ in range(2):  # the second is an answer-cache hit
        client.post("/v1/ask", json={"question": "Which city was the first pilot demonstration city?"})
    client.post("/v1/ask", json={"question": ""})
    text = client.get("/metrics").text
    assert 'citeqa_http_requests_total{method="POST",route="/v1/ask",status="200"}' in text
    assert 'citeqa_http_requests_total{method="POST",route="/v1/ask",status="422"}' in text
    assert 'citeqa_stage_duration_seconds_bucket{le="0.005",stage="read"}' in text
    assert 'citeqa_stage_duration_seconds_count{stage="queue"}' in text
    assert re.search(r'citeqa_stage_duration_seconds_count\{stage="cache"\} [1-9]', text)
    assert 'citeqa_http_request_duration_seconds_count{method="POST",route="/v1/ask"}' in text
    assert "citeqa_ready 1.0" in text


def test_openapi_schema_and_docs(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in (
        "/v1/ask",
        "/v1/search",
        "/v1/documents",
        "/v1/documents/{doc_id}",
        "/v1/feedback",
        "/v1/chat/completions",
        "/v1/models",
        "/healthz",
        "/readyz",
    ):
        assert path in schema["paths"], path
    assert "AskRequest" in schema["components"]["schemas"]
    assert "multipart/form-data" in schema["paths"]["/v1/documents"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


def test_damaged_index_leaves_the_service_unready_with_the_reason(
    make_pipeline: Callable[..., QAPipeline],
) -> None:
    built = make_pipeline()
    version_dir = current_version_dir(built.index_dir)
    assert version_dir is not None
    (version_dir / "embeddings.npy").write_bytes(b"not an array")
    fresh = QAPipeline(built.settings, embedder=built.embedder, reader=built.reader)
    with TestClient(create_app(pipeline=fresh), base_url=LOOPBACK_URL) as client:
        for _ in range(600):
            if client.app.state.citeqa.models_loaded:  # type: ignore[attr-defined]
                break
            time.sleep(0.05)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "damaged" in ready.json()["message"]
        asked = client.post("/v1/ask", json={"question": "Which city was first?"})
        assert asked.status_code == 503
        assert asked.json()["error"]["code"] == "index_corrupt"
