"""The installed `citeqa` command: every layer's commands (see citeqa.eval.cli)."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from citeqa.eval.cli import main as run_cli

    return run_cli(argv)
