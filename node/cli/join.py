"""``gridchain join --genesis FILE --peers URL,... --home DIR``: make an observer's home.

Writes ``DIR/node.toml`` (``node_role = "observer"``, the peers' observer URLs),
a copy of the genesis and a new ``DIR/node_key.json`` (0600), and prints the node
key. The member then names that key on chain from its registered account
(``gridchain tx set-node-key --node-key DIR/node_key.json --key ACCOUNT_KEY``) and
runs ``gridchain node --home DIR``; validators let the node in once the
transaction has committed. docs/OBSERVERS.md walks through it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("join", help="create an observer node's home (a member's own verified node)")
    parser.add_argument("--genesis", required=True, type=Path, help="the chain's genesis.json")
    parser.add_argument("--peers", required=True,
                        help="comma-separated p2p URLs of validators or observers, e.g. ws://host:26656/p2p")
    parser.add_argument("--home", required=True, type=Path, help="the observer's home directory")
    parser.add_argument("--name", default=None, help="node name (default: the home directory's name)")
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--p2p-port", type=int, default=26656)
    parser.add_argument("--api-port", type=int, default=8080)
    parser.add_argument("--metrics-port", type=int, default=9100)
    parser.add_argument("--force", action="store_true", help="overwrite an existing node.toml (the key is kept)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from contracts.errors import GenesisError
    from node.ops.genesis import load_genesis
    from node.ops.observers import create_observer_home

    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if not peers:
        print("error: --peers needs at least one URL", file=sys.stderr)
        return 2
    try:
        load_genesis(args.genesis)  # refuse a file that cannot start a chain
        info = create_observer_home(
            args.home, genesis_json=args.genesis.read_bytes(), name=args.name or args.home.resolve().name,
            peers=peers, listen_host=args.listen_host, p2p_port=args.p2p_port, api_port=args.api_port,
            metrics_port=args.metrics_port, force=args.force)
    except (GenesisError, FileExistsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2))
    print(f"next: gridchain tx set-node-key --node-key {info['node_key']} --key ACCOUNT_KEY --node API_URL "
          f"--wait, then gridchain node --home {args.home}", file=sys.stderr)
    return 0
