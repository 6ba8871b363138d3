"""``gridchain tx <kind>``: sign a transaction locally and submit it to a node.

Every transaction kind of ``contracts.transactions`` has a subcommand. All take
``--node URL`` and ``--key FILE`` (the signer's key file, never sent anywhere);
``--wait`` waits for the receipt. Output is one JSON object on stdout with
``tx_hash`` (and, with ``--wait``, ``status``, ``height`` and ``receipt``).
Exit status: 0 accepted (and committed with --wait), 1 failed receipt or
rejected by the node, 2 bad arguments or key file.

``--dry-run`` signs and prints the transaction as ``POST /v1/transactions``
accepts it (``{"tx": {...}, "signature": hex}``, docs/TRANSACTIONS.md) and sends
nothing. The node is asked only for what the arguments leave open: the chain id
(``--chain-id``), the nonce (``--nonce``) and ``next``-style slots; with those
given, and ``--expires-at-ms`` instead of ``--ttl-ms``, the output is fully
determined by the arguments.

Example::

    gridchain tx order --node http://127.0.0.1:7200 --key keys/consumer-1.json \\
        --slot next --side buy --price 120 --quantity-wh 500 --wait
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import orjson

from consensus import crypto
from contracts import transactions as txs
from node.cli import apiutil as common
from node.client import ApiClientError, Client, TxFailed, notarize_body
from node.ops import keys

BodyBuilder = Callable[[argparse.Namespace, Client], Any]


def _hex32(value: str) -> bytes:
    try:
        out = bytes.fromhex(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be hex") from None
    if len(out) != 32:
        raise argparse.ArgumentTypeError("must be 32 bytes (64 hex chars)")
    return out


def _pubkey_arg(value: str) -> bytes:
    """A public key as 64 hex chars, or a key file whose public key is taken."""
    if len(value) == 64:
        return _hex32(value)
    try:
        return keys.load_key_file(value).public_key
    except keys.KeyFileError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --- body builders: one per kind ---------------------------------------------------------


def _register(a: argparse.Namespace, c: Client) -> Any:
    return txs.RegisterRequest(role=a.role, zone=a.zone, name=a.name, meter_key=a.meter_key)


def _approve(a: argparse.Namespace, c: Client) -> Any:
    return txs.ApproveRegistration(account=a.account)


def _reject(a: argparse.Namespace, c: Client) -> Any:
    return txs.RejectRegistration(account=a.account)


def _suspend(a: argparse.Namespace, c: Client) -> Any:
    return txs.SuspendAccount(account=a.account, suspended=not a.reinstate)


def _set_meter_key(a: argparse.Namespace, c: Client) -> Any:
    return txs.SetMeterKey(account=a.account, meter_key=None if a.clear else a.meter_key)


def _set_node_key(a: argparse.Namespace, c: Client) -> Any:
    return txs.SetNodeKey(node_key=None if a.clear else a.node_key)


def _transfer(a: argparse.Namespace, c: Client) -> Any:
    return txs.Transfer(to=a.to, amount_u=a.amount_u)


def _mint(a: argparse.Namespace, c: Client) -> Any:
    return txs.Mint(to=a.to, amount_u=a.amount_u)


def _burn(a: argparse.Namespace, c: Client) -> Any:
    return txs.Burn(amount_u=a.amount_u)


def _slot(a: argparse.Namespace, c: Client) -> int:
    """A numeric --slot as given (no node needed); ``next``, ``previous``... from the node's timing."""
    if a.slot.isdigit():
        return int(a.slot)
    return common.resolve_slot(a.slot, c.status()["market"])


def _chain_id(a: argparse.Namespace, c: Client) -> str:
    return str(a.chain_id) if a.chain_id is not None else str(c.chain_id())


def _order(a: argparse.Namespace, c: Client) -> Any:
    slot = _slot(a, c)
    return txs.PlaceOrder(slot=slot, side=a.side, price_u_per_wh=a.price, quantity_wh=a.quantity_wh,
                          energy_type=a.energy_type)


def _cancel(a: argparse.Namespace, c: Client) -> Any:
    return txs.CancelOrder(order_id=a.order_id)


def _reading(a: argparse.Namespace, c: Client) -> Any:
    slot = _slot(a, c)
    return txs.SubmitReading(slot=slot, import_wh=a.import_wh, export_wh=a.export_wh)


def _dispatch(a: argparse.Namespace, c: Client) -> Any:
    deadline_ms = a.deadline_ms
    if deadline_ms is None:
        deadline_ms = common.now_ms() + a.deadline_in_ms
    return txs.IssueDispatch(account=a.account, direction=a.direction, amount_wh=a.amount_wh,
                             deadline_ms=deadline_ms, penalty_u=a.penalty_u)


def _ack(a: argparse.Namespace, c: Client) -> Any:
    return txs.AckDispatch(dispatch_id=a.dispatch_id)


def _notarize(a: argparse.Namespace, c: Client) -> Any:
    signers = [keys.load_signer(a.key)] + [keys.load_signer(p) for p in a.party_key]
    return notarize_body(chain_id=_chain_id(a, c), doc_hash=a.doc_hash, signers=signers, title=a.title)


def _add_kinds(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def kind(name: str, builder: BodyBuilder, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
        common.add_node_arg(p)
        p.add_argument("--key", required=True, help="signer's key file (never leaves this machine)")
        p.add_argument("--wait", action="store_true", help="wait for the receipt; exit 1 if it failed")
        p.add_argument("--wait-timeout-s", type=float, default=60.0, help="how long --wait waits")
        p.add_argument("--nonce", type=common.positive_int, default=None,
                       help="explicit nonce (default: max(committed + 1, now in ms))")
        p.add_argument("--ttl-ms", type=common.positive_int, default=300_000,
                       help="validity: including block time must be before now + ttl")
        p.add_argument("--expires-at-ms", type=common.uint_arg, default=None,
                       help="absolute expiry (unix ms) instead of now + --ttl-ms")
        p.add_argument("--chain-id", default=None, help="chain id to sign for (default: ask the node)")
        p.add_argument("--dry-run", action="store_true",
                       help="print the signed transaction as POST /v1/transactions accepts it; send nothing")
        p.set_defaults(func=run, build_body=builder)
        return p

    p = kind("register", _register, "Request registration of the key's account (approved by the grid operator)")
    p.add_argument("--role", required=True, choices=sorted(txs.REQUESTABLE_ROLES))
    p.add_argument("--zone", default="Z1")
    p.add_argument("--name", required=True)
    p.add_argument("--meter-key", type=_pubkey_arg, default=None, help="meter public key hex or key file")

    p = kind("approve", _approve, "Grid operator: approve a pending registration")
    p.add_argument("--account", required=True, type=common.address_arg)

    p = kind("register-reject", _reject,
             "Grid operator: reject a pending registration (the request is dropped)")
    p.add_argument("--account", required=True, type=common.address_arg)

    p = kind("suspend", _suspend, "Grid operator: suspend (or --reinstate) an account")
    p.add_argument("--account", required=True, type=common.address_arg)
    p.add_argument("--reinstate", action="store_true")

    p = kind("set-meter-key", _set_meter_key, "Grid operator: set or clear an account's meter key")
    p.add_argument("--account", required=True, type=common.address_arg)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--meter-key", type=_pubkey_arg, help="meter public key hex or key file")
    g.add_argument("--clear", action="store_true")

    p = kind("set-node-key", _set_node_key,
             "Name (or clear) the key of the sender's own node: validators then let it follow as an observer")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--node-key", type=_pubkey_arg, help="the node's public key hex or its node_key.json")
    g.add_argument("--clear", action="store_true")

    p = kind("transfer", _transfer, "Transfer free balance to another account")
    p.add_argument("--to", required=True, type=common.address_arg)
    p.add_argument("--amount-u", required=True, type=common.positive_int, help="amount in µ")

    p = kind("mint", _mint, "Grid operator: mint tokens to an account")
    p.add_argument("--to", required=True, type=common.address_arg)
    p.add_argument("--amount-u", required=True, type=common.positive_int, help="amount in µ")

    p = kind("burn", _burn, "Grid operator: burn tokens from its own balance")
    p.add_argument("--amount-u", required=True, type=common.positive_int, help="amount in µ")

    p = kind("order", _order, "Place a buy or sell order for a delivery slot")
    p.add_argument("--slot", required=True, help="slot number, or 'next' (first slot still open), or 'next+K'")
    p.add_argument("--side", required=True, choices=("buy", "sell"))
    p.add_argument("--price", required=True, type=common.uint_arg, help="limit price in µ/Wh")
    p.add_argument("--quantity-wh", required=True, type=common.positive_int)
    p.add_argument("--energy-type", default="any")

    p = kind("cancel", _cancel, "Cancel an own open order")
    p.add_argument("--order-id", required=True, type=common.hash_arg)

    p = kind("reading", _reading, "Submit a meter reading for a slot (signed by the meter key if the account has one)")
    p.add_argument("--slot", required=True, help="slot number, or 'previous' (the slot that just ended)")
    p.add_argument("--import-wh", required=True, type=common.uint_arg)
    p.add_argument("--export-wh", required=True, type=common.uint_arg)
    p.add_argument("--account", type=common.address_arg, default=None,
                   help="metered account when --key is its meter key (default: the key's own address)")

    p = kind("dispatch", _dispatch, "Grid operator: issue a dispatch instruction")
    p.add_argument("--account", required=True, type=common.address_arg)
    p.add_argument("--direction", required=True, choices=("curtail", "increase"))
    p.add_argument("--amount-wh", required=True, type=common.positive_int)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--deadline-ms", type=common.uint_arg, help="absolute deadline (block time, unix ms)")
    g.add_argument("--deadline-in-ms", type=common.positive_int, help="deadline relative to now")
    p.add_argument("--penalty-u", required=True, type=common.uint_arg)

    p = kind("ack", _ack, "Acknowledge a dispatch instruction")
    p.add_argument("--dispatch-id", required=True, type=common.positive_int)

    p = kind("notarize", _notarize, "Anchor a document hash co-signed by every party")
    p.add_argument("--doc-hash", required=True, type=_hex32, help="32-byte document hash (hex)")
    p.add_argument("--party-key", action="append", default=[],
                   help="key file of another party (repeat); --key is a party too")
    p.add_argument("--title", default="")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("tx", help="sign and submit a transaction",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_kinds(parser.add_subparsers(dest="tx_kind", metavar="KIND", required=True))


def run(args: argparse.Namespace) -> int:
    try:
        signer = keys.load_signer(args.key)
    except keys.KeyFileError as exc:
        return common.fail(exc.code, str(exc), status=2)
    sender = getattr(args, "account", None) if args.tx_kind == "reading" else None
    with Client(args.node) as client:
        try:
            body = args.build_body(args, client)
            common_args: dict[str, Any] = dict(
                sender=sender or crypto.address(signer.public_key), nonce=args.nonce, ttl_ms=args.ttl_ms,
                chain_id=args.chain_id, expires_at_ms=args.expires_at_ms)
            if args.dry_run:
                stx = txs.decode_signed_tx(client.build(signer, body, **common_args))
                out = {"tx": txs.tx_to_json(stx.tx), "signature": stx.signature.hex()}
            else:
                out = client.send(signer, body, wait=args.wait, wait_timeout_s=args.wait_timeout_s,
                                  **common_args)
        except TxFailed as exc:
            sys.stdout.write(orjson.dumps(exc.body, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 1
        except ApiClientError as exc:
            return common.fail(exc.code, exc.message, status=1)
        except (keys.KeyFileError, common.UsageError) as exc:
            return common.fail(getattr(exc, "code", "bad_argument"), str(exc), status=2)
    common.print_json(out)
    return 0
