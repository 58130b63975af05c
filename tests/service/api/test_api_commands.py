"""The `citeqa serve` and `citeqa feedback` commands' argument handling (the server itself: tests/e2e)."""

from __future__ import annotations

import pytest
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
