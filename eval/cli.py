"""The `citeqa` command line, whole: the service's commands plus the eval layer's `eval`, `calibrate`,
`train-reader`, `reader-eval`, `bench` and `bench-stores`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

# Each module here registers its commands without importing what running them needs (torch, FAISS, the
# web stack, psycopg): tests/test_cli_startup.py checks that building this parser loads none of them.
from citeqa.eval import calibrate, commands
from citeqa.eval.bench import commands as bench_commands
from citeqa.eval.training import commands as training_commands
from citeqa.service import cli as service_cli


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, service_cli.Handler]]:
    return service_cli.build_parser(
        commands.register,
        calibrate.register,
        training_commands.register,
        bench_commands.register,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return service_cli.run(*build_parser(), argv)
