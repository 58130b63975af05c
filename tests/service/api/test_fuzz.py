"""Schemathesis fuzzes every operation of the service's own OpenAPI schema.

Valid and invalid requests (both generation modes) go to the real app over ASGI, with its real
pipeline; every response must be a non-5xx whose status, content type, headers and body match what
the schema documents. Examples are capped (the question endpoints run the reader on each) and
derandomized, so that CI runs the same cases every time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from citeqa.eval.bench.live_server import serve_app
from citeqa.service.api import create_app
from citeqa.service.qa.pipeline import QAPipeline
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.e2e

API_KEY = "fuzz-key-0123456789"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# Every operation in the schema, with its example budget (those that run the models get fewer) and
# its modes (an operation without parameters has no invalid input to generate).
OPERATIONS: dict[str, tuple[int, tuple[GenerationMode, ...]]] = {
    "POST /v1/ask": (12, (POSITIVE, NEGATIVE)),
    "GET /v1/search": (12, (POSITIVE, NEGATIVE)),
    "POST /v1/chat/completions": (12, (POSITIVE, NEGATIVE)),
    "GET /v1/documents": (25, (POSITIVE, NEGATIVE)),
    "POST /v1/documents": (10, (POSITIVE, NEGATIVE)),
    "GET /v1/documents/{doc_id}": (25, (POSITIVE, NEGATIVE)),
    "DELETE /v1/documents/{doc_id}": (25, (POSITIVE,)),
    "POST /v1/feedback": (25, (POSITIVE, NEGATIVE)),
    "GET /v1/models": (3, (POSITIVE,)),
    "GET /healthz": (3, (POSITIVE,)),
    "GET /readyz": (3, (POSITIVE,)),
    "GET /metrics": (3, (POSITIVE,)),
}
CASES = [(label, mode) for label, (_, modes) in OPERATIONS.items() for mode in modes]


@dataclass
class Target:
    url: str
    schema: Any


@pytest.fixture(scope="module")
def target(make_pipeline: Callable[..., QAPipeline]) -> Iterator[Target]:
    """The app under a real uvicorn server; the schema is the one it serves."""
    with serve_app(create_app(pipeline=make_pipeline(api_key=API_KEY))) as url:
        yield Target(url, schemathesis.openapi.from_url(f"{url}/openapi.json"))


def test_every_operation_is_fuzzed(target: Target) -> None:
    in_schema = {f"{r.ok().method.upper()} {r.ok().path}" for r in target.schema.get_all_operations()}
    assert in_schema == set(OPERATIONS)


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{label}-{mode.value}" for label, mode in CASES])
def test_operation_conforms(target: Target, label: str, mode: GenerationMode) -> None:
    method, path = label.split(" ", 1)
    operation = target.schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=OPERATIONS[label][0],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case) -> None:
        # The key rides along so that writes get past the door and their handling is fuzzed too.
        headers = {"Authorization": f"Bearer {API_KEY}", **(case.headers or {})}
        case.call_and_validate(base_url=target.url, headers=headers, checks=CHECKS, timeout=60)

    run()
