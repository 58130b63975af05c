"""The installed `citeqa` command: the eval layer's commands plus `bench` and `bench-stores`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench import run as bench
from bench import store_scale
from eval import cli as eval_cli
from service import cli as service_cli


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, service_cli.Handler]]:
    return eval_cli.build_parser(bench.register, store_scale.register)


def main(argv: Sequence[str] | None = None) -> int:
    return service_cli.run(*build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
