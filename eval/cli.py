"""The `citeqa` command line, eval layer: the service's commands plus `eval` and `calibrate`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from eval import calibrate, commands
from service import cli as service_cli


def build_parser(
    *more: service_cli.Register,
) -> tuple[argparse.ArgumentParser, dict[str, service_cli.Handler]]:
    return service_cli.build_parser(commands.register, calibrate.register, *more)


def main(argv: Sequence[str] | None = None) -> int:
    return service_cli.run(*build_parser(), argv)
