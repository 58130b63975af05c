"""The `citeqa serve` and `citeqa feedback` commands' argument handling (the server itself: tests/e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest
from citeqa.indexing.errors import StoreUnavailableError
from citeqa.service.api.internal.feedback_store import FeedbackEntry, FeedbackStore
from citeqa.service.cli import build_parser, main


def test_serve_rejects_a_bad_port_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "70000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("citeqa: error: bad setting port")
    assert "\n" not in err


def test_commands_are_registered() -> None:
    parser, handlers = build_parser()
    assert {"serve", "mcp", "feedback"} <= set(handlers)
    args = parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "9000"])
    assert (args.host, args.port) == ("0.0.0.0", 9000)
    with pytest.raises(SystemExit):
        parser.parse_args(["feedback"])


def test_feedback_export_failures_are_one_line_and_leave_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A feedback store path that is a folder or not a database was a sqlite3 traceback (and a 500 on every
    POST /v1/feedback), leaving an empty export file; an export to a folder was IsADirectoryError."""
    (tmp_path / "not-a-db").write_text("plain text")
    out = tmp_path / "out.jsonl"
    for store in (tmp_path, tmp_path / "not-a-db"):
        monkeypatch.setenv("CITEQA_FEEDBACK_DB", str(store))
        assert main(["feedback", "export", "-o", str(out)]) == 1
        err = capsys.readouterr().err
        assert (
            "cannot open the feedback store" in err and "CITEQA_FEEDBACK_DB" in err and "Traceback" not in err
        )
        assert not out.exists() and not list(tmp_path.glob(".*partial"))
    monkeypatch.setenv("CITEQA_FEEDBACK_DB", str(tmp_path / "feedback.sqlite3"))
    assert main(["feedback", "export", "-o", str(tmp_path)]) == 1
    assert "it is a folder" in capsys.readouterr().err
    with pytest.raises(StoreUnavailableError):
        FeedbackStore(tmp_path).add(FeedbackEntry("q?", "a", True, None, None, None, None))


def test_an_address_it_cannot_listen_on_points_at_the_host(capsys: pytest.CaptureFixture[str]) -> None:
    """It said "stop the other server or pick another port" for a host name that does not resolve."""
    assert main(["serve", "--host", "not a host", "--port", "8799"]) == 1
    err = capsys.readouterr().err
    assert "check the address (--host, CITEQA_HOST)" in err and "port" not in err.split(":", 2)[2]


def test_postgres_start_checks_its_port_first(capsys: pytest.CaptureFixture[str]) -> None:
    """`--port 70000` or a port in use ended in pg_ctl's two lines, "could not start server"."""
    import socket

    assert main(["postgres", "start", "--port", "70000"]) == 1
    assert "give a port from 1024 to 65535" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["postgres", "start", "--port", str(taken.getsockname()[1])]) == 1
    assert "already in use" in capsys.readouterr().err
