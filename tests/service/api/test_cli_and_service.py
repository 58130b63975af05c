"""The command line beside a running service: a busy port, and `citeqa ask` answered by the service."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from citeqa.eval.bench.live_server import serve_app as serve
from citeqa.service.api import create_app
from citeqa.service.cli import main
from citeqa.service.qa.pipeline import QAPipeline

QUESTION = "Which city was the first Made in China 2025 pilot demonstration city?"


def test_serve_on_a_busy_port_says_only_that(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "already in use" in lines[0], err
    assert "serving on" not in err


@pytest.mark.e2e
def test_ask_uses_a_local_service_with_the_same_index(
    make_pipeline: Callable[..., QAPipeline],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pipeline = make_pipeline()
    with serve(create_app(pipeline=pipeline)) as url:
        monkeypatch.setenv("CITEQA_DATA_DIR", str(pipeline.settings.data_dir))
        monkeypatch.setenv("CITEQA_PORT", url.rsplit(":", 1)[1])
        assert main(["ask", QUESTION]) == 0
        out, err = capsys.readouterr()
        assert out.startswith("Answer: Ningbo") and "[[Ningbo]]" in out
        assert f"answered by the service at {url}" in err
        # Bad input is still one line, now with the service's message.
        assert main(["ask", QUESTION, "--top-k", "21"]) == 1
        assert "top_k must be between 1 and 20" in capsys.readouterr().err
        # A service over another index is not used.
        monkeypatch.setenv("CITEQA_DATA_DIR", str(make_pipeline().settings.data_dir))
        assert main(["ask", QUESTION, "--json"]) == 0
        assert "answered by the service" not in capsys.readouterr().err
