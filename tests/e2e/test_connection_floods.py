"""Floods of connections that hold a request open without making progress must not take the service down.

The probe of issue 19: 520 `GET /mcp` event streams (200, then nothing, forever) or 510 bodies sent one
byte every few seconds held every connection slot, and /healthz was refused until the attacker let go.
Here the real `citeqa serve` (no index: /healthz needs none) runs with its default connection cap (500)
and 600 such connections are held open against it while a health checker opens a fresh connection every
quarter second: each check must be answered within 1 s, as a load balancer's health check demands.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from citeqa.eval.bench.live_server import free_port
from citeqa.service.settings import REPO_ROOT

from tests.conftest import child_env

pytestmark = pytest.mark.e2e

FLOOD = 600
HEALTH_DEADLINE_S = 1.0  # a load balancer's health check gives up after about this long
CHECK_FOR_S = 8.0
TRICKLE_EVERY_S = 2.0

EVENT_STREAM = b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
SLOW_BODY_HEAD = (
    b"POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * FLOOD + 200
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    port = free_port()
    data_dir: Path = tmp_path_factory.mktemp("flood-data")
    env = child_env(CITEQA_DATA_DIR=str(data_dir))
    # A file, not a pipe: an unread pipe fills with access-log lines and blocks the server.
    log_path = data_dir / "server.log"
    log = log_path.open("wb")
    child = subprocess.Popen(
        [sys.executable, "-m", "citeqa.service.cli", "serve", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # Wait until the models are loaded (readyz says there is no index), so that loading them does
        # not compete with the health checks for the CPU.
        deadline = time.monotonic() + 120
        while True:
            assert child.poll() is None, log_path.read_text(errors="replace")[-2000:]
            with contextlib.suppress(httpx.TransportError):
                if "no index" in httpx.get(f"{url}/readyz", timeout=2).text:
                    break
            assert time.monotonic() < deadline, "the server did not load its models"
            time.sleep(0.2)
        yield url
    finally:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
        log.close()
        # Evicting a stalled request must not log a traceback per connection (a flood would fill the disk).
        assert "Traceback" not in log_path.read_text(errors="replace")


def _open(port: int, first_bytes: bytes) -> list[socket.socket]:
    sockets = []
    for _ in range(FLOOD):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        with contextlib.suppress(OSError):  # the server may already have evicted it
            sock.sendall(first_bytes)
        sockets.append(sock)
    return sockets


def _health_latencies(url: str, seconds: float) -> list[float]:
    """Fresh-connection health checks for `seconds`; the latency of each (inf: refused or too slow)."""
    latencies = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        started = time.perf_counter()
        try:
            ok = httpx.get(f"{url}/healthz", timeout=HEALTH_DEADLINE_S).status_code == 200
        except httpx.TransportError:
            ok = False
        latencies.append(time.perf_counter() - started if ok else float("inf"))
        time.sleep(0.25)
    return latencies


@contextlib.contextmanager
def _trickling(sockets: list[socket.socket]) -> Iterator[None]:
    """One body byte per socket every TRICKLE_EVERY_S: progress too slow to ever finish in time."""
    done = threading.Event()

    def trickle() -> None:
        while not done.wait(TRICKLE_EVERY_S):
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.send(b" ")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=10)


@pytest.mark.parametrize("flood", ["event streams", "slow bodies"])
def test_healthz_answers_within_a_second_through_600_stalled_requests(server: str, flood: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    first_bytes = EVENT_STREAM if flood == "event streams" else SLOW_BODY_HEAD
    sockets = _open(port, first_bytes)
    try:
        with _trickling(sockets) if flood == "slow bodies" else contextlib.nullcontext():
            time.sleep(0.5)  # every request has reached the app
            latencies = _health_latencies(server, CHECK_FOR_S)
        answered = [t for t in latencies if t != float("inf")]
        worst = max(latencies)
        print(f"{flood}: {len(answered)}/{len(latencies)} checks answered, worst {worst * 1000:.0f} ms")
        assert len(answered) == len(latencies), f"{len(latencies) - len(answered)} health checks failed"
        assert worst <= HEALTH_DEADLINE_S
    finally:
        for sock in sockets:
            sock.close()


def test_get_mcp_is_refused_with_405_and_the_connection_stays_usable(server: str) -> None:
    """The service runs MCP stateless with JSON replies: a GET stream has no purpose, so none is opened."""
    with httpx.Client(base_url=server, timeout=5) as http:
        response = http.get("/mcp", headers={"Accept": "text/event-stream"})
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert response.json()["error"]["code"] == "method_not_allowed"
        assert http.get("/healthz").status_code == 200  # same keep-alive connection
