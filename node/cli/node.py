"""``gridchain node --home DIR``: run one validator (see ``node.ops.service``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("node", help="run one validator node from its home directory")
    parser.add_argument("--home", required=True, type=Path, help="node home (node.toml, genesis.json, key)")
    parser.add_argument("--log-level", default=None, help="debug, info, warning, error (default: node.toml)")
    parser.add_argument("--state-sync", action="store_true",
                        help="start an empty or far-behind node from a peer's certified snapshot")
    parser.set_defaults(func=run)


def event_loop_factory() -> Any:
    """uvloop when it is installed, else the default asyncio loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(args: argparse.Namespace) -> int:
    from contracts.errors import GenesisError
    from node.chain.storage import StorageError
    from node.ops.config import ConfigError
    from node.ops.keys import KeyFileError
    from node.ops.service import run_node

    if getattr(args, "state_sync", False):
        os.environ["GRIDCHAIN_STATE_SYNC"] = "1"  # read with the node's config (node.ops.config)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            return runner.run(run_node(args.home, log_level=args.log_level))
    except (ConfigError, GenesisError, KeyFileError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
