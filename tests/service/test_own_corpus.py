"""Serving your own folder in one line, and a busy port found before any indexing.

A new user's first hour: `CITEQA_CORPUS_DIR=... make run` was refused (the data directory held seeds/),
indexing another folder needed `--replace` or another data directory, found only by trial, and `make run`
with the port taken re-indexed first, then failed."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from citeqa.eval.bench.live_server import free_port
from citeqa.service.cli import main
from citeqa.service.settings import DEFAULT_CORPUS, REPO_ROOT, Settings, corpus_data_dir

from tests.conftest import child_env
from tests.e2e.test_web_page import BROWSER, rendered

POLICY = (
    "# Leave Policy\n\nEffective date: 1 March 2025\n\n## 2. Annual leave\n\n"
    "Full-time staff receive 27 days of annual leave each year, plus bank holidays.\n"
)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_another_folder_gets_its_own_data_directory(tmp_path: Path) -> None:
    corpus = tmp_path / "My Policies"
    own = Settings(corpus_dir=corpus).data_dir
    assert own == corpus_data_dir(corpus) and own.parent == Path(".citeqa") / "corpora"
    assert own.name.startswith("My-Policies-")
    # Another folder of the same name elsewhere is another index.
    assert Settings(corpus_dir=tmp_path / "x" / "My Policies").data_dir != own
    # seeds/ keeps the default, and a data directory given explicitly always wins.
    assert Settings(corpus_dir=DEFAULT_CORPUS).data_dir == Settings().data_dir == Path(".citeqa")
    assert Settings(corpus_dir=corpus, data_dir=tmp_path / "d").data_dir == tmp_path / "d"
    # With Postgres the database is the place, one corpus per database: the data directory (which records
    # the folder the database holds, and refuses another) is not switched under it.
    assert Settings(corpus_dir=corpus, database_url="postgresql://h/db").data_dir == Path(".citeqa")
    # What `citeqa serve` re-validates from a dump stays where it was.
    settings = Settings(corpus_dir=corpus)
    assert Settings.model_validate(settings.model_dump()).data_dir == own


def test_the_environment_picks_the_same_data_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`CITEQA_CORPUS_DIR=DIR citeqa ask` must find the index that `citeqa serve --corpus DIR` built."""
    monkeypatch.delenv("CITEQA_DATA_DIR", raising=False)
    monkeypatch.setenv("CITEQA_CORPUS_DIR", str(tmp_path))
    assert Settings().data_dir == corpus_data_dir(tmp_path)


def test_serve_with_a_busy_port_indexes_nothing(
    busy_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "leave.md").write_text(POLICY)
    monkeypatch.setenv("CITEQA_DATA_DIR", str(tmp_path / "data"))
    started = time.monotonic()
    assert main(["serve", "--corpus", str(corpus), "--port", str(busy_port)]) == 1
    assert main(["serve", "--index", "--port", str(busy_port)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 2 and all("already in use" in line for line in lines), err
    assert not (tmp_path / "data").exists()  # no index, no corpus record, nothing written
    assert time.monotonic() - started < 60  # no model was loaded (the real check: nothing written)


@pytest.mark.e2e  # a child process: make, then citeqa
def test_make_run_with_a_busy_port_indexes_nothing(busy_port: int, tmp_path: Path) -> None:
    """The Makefile's own recipe (`-o` skips the install step, which this checkout has done)."""
    if shutil.which("make") is None:
        pytest.skip("no make")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "leave.md").write_text(POLICY)
    env = child_env(
        CITEQA_PORT=str(busy_port), CITEQA_DATA_DIR=str(tmp_path / "data"), CITEQA_CORPUS_DIR=str(corpus)
    )
    run = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "run"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0
    assert "already in use" in run.stderr and "indexed" not in run.stdout + run.stderr
    assert not (tmp_path / "data" / "index").exists()


@pytest.mark.e2e
def test_serve_corpus_indexes_and_serves_that_folder_in_its_own_place(tmp_path: Path) -> None:
    """`citeqa serve --corpus DIR` from a directory whose .citeqa already holds another folder's index:
    no --replace, no refusal, the other index untouched; `CITEQA_CORPUS_DIR=DIR citeqa ask` then finds
    the same index (and so the running service)."""
    corpus = tmp_path / "policies"
    corpus.mkdir()
    (corpus / "leave.md").write_text(POLICY)
    (tmp_path / ".citeqa" / "index").mkdir(parents=True)
    (tmp_path / ".citeqa" / "corpus.json").write_text(json.dumps({"folder": str(DEFAULT_CORPUS)}))
    port = free_port()
    env = child_env(CITEQA_PORT=str(port))
    log = (tmp_path / "serve.log").open("wb")
    cli = [sys.executable, "-m", "citeqa"]
    server = subprocess.Popen(
        [*cli, "serve", "--corpus", str(corpus)], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        question = "How many days of annual leave do full-time staff get?"
        answer = httpx.post(f"{url}/v1/ask", json={"question": question}).json()
        assert answer["answers"] and answer["answers"][0]["text"] in ("27", "27 days")
        # The citation carries its section: in the API, chat's Sources, and on the page.
        assert answer["answers"][0]["citation"]["section"] == ["2. Annual leave"]
        assert answer["answers"][0]["citation"]["date"] == "2025-03-01"
        chat = httpx.post(
            f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": question}]}
        ).json()
        assert "*Leave Policy*, 2. Annual leave, characters" in chat["choices"][0]["message"]["content"]
        assert chat["citations"][0]["section"] == ["2. Annual leave"]
        if BROWSER is not None:
            dom = rendered(f"{url}/?q={quote(question)}")
            assert "Leave Policy (2025-03-01), 2. Annual leave, characters" in dom
        own = tmp_path / corpus_data_dir(corpus)
        assert (own / "index" / "CURRENT").is_file()
        assert list((tmp_path / ".citeqa" / "index").iterdir()) == []  # the other index untouched
        asked = subprocess.run(
            [*cli, "ask", "How many days of annual leave do full-time staff get?"],
            cwd=tmp_path,
            env={**env, "CITEQA_CORPUS_DIR": str(corpus)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert asked.returncode == 0 and "answered by the service" in asked.stderr, asked.stderr
        assert "Answer: 27" in asked.stdout
        assert "Source: Leave Policy, 2. Annual leave [leave.md" in asked.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert "indexed 1 documents" in (tmp_path / "serve.log").read_text()
