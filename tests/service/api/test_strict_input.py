"""Input the probe of issue 19 found accepted: loose JSON types, API keys that can never match or are too
short, and requests framed twice (Content-Length and Transfer-Encoding). Unit tests: no models."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from citeqa.service.api.internal.guard import GuardMiddleware
from citeqa.service.settings import Settings
from citeqa.service.wire import AskRequest
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send


@pytest.mark.parametrize("value", [True, "0.5", "1", [0.5], {"p": 0.5}])
def test_min_answer_probability_must_be_a_json_number(value: Any) -> None:
    with pytest.raises(ValidationError):
        AskRequest.model_validate_json(json.dumps({"question": "why?", "min_answer_probability": value}))


@pytest.mark.parametrize(("field", "value"), [("top_k", True), ("top_k", "3"), ("max_answers", False)])
def test_counts_must_be_json_integers(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        AskRequest.model_validate_json(json.dumps({"question": "why?", field: value}))


def test_numbers_are_still_numbers() -> None:
    body = AskRequest.model_validate_json('{"question": "why?", "min_answer_probability": 1, "top_k": 3}')
    assert body.min_answer_probability == 1.0 and body.top_k == 3
    assert (
        AskRequest.model_validate_json(
            '{"question": "q", "min_answer_probability": 0.25}'
        ).min_answer_probability
        == 0.25
    )


# --- the API key ----------------------------------------------------------------------------------
def test_api_key_is_trimmed() -> None:
    key = Settings(api_key="  a-long-enough-key-0123456789\n").api_key  # type: ignore[arg-type]
    assert key is not None and key.get_secret_value() == "a-long-enough-key-0123456789"


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("k", "at least"),
        ("short-key", "at least"),
        ("clé-secrète-0123456789", "ASCII"),
        ("key with space 0123", "space"),
    ],
)
def test_api_keys_that_could_never_work_or_are_too_short_are_refused(key: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        Settings(api_key=key)  # type: ignore[arg-type]


def test_a_blank_api_key_means_none() -> None:
    assert Settings(api_key="   ").api_key is None  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["aaaaaaaaaaaaaaaa", "0123456789abcdef", "password12345678"])
def test_weak_api_keys_are_warned_about(key: str) -> None:
    warning = Settings(api_key=key).api_key_warning  # type: ignore[arg-type]
    assert warning is not None and "weak" in warning and key not in warning


def test_a_strong_api_key_gets_no_warning() -> None:
    assert Settings(api_key="v8Qm2-xT9zR4pL7wK1nB6cY3").api_key_warning is None  # type: ignore[arg-type]


# --- framing --------------------------------------------------------------------------------------
async def _through_guard(headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[bytes, bytes], bool]:
    reached = False

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal reached
        reached = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/ask",
        "headers": headers,
        "client": ("1.2.3.4", 5),
    }
    await GuardMiddleware(app, Settings())(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), reached


def test_a_request_with_both_content_length_and_transfer_encoding_is_refused() -> None:
    status, headers, reached = anyio.run(
        _through_guard, [(b"content-length", b"5"), (b"transfer-encoding", b"chunked")]
    )
    assert status == 400 and not reached
    assert headers[b"connection"] == b"close"  # nothing after it on this connection is read


def test_a_request_framed_once_passes() -> None:
    assert anyio.run(_through_guard, [(b"content-length", b"5")])[0] == 200
    assert anyio.run(_through_guard, [(b"transfer-encoding", b"chunked")])[0] == 200
