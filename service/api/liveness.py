"""For programs that run the service and talk to it (benchmarks, soak and load scripts, tests):
a free loopback port, and waiting until /readyz says the models and index are loaded."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx


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
