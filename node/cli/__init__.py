"""The ``gridchain`` command line.

Each subcommand lives in its own module in this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable
taking the parsed ``argparse.Namespace`` and returning the exit status).
To add a command, write the module and name it in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Order here is the order in ``gridchain --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "sim",
    "keys",
    "genesis",
    "member",
    "node",
    "join",
    "devnet",
    "bench",
    "market",
    "tx",
    "channel",
    "query",
    "proof",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridchain",
        description="GridChain: a consortium blockchain for peer-to-peer electricity trading.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"node.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
