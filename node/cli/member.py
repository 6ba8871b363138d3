"""``gridchain member config``: make a member's node home from the ceremony's genesis and member files
(``node.ops.member.configure_home``); ``gridchain member init-data``: fresh safety data for the
first start of a new chain (what a Kubernetes init container runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from contracts.errors import GenesisError
from node.ops.keys import KeyFileError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("member", help="one member's node home (after the genesis ceremony)")
    sub = parser.add_subparsers(dest="member_command", metavar="ACTION")
    config = sub.add_parser("config", help="write node.toml (and the TLS certificate) into a member home")
    config.add_argument("--home", required=True, type=Path,
                        help="the home: validator_key.json and genesis.json already in it")
    config.add_argument("--members", nargs="+", required=True, type=Path, metavar="MEMBER_FILE",
                        help="every member file of the consortium (peer addresses)")
    config.add_argument("--listen-host", default="0.0.0.0")
    config.add_argument("--p2p-port", type=int, default=26656)
    config.add_argument("--api-port", type=int, default=8080)
    config.add_argument("--metrics-port", type=int, default=9100)
    config.add_argument("--new-chain", action="store_true",
                        help="give an absent database fresh safety data (first start of a new chain only)")
    config.set_defaults(func=_config)
    init = sub.add_parser("init-data", help="first start of a NEW chain: fresh safety data if there is no database")
    init.add_argument("--home", required=True, type=Path, help="the home (node.toml; GRIDCHAIN_DATA_DIR applies)")
    init.set_defaults(func=_init_data)
    parser.set_defaults(func=lambda _args: (parser.print_help(), 2)[1])


def _init_data(args: argparse.Namespace) -> int:
    from node.ops import member
    from node.ops.config import ConfigError, data_path, load_config

    try:
        data = data_path(args.home, load_config(args.home))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    made = member.init_new_chain_data(data)
    print(orjson.dumps({"data_dir": str(data), "created": made}).decode())
    return 0


def _config(args: argparse.Namespace) -> int:
    from node.ops import member

    try:
        cfg = member.configure_home(
            args.home, [member.load_member_file(p) for p in args.members], listen_host=args.listen_host,
            p2p_port=args.p2p_port, api_port=args.api_port, metrics_port=args.metrics_port,
            new_chain=args.new_chain)
    except (GenesisError, KeyFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(orjson.dumps({"home": str(args.home), "name": cfg.name, "node_id": cfg.node_id,
                        "tls": bool(cfg.tls_cert), "peers": [p.url for p in cfg.peers]}).decode())
    return 0
