"""Generated requests from the app's own OpenAPI schema (schemathesis): valid and invalid input alike
must get a 2xx or a 4xx with the JSON error body, never a 5xx."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

# Writes are covered by their own tests; this client has no API key, so they would only say 403.
SKIP = {("POST", "/v1/documents"), ("DELETE", "/v1/documents/{doc_id}")}
_REQUEST_KEYS = ("method", "url", "headers", "params", "json", "content", "files", "data")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_generated_requests_never_fail_the_server(client: TestClient, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    tried = 0
    for operation in operations:
        if (operation.method.upper(), operation.path) in SKIP:
            continue

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        def check(case: Any) -> None:
            kwargs = case.as_transport_kwargs(base_url="http://testserver")
            request = {k: v for k, v in kwargs.items() if k in _REQUEST_KEYS}
            if isinstance(request.get("data"), str | bytes):
                request["content"] = request.pop("data")
            try:
                response = client.request(**request)
            except Exception as exc:
                # The test client's httpx refuses some generated URLs: no client could send them.
                if type(exc).__name__ == "InvalidURL":
                    return
                raise
            assert response.status_code < 500, (case.method, case.path, response.text[:300])
            json_reply = response.headers["content-type"].startswith("application/json")
            if response.status_code >= 400 and json_reply:
                body = response.json()
                assert body.get("error", {}).get("message") or "ready" in body, response.text

        try:
            check()
        except Unsatisfiable:
            # No invalid input exists for an operation without parameters (GET /healthz).
            assert mode is GenerationMode.NEGATIVE
            continue
        tried += 1
    assert tried >= 6
