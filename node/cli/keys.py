"""``gridchain keys``: create and inspect Ed25519 key files (format in ``node.ops.keys``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from node.ops import keys


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("keys", help="create and inspect key files")
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION")
    new = sub.add_parser("new", help="generate a new Ed25519 key file (mode 0600)")
    new.add_argument("--out", required=True, type=Path, help="key file to write")
    new.add_argument("--force", action="store_true", help="overwrite an existing file")
    new.add_argument("--member", type=Path, default=None, metavar="FILE",
                     help="also write the public member file for the genesis ceremony (needs --name, --role, --p2p-url)")
    new.add_argument("--name", default="", help="member: the validator's name")
    new.add_argument("--role", default="", help="member: the operator's role (generator, grid, retailer, user, ...)")
    new.add_argument("--p2p-url", default="", help="member: where peers reach it, wss://HOST:PORT/p2p")
    new.add_argument("--api-url", default="", help="member: where participants reach its REST API")
    new.set_defaults(func=_new)
    show = sub.add_parser("show", help="print a key file's address and public key")
    show.add_argument("file", type=Path)
    show.set_defaults(func=_show)
    parser.set_defaults(func=lambda _args: (parser.print_help(), 2)[1])


def _new(args: argparse.Namespace) -> int:
    from contracts.errors import GenesisError
    from node.ops import member

    signer = keys.new_signer()
    try:
        card = None
        if args.member is not None:
            if not (args.name and args.role and args.p2p_url):
                raise GenesisError("--member needs --name, --role and --p2p-url")
            card = member.new_member(name=args.name, role=args.role, public_key=signer.public_key,
                                     p2p_url=args.p2p_url, api_url=args.api_url)
            if args.member.exists() and not args.force:
                raise GenesisError(f"{args.member} exists (use --force)")
        keys.write_key_file(args.out, signer, overwrite=args.force)
        if card is not None:
            member.write_member_file(args.member, card)
    except (keys.KeyFileError, GenesisError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    doc = keys.key_document(signer)
    out = {"address": doc["address"], "public_key": doc["public_key"], "file": str(args.out)}
    if args.member is not None:
        out["member_file"] = str(args.member)
    print(orjson.dumps(out).decode())
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        key = keys.load_key_file(args.file)
    except keys.KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(orjson.dumps({"address": key.address, "public_key": key.public_key.hex(), "file": str(args.file)}).decode())
    return 0
