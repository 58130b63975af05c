"""`citeqa --help`, a one-line error and a question forwarded to a running service start without the heavy
libraries: every command took 7-11 s to start (a 0.67 s answer took 11 s) because registering the commands
imported torch, FAISS, the web stack and psycopg. Structural, not timed: the modules a run imported."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import child_env

# Child processes (a fresh interpreter is the only honest count of what a command imports).
pytestmark = pytest.mark.e2e

# What only running a command needs: models (torch, transformers), the index (FAISS, tantivy), the web stack
# (fastapi, uvicorn, MCP), Postgres (psycopg), charts (matplotlib).
HEAVY = frozenset(
    {
        "torch",
        "transformers",
        "sentence_transformers",
        "faiss",
        "tantivy",
        "fastapi",
        "starlette",
        "uvicorn",
        "mcp",
        "psycopg",
        "matplotlib",
    }
)
# A one-line error or a forwarded question may look at the index folder (FAISS's module comes with the
# local store), never load a model.
MODELS = frozenset({"torch", "transformers", "sentence_transformers"})


def imported_by(args: list[str], **env: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The top-level packages `python -m citeqa ARGS` imported (from -X importtime), and the run."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "citeqa", *args],
        capture_output=True,
        text=True,
        env=child_env(**env),
        timeout=120,
    )
    modules = {
        line.split("|")[-1].strip().split(".")[0]
        for line in run.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return modules, run


def test_help_imports_none_of_the_heavy_libraries() -> None:
    modules, run = imported_by(["--help"])
    assert run.returncode == 0 and "bench-stores" in run.stdout
    assert "argparse" in modules  # the import log was read
    assert not modules & HEAVY, sorted(modules & HEAVY)


@pytest.mark.parametrize("command", ["eval", "calibrate", "bench", "bench-stores", "serve", "train-reader"])
def test_a_commands_help_imports_none_of_the_heavy_libraries(command: str) -> None:
    modules, run = imported_by([command, "--help"])
    assert run.returncode == 0, run.stderr[-500:]
    assert not modules & HEAVY, sorted(modules & HEAVY)


def test_building_the_parser_in_process_loads_none_of_them() -> None:
    code = (
        "import sys; from citeqa.eval.cli import build_parser; build_parser(); "
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env())
    assert not set(json.loads(run.stdout.replace("'", '"'))) & HEAVY


def test_a_one_line_error_loads_no_model(tmp_path: Path) -> None:
    modules, run = imported_by(["ask", "   "], CITEQA_DATA_DIR=str(tmp_path))
    assert run.returncode == 1 and "citeqa: error: the question is empty" in run.stderr
    assert not modules & MODELS, sorted(modules & MODELS)
    modules, run = imported_by(["index", str(tmp_path / "missing")], CITEQA_DATA_DIR=str(tmp_path))
    assert run.returncode == 1 and "does not exist" in run.stderr
    assert not modules & MODELS, sorted(modules & MODELS)


class _Service(BaseHTTPRequestHandler):
    """Stands in for `citeqa serve` on its two routes the CLI uses: ready with one index version, and
    one answer."""

    version = ""

    def do_GET(self) -> None:
        self._json({"status": "ready", "index_version": self.version})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        citation = {
            "doc_id": "a.txt",
            "title": "A policy",
            "date": None,
            "page": None,
            "section": ["2. Leave"],
            "start": 10,
            "end": 17,
            "context": {"text": "Staff get 25 days.", "start": 0, "end": 18},
        }
        answer = {"text": "25 days", "score": 0.9, "citation": citation}
        self._json({"no_answer": False, "answers": [answer], "passages": [], "timings_ms": {"total": 5.0}})

    def _json(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_service() -> Iterator[tuple[int, type[_Service]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Service)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], _Service
    finally:
        server.shutdown()
        server.server_close()


def test_a_question_forwarded_to_a_running_service_loads_no_model(
    tmp_path: Path, fake_service: tuple[int, type[_Service]]
) -> None:
    port, handler = fake_service
    index = tmp_path / "index"
    (index / "v-20250101-000000-abcdef12").mkdir(parents=True)
    (index / "CURRENT").write_text("v-20250101-000000-abcdef12\n")
    handler.version = "v-20250101-000000-abcdef12"
    modules, run = imported_by(
        ["ask", "How many days of leave?"], CITEQA_DATA_DIR=str(tmp_path), CITEQA_PORT=str(port)
    )
    assert run.returncode == 0, run.stderr[-800:]
    assert "answered by the service" in run.stderr and "25 days" in run.stdout
    assert (
        "Source: A policy, 2. Leave [a.txt" in run.stdout
    )  # the section path, as chat and the page write it
    assert not modules & MODELS, sorted(modules & MODELS)
