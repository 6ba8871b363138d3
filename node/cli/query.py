"""``gridchain query ...``: read chain data from a node's REST API as JSON.

Subcommands: ``status``, ``block [HEIGHT|latest]``, ``tx HASH``,
``account ADDRESS`` or ``account --key FILE`` (the key file's account; only its public
key is read), ``slot SLOT``, ``order ORDER_ID``, ``trades [--account A] [--slot S]``,
``trace TRADE_ID`` (lineage with inclusion proofs; feed it to
``gridchain verify-proof``), ``validators``, ``dispatch [--account A]``.
Exit status 0 on success, 1 when the node answers with an error (including
"not found"), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
from typing import Any

from consensus import crypto
from node.cli import apiutil as common
from node.client import ApiClientError, Client
from node.ops import keys


def _height(value: str) -> str:
    if value == "latest" or value.isdigit():
        return value
    raise argparse.ArgumentTypeError("height is a non-negative integer or 'latest'")


def _account_address(args: argparse.Namespace) -> str:
    """ADDRESS as given, or the address of ``--key``'s public key."""
    if args.key is None:
        return str(args.address)
    try:
        return crypto.address(keys.load_key_file(args.key).public_key)
    except keys.KeyFileError as exc:
        raise common.UsageError(str(exc)) from None


def _run_query(args: argparse.Namespace, c: Client) -> Any:
    what = args.what
    if what == "status":
        return c.status()
    if what == "block":
        return c.block(args.height, full_txs=args.full)
    if what == "tx":
        return c.transaction(args.hash)
    if what == "account":
        return c.account(_account_address(args), settlements_limit=args.settlements_limit,
                         settlements_before_slot=args.settlements_before_slot)
    if what == "slot":
        return c.slot(common.resolve_slot(args.slot, c.status()["market"]),
                      settlements_limit=args.settlements_limit,
                      settlements_after_account=args.settlements_after_account)
    if what == "order":
        return c.order(args.order_id)
    if what == "trades":
        return {"trades": c.trades(account=args.account, slot=args.slot)}
    if what == "trace":
        return c.trace(args.trade_id)
    if what == "validators":
        return {"validators": c.validators()}
    if what == "dispatch":
        return {"dispatch": c.dispatch(account=args.account)}
    raise AssertionError(what)


def run(args: argparse.Namespace) -> int:
    with Client(args.node) as client:
        try:
            out = _run_query(args, client)
        except ApiClientError as exc:
            return common.fail(exc.code, exc.message, status=1)
        except common.UsageError as exc:
            return common.fail(exc.code, str(exc), status=2)
    if out is None:
        return common.fail("not_found", f"{args.what} not found", status=1)
    common.print_json(out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("query", help="query a node (JSON output)", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)

    def q(name: str, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
        common.add_node_arg(p)
        p.set_defaults(func=run)
        return p

    q("status", "chain id, node, height, round, leader, state root, peers, market timing")
    p = q("block", "a committed block")
    p.add_argument("height", nargs="?", default="latest", type=_height)
    p.add_argument("--full", action="store_true", help="decode the transactions")
    p = q("tx", "status and receipt of a transaction")
    p.add_argument("hash", type=common.hash_arg)
    p = q("account", "balance, locked, pending, debt, nonce, role, status, settlement lines")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("address", nargs="?", type=common.address_arg, default=None)
    g.add_argument("--key", default=None, help="key file: query the account of its public key")
    p.add_argument("--settlements-limit", type=common.positive_int, default=None,
                   help="settlement lines per page (newest slot first)")
    p.add_argument("--settlements-before-slot", type=common.uint_arg, default=None,
                   help="page cursor: lines of slots below this one (the answer's settlements_next)")
    p = q("slot", "market slot: state, clearing price, volume, trades, settlement lines")
    p.add_argument("slot", help="slot number, next, current or previous")
    p.add_argument("--settlements-limit", type=common.positive_int, default=None,
                   help="settlement lines per page (by account address)")
    p.add_argument("--settlements-after-account", type=common.address_arg, default=None,
                   help="page cursor: lines of accounts after this address (the answer's settlements_next)")
    p = q("order", "one order")
    p.add_argument("order_id", type=common.hash_arg)
    p = q("trades", "trades of an account and/or slot")
    p.add_argument("--account", type=common.address_arg, default=None)
    p.add_argument("--slot", type=common.uint_arg, default=None)
    p = q("trace", "a trade's lineage with Merkle inclusion proofs")
    p.add_argument("trade_id")
    q("validators", "validators: credit, leader share, rewards")
    p = q("dispatch", "dispatch instructions")
    p.add_argument("--account", type=common.address_arg, default=None)
