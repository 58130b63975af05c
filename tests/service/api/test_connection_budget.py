"""Which connections the server may evict at its connection cap (server.GuardedH11Protocol), on protocol
objects with their request state set by hand: those waiting on their client (idle, a body still owed, a
reply the client does not read), never one whose request the server is working on. The floods against a
real server are in tests/e2e/test_connection_floods.py; a reply too large for the socket buffers is
hard to make there without an index, so the stalled-reply case is shown here."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace
from typing import Any

import h11
import httpx
import uvicorn
from citeqa.service.api.internal.server import GuardedH11Protocol, uvicorn_config
from citeqa.service.settings import Settings


class FakeTransport:
    def __init__(self) -> None:
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def _connection(
    *, request: bool, body_owed: bool = False, reply_unread: bool = False, last_progress: float = 0.0
) -> Any:
    conn = GuardedH11Protocol.__new__(GuardedH11Protocol)
    conn.cycle = SimpleNamespace(response_complete=False) if request else None
    conn.conn = SimpleNamespace(their_state=h11.SEND_BODY if body_owed else h11.DONE)
    conn.flow = SimpleNamespace(write_paused=reply_unread)
    conn.transport = FakeTransport()
    conn._last_progress = last_progress
    return conn


def test_connections_waiting_on_their_client_are_evictable() -> None:
    assert _connection(request=False)._waiting_on_client  # idle between requests
    assert _connection(request=True, body_owed=True)._waiting_on_client  # a slowly sent body
    assert _connection(request=True, reply_unread=True)._waiting_on_client  # a reply not read


def test_a_request_the_server_is_working_on_is_not() -> None:
    assert not _connection(request=True)._waiting_on_client


def test_at_the_cap_the_connection_stalled_longest_goes() -> None:
    working = _connection(request=True, last_progress=0.0)
    unread_old = _connection(request=True, reply_unread=True, last_progress=1.0)
    body_recent = _connection(request=True, body_owed=True, last_progress=5.0)
    newcomer = _connection(request=False, last_progress=9.0)
    newcomer._evict_stalled([working, unread_old, body_recent, newcomer])
    assert unread_old.transport.closed
    assert not working.transport.closed and not body_recent.transport.closed
    assert not newcomer.transport.closed


def test_when_every_other_connection_is_being_worked_on_the_newcomer_is_refused() -> None:
    working = [_connection(request=True) for _ in range(3)]
    newcomer = _connection(request=False, last_progress=9.0)
    newcomer._evict_stalled([*working, newcomer])
    assert newcomer.transport.closed and not any(c.transport.closed for c in working)


def test_replies_go_out_without_waiting_for_the_clients_ack() -> None:
    """The server's sockets send each write at once (TCP_NODELAY): h11 writes a reply's head and body
    apart, and with Nagle the body waited 40 ms for the client's delayed ACK on kept-alive connections."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn_config(app, Settings(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{listener.getsockname()[1]}") as client:
            assert client.get("/").text == "ok"
            sockets = [c.transport.get_extra_info("socket") for c in server.server_state.connections]
            assert sockets and all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()
