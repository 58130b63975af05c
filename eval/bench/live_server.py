"""A real server to talk to, for the benchmark, the soak and load scripts and the tests: `citeqa serve` in
a subprocess, or an app under uvicorn on a thread; each on a free loopback port, yielded once /readyz
says the models and index are loaded."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from citeqa.service.api.internal.server import uvicorn_config
from citeqa.service.settings import REPO_ROOT
from fastapi import FastAPI


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_ready(
    url: str, timeout: float, process: subprocess.Popen[bytes] | None = None, poll_s: float = 0.1
) -> None:
    """Return once `url`/readyz answers 200; RuntimeError when `process` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} was not ready within {timeout:.0f} s")
        time.sleep(poll_s)


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    exit_code: int | None = None  # set once the server has been stopped


@contextlib.contextmanager
def running_server(
    env: Mapping[str, str], log_path: Path, *, index_first: bool = False, ready_timeout: float = 120.0
) -> Iterator[ServerProcess]:
    """`citeqa serve` (after `citeqa index` when `index_first`) in a subprocess configured by `env`
    (CITEQA_* variables); its output goes to `log_path`, since an unread pipe fills up and blocks it."""
    port = free_port()
    env = {
        **env,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
    }
    cli = [sys.executable, "-m", "citeqa.service.cli"]
    if index_first:  # incremental: cheap when the configured index is already up to date
        subprocess.run([*cli, "index"], env=env, check=True, stdout=subprocess.DEVNULL)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        serve = [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)]
        server = ServerProcess(
            f"http://127.0.0.1:{port}",
            subprocess.Popen(serve, env=env, stdout=log, stderr=subprocess.STDOUT),
        )
        try:
            try:
                wait_until_ready(server.url, ready_timeout, server.process, poll_s=0.2)
            except RuntimeError as exc:
                tail = log_path.read_text(encoding="utf-8", errors="replace")[-500:]
                raise RuntimeError(f"{exc}: {tail}") from exc
            yield server
        finally:
            server.process.terminate()
            try:
                server.exit_code = server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.exit_code = server.process.wait()


@contextlib.contextmanager
def serve_app(app: FastAPI, ready_timeout: float = 60.0) -> Iterator[str]:
    """Run `app` under a real uvicorn server on a thread of this process; yields its base URL once ready."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound before the server starts: no race for the port
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    # The configuration `citeqa serve` ships (connection cap, header deadline), so tests exercise it.
    server = uvicorn.Server(uvicorn_config(app, app.state.citeqa.settings, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until_ready(url, ready_timeout, poll_s=0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
