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
    new.set_defaults(func=_new)
    show = sub.add_parser("show", help="print a key file's address and public key")
    show.add_argument("file", type=Path)
    show.set_defaults(func=_show)
    parser.set_defaults(func=lambda _args: (parser.print_help(), 2)[1])


def _new(args: argparse.Namespace) -> int:
    signer = keys.new_signer()
    try:
        keys.write_key_file(args.out, signer, overwrite=args.force)
    except keys.KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    doc = keys.key_document(signer)
    print(orjson.dumps({"address": doc["address"], "public_key": doc["public_key"], "file": str(args.out)}).decode())
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        key = keys.load_key_file(args.file)
    except keys.KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(orjson.dumps({"address": key.address, "public_key": key.public_key.hex(), "file": str(args.file)}).decode())
    return 0
