"""The shipped uvicorn configuration: bounded connections, deadlines for idle and slow clients.

Stock uvicorn arms no timer on a connection that never sends a request, and a keep-alive
connection that trickles header bytes re-arms nothing either: about a thousand such sockets
exhausted the common 1,024-file limit and /healthz timed out. Here every connection must finish
its request headers within `header_timeout_s` of opening (or of its last response), and at the
connection cap a new connection evicts the longest-idle one, so real requests keep being served.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import uvicorn
from citeqa.service.settings import Settings
from uvicorn.protocols.http.h11_impl import H11Protocol

# Files the process needs besides client sockets: models, index files, SQLite, the listening socket.
RESERVED_FDS = 128  # also covers one accept burst past the cap
MAX_HEADER_BYTES = 32 * 1024
ACCEPT_BURST = 64


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and idle eviction at the connection cap."""

    max_connections = 500
    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._idle_since = self.loop.time()
        self._request_cycle: object = None
        self._arm_header_deadline()
        if len(self.connections) > self.max_connections:
            open_connections = [c for c in self.connections if not c.transport.is_closing()]
            if len(open_connections) > self.max_connections:
                self._evict_idle(open_connections)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._request_cycle = self.cycle
        self._idle_since = self.loop.time()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._close_quietly)

    def _cancel_header_deadline(self) -> None:
        if getattr(self, "_header_deadline", None) is not None:
            self._header_deadline.cancel()  # type: ignore[union-attr]
            self._header_deadline = None

    def _close_quietly(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    @property
    def _idle(self) -> bool:
        """No request in progress: nothing would be lost by closing this connection."""
        return self.cycle is None or self.cycle.response_complete

    def _evict_idle(self, open_connections: list[Any]) -> None:
        idle = [
            c for c in open_connections if isinstance(c, GuardedH11Protocol) and c is not self and c._idle
        ]
        if idle:
            min(idle, key=lambda c: c._idle_since)._close_quietly()
        else:
            self._close_quietly()  # every other connection is working: refuse this one

    def handle_events(self) -> None:
        super().handle_events()
        if (
            self.cycle is not self._request_cycle
        ):  # a request's headers arrived: its body has its own deadline
            self._cancel_header_deadline()
            self._request_cycle = self.cycle

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)


def raise_open_file_limit() -> int:
    """Lift the soft limit on open files to the hard one; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(settings: Settings, open_file_limit: int) -> int:
    return max(16, min(settings.max_connections, open_file_limit - RESERVED_FDS))


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """The server configuration `citeqa serve` runs (tests build their servers with it too)."""
    protocol = type(
        "CiteqaH11Protocol",
        (GuardedH11Protocol,),
        {
            "max_connections": connection_cap(settings, raise_open_file_limit()),
            "header_timeout_s": settings.header_timeout_s,
        },
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol,
        timeout_keep_alive=5,
        # Connections accepted in one burst before any is looked at: small, so eviction keeps pace.
        backlog=ACCEPT_BURST,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        access_log=False,
        timeout_graceful_shutdown=10,
        **options,
    )
