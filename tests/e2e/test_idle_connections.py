"""M2: a flood of connections that never send a request must not take the service down.

The real `citeqa serve` runs in a child whose open-file limit is 512 (hard and soft, like a small
container), and 600 idle sockets are opened to it: more than it can hold. Before the fix the server hit
`Too many open files` and /healthz timed out; now the longest-idle connections are evicted at the cap
and idle ones are closed after the header deadline, so /healthz keeps answering.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from citeqa.eval.bench.live_server import free_port
from citeqa.service.settings import REPO_ROOT

from tests.conftest import child_env

pytestmark = pytest.mark.e2e

CHILD_FILE_LIMIT = 512
IDLE_SOCKETS = 600
HEADER_TIMEOUT_S = 3


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (CHILD_FILE_LIMIT, CHILD_FILE_LIMIT))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < IDLE_SOCKETS + 100:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, IDLE_SOCKETS + 100), hard))
    port = free_port()
    data_dir: Path = tmp_path_factory.mktemp("idle-data")  # no index: /healthz needs none
    env = child_env(CITEQA_DATA_DIR=str(data_dir), CITEQA_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S))
    child = subprocess.Popen(
        [sys.executable, "-m", "citeqa.service.cli", "serve", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_limit_files,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield url
    finally:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()


def _open_idle(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sockets.append(sock)
    return sockets


def test_healthz_answers_through_a_flood_of_idle_connections(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    sockets = _open_idle(port, IDLE_SOCKETS)
    try:
        time.sleep(0.5)  # let the server accept them all
        for _ in range(3):
            response = httpx.get(f"{server}/healthz", timeout=5)
            assert response.status_code == 200
        # The server evicted idle sockets to stay under its file limit: some of ours were closed.
        closed = 0
        for sock in sockets:
            sock.settimeout(0.01)
            with contextlib.suppress(TimeoutError, OSError):
                closed += sock.recv(1) == b""
        assert closed >= IDLE_SOCKETS - CHILD_FILE_LIMIT
    finally:
        for sock in sockets:
            sock.close()


def test_a_connection_that_sends_no_request_is_closed_after_the_header_deadline(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    silent, slow = _open_idle(port, 2)
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
    try:
        for sock in (silent, slow):
            sock.settimeout(HEADER_TIMEOUT_S + 10)
            assert sock.recv(1) == b""  # closed by the server, not by our timeout
    finally:
        silent.close()
        slow.close()
