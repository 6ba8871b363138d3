"""``gridchain genesis``: generate a network (genesis, node homes, demo accounts; ``node.ops.genesis``),
or, in a ceremony, a genesis from member files only (``--members``) and ``genesis verify``
of its hash (``node.ops.member``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from contracts.errors import GenesisError
from node.ops import genesis as gen
from node.ops.keys import KeyFileError


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slot-ms", type=int, default=None, help="market slot length in ms (default 60000)")
    parser.add_argument("--chain-id", default=None, help="chain id (default gridchain-local / gridchain)")
    parser.add_argument("--round-timeout-ms", type=int, default=1_000, help="consensus base round timeout")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("genesis", help="generate a network, or a genesis from member files")
    parser.add_argument("-o", "--out", type=Path, help="directory to create (with --members: the genesis file)")
    parser.add_argument("--members", nargs="+", type=Path, default=None, metavar="MEMBER_FILE",
                        help="ceremony: build only genesis.json from these public member files")
    parser.add_argument("--genesis-time-ms", type=int, default=None, help="slot 0 start (default: now)")
    parser.add_argument("--nodes", default="4", help="N, or name:role,name:role,... (default 4)")
    parser.add_argument("--host-mode", choices=("local", "compose"), default="local")
    parser.add_argument("--base-port", type=int, default=7100, help="local mode: p2p P+i, api P+100+i, metrics P+200+i")
    add_network_arguments(parser)
    parser.add_argument("--no-demo-accounts", action="store_true", help="only the grid operator account")
    parser.add_argument("--bench-accounts", type=int, default=0, help="extra funded accounts for load tests")
    parser.add_argument("--account", action="append", default=[], metavar="NAME:ROLE:BALANCE_U:KEY",
                        help="add an account whose key you hold: KEY is a key file or a public key "
                             "(64 hex); repeat for more")
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    parser.set_defaults(func=run)
    sub = parser.add_subparsers(dest="genesis_command", metavar="ACTION")
    verify = sub.add_parser("verify", help="check a genesis file against the hash the coordinator published")
    verify.add_argument("file", type=Path)
    verify.add_argument("--expect", required=True, help="the expected hash (SHA-256 of the file, hex)")
    verify.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    from node.ops import member

    try:
        digest = member.verify_genesis(args.file, args.expect)
    except GenesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(orjson.dumps({"ok": True, "genesis_hash": digest, "file": str(args.file)}).decode())
    return 0


def _from_members(args: argparse.Namespace) -> int:
    import time

    from node.ops import member

    try:
        if args.out.exists() and not args.force:
            raise GenesisError(f"{args.out} exists (use --force)")
        genesis = member.build_genesis(
            [member.load_member_file(p) for p in args.members],
            accounts=tuple(gen.parse_account(text) for text in args.account),
            chain_id=args.chain_id or "gridchain", slot_ms=args.slot_ms or 60_000,
            round_timeout_ms=args.round_timeout_ms,
            genesis_time_ms=args.genesis_time_ms if args.genesis_time_ms is not None else int(time.time() * 1000),
        )
        digest = member.write_genesis(args.out, genesis)
    except (GenesisError, KeyFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(orjson.dumps({"genesis": str(args.out), "genesis_hash": digest, "chain_id": genesis.chain_id,
                        "validators": [v.name for v in genesis.validators]}, option=orjson.OPT_INDENT_2).decode())
    return 0


def run(args: argparse.Namespace) -> int:
    if args.out is None:
        print("error: --out is required", file=sys.stderr)
        return 2
    if args.members:
        return _from_members(args)
    try:
        extra = tuple(gen.parse_account(text) for text in args.account)
        network = gen.generate_network(
            args.out,
            nodes=gen.parse_nodes(args.nodes),
            host_mode=args.host_mode,
            base_port=args.base_port,
            slot_ms=args.slot_ms or 60_000,
            chain_id=args.chain_id or ("gridchain" if args.host_mode == "compose" else "gridchain-local"),
            round_timeout_ms=args.round_timeout_ms,
            demo_accounts=not args.no_demo_accounts,
            bench_accounts=args.bench_accounts,
            extra_accounts=extra,
            genesis_time_ms=args.genesis_time_ms,
            force=args.force,
        )
    except (GenesisError, KeyFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(orjson.dumps(network, option=orjson.OPT_INDENT_2).decode())
    return 0
