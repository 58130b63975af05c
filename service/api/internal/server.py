"""The shipped uvicorn configuration: bounded connections, deadlines for idle and slow clients.

Stock uvicorn arms no timer on a connection that never sends a request, and a keep-alive
connection that trickles header bytes re-arms nothing either: about a thousand such sockets
exhausted the common 1,024-file limit and /healthz timed out. Here every connection must finish
its request headers within `header_timeout_s` of opening (or of its last response), and at the
connection cap a new connection evicts the one that has waited longest on its client, so real requests
keep being served.

Waiting on its client is more than idle: a request whose body is still owed (sent a byte every few
seconds, it would hold its slot for the whole body deadline) and a reply the client does not read are
stalled by the client too. Only requests the server itself is working on are never evicted. Before
this, 510 slowly sent bodies held every slot and /healthz was refused for as long as they kept coming.
"""

from __future__ import annotations

import asyncio
import resource
import socket
from typing import Any

import h11
import uvicorn
from citeqa.service.settings import Settings
from uvicorn.protocols.http.h11_impl import H11Protocol

# Files the process needs besides client sockets: models, index files, SQLite, the listening socket.
RESERVED_FDS = 128  # also covers one accept burst past the cap
MAX_HEADER_BYTES = 32 * 1024
ACCEPT_BURST = 64


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Send each write at once (no Nagle): h11 writes a reply's head and body separately, and with Nagle
    the body waited for the client's delayed ACK of the head, 40 ms on Linux, on every request of a
    kept-alive connection (search over HTTP p50 52 ms against 12 in the server)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and, at the connection cap, eviction of the
    connection that has waited longest on its client."""

    max_connections = 500
    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        set_nodelay(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._last_progress = self.loop.time()
        self._request_cycle: object = None
        self._arm_header_deadline()
        if len(self.connections) > self.max_connections:
            open_connections = [c for c in self.connections if not c.transport.is_closing()]
            if len(open_connections) > self.max_connections:
                self._evict_stalled(open_connections)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._request_cycle = self.cycle
        self._last_progress = self.loop.time()
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

    @property
    def _waiting_on_client(self) -> bool:
        """Idle, or its request stalls on the client: a body still owed, or a reply it does not read.
        A request the server is working on (the client sent all of it) is never counted."""
        return self._idle or self.conn.their_state is h11.SEND_BODY or self.flow.write_paused

    def _evict_stalled(self, open_connections: list[Any]) -> None:
        stalled = [
            c
            for c in open_connections
            if isinstance(c, GuardedH11Protocol) and c is not self and c._waiting_on_client
        ]
        if stalled:
            # The least recent progress first: a client sending its body at a real rate keeps its slot.
            min(stalled, key=lambda c: c._last_progress)._close_quietly()
        else:
            self._close_quietly()  # every other connection is being worked on: refuse this one

    def data_received(self, data: bytes) -> None:
        self._last_progress = self.loop.time()
        super().data_received(data)

    def resume_writing(self) -> None:
        self._last_progress = self.loop.time()  # the client read some of the reply
        super().resume_writing()

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
