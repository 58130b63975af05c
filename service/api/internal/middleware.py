"""Per-request plumbing as plain ASGI: request id, body-size limits, metrics and one log line."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from citeqa.service.api.internal.errors import send_error
from citeqa.service.api.internal.state import ServiceState
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("citeqa.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
UPLOAD_PATH = "/v1/documents"
CHAT_PATH = "/v1/chat/completions"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _route_label(scope: Scope) -> str:
    """The route template, so that ids in paths do not explode the metric labels."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    raw = str(scope.get("path", ""))
    if raw in _FIXED_PATHS:  # a request refused before routing (a body over the limit) or served outside it
        return raw
    for prefix in ("/mcp", "/static"):
        if raw == prefix or raw.startswith(prefix + "/"):
            return prefix
    return "unmatched"


_FIXED_PATHS = frozenset(
    {"/", "/v1/ask", "/v1/search", "/v1/documents", "/v1/feedback", "/v1/chat/completions", "/v1/models"}
    | {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"}
)


class RequestMiddleware:
    def __init__(self, app: ASGIApp, get_state: Callable[[], ServiceState]) -> None:
        self.app = app
        self.get_state = get_state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.get_state()
        settings = state.settings
        offered_id = _header(scope, b"x-request-id")
        request_id = offered_id if offered_id and _REQUEST_ID.match(offered_id) else uuid.uuid4().hex[:16]
        request_state: dict[str, Any] = scope.setdefault("state", {})
        request_state["request_id"] = request_id
        method = scope["method"]
        limit = settings.max_body_bytes
        if method == "POST" and scope["path"] == UPLOAD_PATH:
            limit = settings.max_upload_bytes
        elif method == "POST" and scope["path"] == CHAT_PATH:
            limit = settings.max_chat_body_bytes
        status = {"code": 500, "started": False}
        started = time.perf_counter()
        metrics = state.metrics
        metrics.in_flight.inc()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            declared = _header(scope, b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                await send_error(send_with_id, 413, "payload_too_large", BodyTooLarge(limit).detail)
            else:
                await self.app(scope, limited_receive, send_with_id)
        except BodyTooLarge as exc:
            # Raised while a router read the body outside FastAPI's handlers (a streamed upload).
            if not status["started"]:
                await send_error(send_with_id, 413, "payload_too_large", exc.detail)
        finally:
            elapsed = time.perf_counter() - started
            metrics.in_flight.dec()
            route = _route_label(scope)
            metrics.requests.labels(method=method, route=route, status=str(status["code"])).inc()
            metrics.latency.labels(method=method, route=route).observe(elapsed)
            access_log.info(
                json.dumps(
                    {
                        "request_id": request_id,
                        "method": method,
                        "path": scope["path"],
                        "route": route,
                        "status": status["code"],
                        "duration_ms": round(elapsed * 1000, 2),
                        "stages_ms": request_state.get("timings_ms", {}),
                        "client": (scope.get("client") or ("-",))[0],
                    },
                    separators=(",", ":"),
                )
            )
