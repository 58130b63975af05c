"""Abuse limits as plain ASGI: a per-client rate limit (off by default) and a deadline for the body.

The rate limit answers 429 before any work is done, so that a burst of requests from one address
costs a dictionary lookup each instead of a pass through the models. The body deadline stops a
client that opens a request and then trickles (or never sends) its body from holding a worker.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import anyio
from citeqa.service.api.internal.errors import send_error
from citeqa.service.settings import Settings
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Operations probes and scrapers must always reach, whatever a client's budget.
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class BodyReadTimeout(HTTPException):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} seconds")


class RateLimiter:
    """Token buckets per client key: `burst` requests at once, refilled at `per_minute`."""

    def __init__(
        self,
        per_minute: int,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 100_000,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)

    def take(self, key: str) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until the next token."""
        now = self.clock()
        tokens, counted = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - counted) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > self.max_clients:
                self._forget_idle(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        """Drop clients whose bucket has refilled: forgetting them changes nothing."""
        full_after = self.burst / self.rate
        for key in [k for k, (_, counted) in self._buckets.items() if now - counted >= full_after]:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


class GuardMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.read_timeout = settings.read_timeout_s
        self.limiter = (
            RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
            if settings.rate_limit_per_minute > 0
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        framing = {k for k, _ in scope.get("headers", ()) if k in (b"content-length", b"transfer-encoding")}
        if len(framing) == 2:
            # Framed twice: a proxy in front may read the body by the other header than this server
            # does, and the rest of the bytes would be taken for another request (smuggling).
            message = "the request has both Content-Length and Transfer-Encoding; send one"
            await send_error(send, 400, "ambiguous_framing", message, {"connection": "close"})
            return
        if self.limiter is not None and scope["path"] not in UNLIMITED_PATHS:
            client = scope.get("client")
            wait = self.limiter.take(client[0] if client else "unknown")
            if wait > 0:
                retry = max(1, math.ceil(wait))
                message = f"too many requests from this address; retry in {retry} s"
                await send_error(send, 429, "rate_limited", message, {"retry-after": str(retry)})
                return
        deadline = anyio.current_time() + self.read_timeout
        body_done = False
        started = False

        async def receive_by_deadline() -> Message:
            nonlocal body_done
            if body_done:
                # After the body, receive() only waits for a disconnect (streamed replies): no deadline.
                return await receive()
            try:
                with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                    message = await receive()
            except TimeoutError:
                raise BodyReadTimeout(self.read_timeout) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def watch_start(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive_by_deadline, watch_start)
        except BodyReadTimeout as exc:
            # Raised where the body was read outside FastAPI's handlers (a streamed upload).
            if not started:
                await send_error(send, 408, "request_timeout", exc.detail, {"connection": "close"})


def host_name(host_header: str) -> str:
    """The host part of a Host header, lower-case: `[::1]:8000` -> `[::1]`, `A.org:80` -> `a.org`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


# The page's own files only: no inline script, no framing (clickjacking), no plugins. The API docs
# (Swagger UI, ReDoc) need inline styles and ReDoc a blob: worker.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = PAGE_CSP + "; style-src 'self' 'unsafe-inline'; worker-src 'self' blob:"
DOCS_PATHS = frozenset({"/docs", "/redoc"})


class HostGuardMiddleware:
    """Answer only to allowed Host names (DNS rebinding), and send security headers with every reply.

    A web page on another site cannot read a service on the user's machine through its own name once
    that name resolves to 127.0.0.1: its requests carry its own Host, which is refused with 421.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.allowed = settings.host_allow_list

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"] in DOCS_PATHS else PAGE_CSP
        security = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"content-security-policy", csp.encode()),
            (b"referrer-policy", b"no-referrer"),
        ]

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *security]}
            await send(message)

        if self.allowed is not None:
            host = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), None)
            if not host:
                await send_error(send_secured, 400, "missing_host", "the request has no Host header")
                return
            if host_name(host) not in self.allowed:
                message = (
                    f"this service does not answer to the host name {host_name(host)!r}; "
                    "add it to CITEQA_ALLOWED_HOSTS if it is yours"
                )
                await send_error(send_secured, 421, "host_not_allowed", message)
                return
        await self.app(scope, receive, send_secured)
