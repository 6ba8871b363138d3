"""``gridchain market clear|settle|bench``: re-run the market rules on a file, and
measure the contracts' throughput.

* ``market clear --input FILE`` reads
  ``{"params": {"p_min", "p_max", "grid_fee"}, "orders": [{"id", "account", "side", "price",
  "quantity_wh", "seq": [height, index]}]}`` and prints ``{"price", "volume_wh", "trades":
  [{"buy_order", "sell_order", "quantity_wh", "price", "fee"}], "digest"}``, trades in walk
  order. ``digest`` is the on-chain ``trades_digest`` of a slot with these orders.
* ``market settle --input FILE`` reads ``{"params": {"p_short", "p_long"}, "trades": [{"buyer",
  "seller", "quantity_wh"}], "readings": {account: {"import_wh", "export_wh"}}}`` and prints
  ``{"accounts": {account: {"contracted_wh", "metered_wh", "delta_wh", "imbalance_u"}},
  "grid_u"}`` (``imbalance_u`` > 0 when the account receives).
* ``market bench`` prints ``apply_block`` throughput (orders/s) and the time to clear
  one slot of 10,000 orders. Timing lives here, never in ``contracts``.

Bad input (floats, negatives, unknown sides, missing or unknown fields, duplicate ids,
prices outside [p_min, p_max]) exits with status 2 and a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec import Meta

from consensus import crypto
from contracts import market, settlement
from contracts.executor import BlockInput, apply_block
from contracts.genesis import (
    AccountEntry,
    Genesis,
    ValidatorEntry,
    default_market_params,
)
from contracts.initial import initial_state
from contracts.transactions import PlaceOrder, Tx, decode_signed_tx, sign_tx

NonNeg = Annotated[int, Meta(ge=0)]
Qty = Annotated[int, Meta(ge=1)]
AccountName = Annotated[str, Meta(min_length=1, max_length=128)]


class _In(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class ClearParams(_In, frozen=True):
    p_min: NonNeg
    p_max: NonNeg
    grid_fee: NonNeg


class ClearOrder(_In, frozen=True):
    id: Annotated[str, Meta(min_length=1, max_length=128)] | int
    account: AccountName
    side: Literal["buy", "sell"]
    price: NonNeg
    quantity_wh: Qty
    seq: tuple[NonNeg, NonNeg]


class ClearInput(_In, frozen=True):
    params: ClearParams
    orders: list[ClearOrder]


class SettleParams(_In, frozen=True):
    p_short: NonNeg
    p_long: NonNeg


class SettleTrade(_In, frozen=True):
    buyer: AccountName
    seller: AccountName
    quantity_wh: Qty


class SettleReading(_In, frozen=True):
    import_wh: NonNeg
    export_wh: NonNeg


class SettleInput(_In, frozen=True):
    params: SettleParams
    trades: list[SettleTrade]
    readings: dict[str, SettleReading] = {}


class InputError(ValueError):
    """Bad input file: exit status 2."""


def _load(path: str, type_: type[Any]) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data.decode("utf-8")  # judged here, not by whichever exception a codec version raises
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: malformed JSON (invalid UTF-8 at byte {exc.start})") from None
    try:
        return msgspec.json.decode(data, type=type_, strict=True)
    except msgspec.ValidationError as exc:
        raise InputError(f"{path}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InputError(f"{path}: malformed JSON: {exc}") from None


def run_clear(data: ClearInput) -> dict[str, Any]:
    """The ``market clear`` result for validated input."""
    p = data.params
    if p.p_min > p.p_max:
        raise InputError(f"params: p_min {p.p_min} > p_max {p.p_max}")
    ids: set[str | int] = set()
    seqs: set[tuple[int, int]] = set()
    owners: dict[str | int, str] = {}
    for i, o in enumerate(data.orders):
        if o.id in ids:
            raise InputError(f"orders[{i}]: duplicate id {o.id!r}")
        if o.seq in seqs:
            raise InputError(f"orders[{i}]: duplicate seq {list(o.seq)}")
        if not p.p_min <= o.price <= p.p_max:
            raise InputError(f"orders[{i}]: price {o.price} outside [{p.p_min}, {p.p_max}]")
        ids.add(o.id)
        seqs.add(o.seq)
        owners[o.id] = o.account
    bids = [market.BookOrder(o.id, o.price, o.quantity_wh, o.seq) for o in data.orders if o.side == "buy"]
    asks = [market.BookOrder(o.id, o.price, o.quantity_wh, o.seq) for o in data.orders if o.side == "sell"]
    result = market.clear(bids, asks, p_min=p.p_min, p_max=p.p_max, fee=p.grid_fee)
    return {
        "price": result.price,
        "volume_wh": result.volume_wh,
        "trades": [
            {"buy_order": f.buy_order, "sell_order": f.sell_order, "quantity_wh": f.quantity_wh,
             "price": result.price, "fee": p.grid_fee}
            for f in result.fills
        ],
        "digest": result.digest.hex(),
    }


def run_settle(data: SettleInput) -> dict[str, Any]:
    """The ``market settle`` result for validated input."""
    sold: dict[str, int] = {}
    bought: dict[str, int] = {}
    for i, t in enumerate(data.trades):
        if t.buyer == t.seller:
            raise InputError(f"trades[{i}]: buyer and seller are the same account")
        sold[t.seller] = sold.get(t.seller, 0) + t.quantity_wh
        bought[t.buyer] = bought.get(t.buyer, 0) + t.quantity_wh
    accounts: dict[str, Any] = {}
    grid_u = 0
    for name in sorted({*sold, *bought, *data.readings}):
        r = data.readings.get(name)
        result = settlement.imbalance(
            sold_wh=sold.get(name, 0), bought_wh=bought.get(name, 0),
            reading=(r.import_wh, r.export_wh) if r is not None else None,
            p_short=data.params.p_short, p_long=data.params.p_long)
        accounts[name] = {"contracted_wh": result.contracted_wh, "metered_wh": result.metered_wh,
                          "delta_wh": result.delta_wh, "imbalance_u": result.imbalance_u}
        grid_u -= result.imbalance_u
    return {"accounts": accounts, "grid_u": grid_u}


def _print(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")


def _cmd_clear(args: argparse.Namespace) -> int:
    try:
        _print(run_clear(_load(args.input, ClearInput)))
    except InputError as exc:
        print(f"gridchain market clear: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_settle(args: argparse.Namespace) -> int:
    try:
        _print(run_settle(_load(args.input, SettleInput)))
    except InputError as exc:
        print(f"gridchain market settle: {exc}", file=sys.stderr)
        return 2
    return 0


# --- bench ---------------------------------------------------------------------------------

def _signer(i: int) -> crypto.Signer:
    return crypto.Signer(i.to_bytes(4, "big") * 8)


def _bench_chain(accounts: int, slot_ms: int) -> tuple[Genesis, list[crypto.Signer]]:
    grid = _signer(0)
    val = _signer(1)
    signers = [_signer(10 + i) for i in range(accounts)]
    entries = [AccountEntry(name="grid", address=crypto.address(grid.public_key),
                            public_key=grid.public_key, role="grid")]
    entries += [AccountEntry(name=f"p{i}", address=crypto.address(s.public_key), public_key=s.public_key,
                             role="prosumer", balance_u=10**15) for i, s in enumerate(signers)]
    genesis = Genesis(
        chain_id="bench", genesis_time_ms=0, grid_operator=crypto.address(grid.public_key),
        validators=(ValidatorEntry(name="v0", role="grid", public_key=val.public_key,
                                   address=crypto.address(val.public_key)),),
        accounts=tuple(entries),
        market=default_market_params(slot_ms=slot_ms, gate_lead_ms=0, max_horizon_slots=1_000,
                                     p_min=0, p_max=1_000, grid_fee=5, p_short=1_200, p_long=0,
                                     max_orders_per_slot=1_000_000),
    )
    return genesis, signers


def _orders(signers: list[crypto.Signer], count: int, *, slots: int, seed: int) -> list[bytes]:
    """Deterministic pseudo-random orders (a hash stream, not a clock or RNG)."""
    out = []
    nonces = [0] * len(signers)
    for n in range(count):
        h = int.from_bytes(hashlib.sha256(f"{seed}/{n}".encode()).digest()[:8], "big")
        k = n % len(signers)
        side: Literal["buy", "sell"] = "buy" if k % 2 == 0 else "sell"  # one side per account
        price = 300 + (h % 400) if side == "buy" else 200 + (h % 400)
        nonces[k] += 1
        s = signers[k]
        tx = Tx(chain_id="bench", sender=crypto.address(s.public_key), public_key=s.public_key,
                nonce=nonces[k], expires_at_ms=10**15,
                body=PlaceOrder(slot=1 + (n % slots), side=side, price_u_per_wh=price,
                                quantity_wh=1 + (h >> 20) % 1_000))
        out.append(sign_tx(tx, s))
    return out


def _cmd_bench(args: argparse.Namespace) -> int:
    slot_ms = 10**9
    genesis, signers = _bench_chain(args.accounts, slot_ms)
    print(f"signing {args.orders} place_order transactions for {args.accounts} accounts ...", flush=True)
    raws = _orders(signers, args.orders, slots=max(1, args.orders // args.slot_orders), seed=1)
    hashes = frozenset(decode_signed_tx(r).tx_hash for r in raws)

    for label, verified in (("pre-verified (node cache)", hashes), ("verifying signatures", frozenset())):
        state = initial_state(genesis)
        t0 = time.perf_counter()
        for height, start in enumerate(range(0, len(raws), args.block_txs), start=1):
            _, receipts, _ = apply_block(state, BlockInput(
                height=height, round=height, timestamp_ms=height, proposer=0, voters=(0,),
                txs=raws[start:start + args.block_txs]), verified=verified)
            bad = [r for r in receipts if not r.ok]
            assert not bad, bad[0]
        elapsed = time.perf_counter() - t0
        print(f"apply_block place_order, {label}: {len(raws)} orders in {elapsed:.3f} s "
              f"= {len(raws) / elapsed:,.0f} orders/s ({args.block_txs} txs/block)")

    # One slot of N orders, cleared by the first block at its gate.
    state = initial_state(genesis)
    slot_raws = _orders(signers, args.slot_orders, slots=1, seed=2)
    slot_hashes = frozenset(decode_signed_tx(r).tx_hash for r in slot_raws)
    height = 0
    for height, start in enumerate(range(0, len(slot_raws), args.block_txs), start=1):
        apply_block(state, BlockInput(height=height, round=height, timestamp_ms=height, proposer=0,
                                      voters=(0,), txs=slot_raws[start:start + args.block_txs]),
                    verified=slot_hashes)
    t0 = time.perf_counter()
    _, _, result = apply_block(state, BlockInput(height=height + 1, round=height + 1,
                                                 timestamp_ms=slot_ms, proposer=0, voters=(0,)))
    elapsed = time.perf_counter() - t0
    record = state.slots[f"{1:016d}"]
    print(f"clear one slot of {args.slot_orders} orders (apply_block at gate closure): "
          f"{elapsed * 1000:.1f} ms; price {record.price_u_per_wh} µ/Wh, volume {record.volume_wh} Wh, "
          f"{record.trade_count} trades, {len(result.leaves)} leaves")
    book = [state.orders[o] for o in state.orders]
    bids = [market.BookOrder(o.order_id, o.price_u_per_wh, o.quantity_wh, o.seq) for o in book if o.side == "buy"]
    asks = [market.BookOrder(o.order_id, o.price_u_per_wh, o.quantity_wh, o.seq) for o in book if o.side == "sell"]
    t0 = time.perf_counter()
    market.clear(bids, asks, p_min=0, p_max=1_000, fee=5)
    print(f"pure auction (contracts.market.clear) on the same {len(book)} orders: "
          f"{(time.perf_counter() - t0) * 1000:.1f} ms")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("market", help="re-run market clearing/settlement on a file; benchmark")
    sub = parser.add_subparsers(dest="market_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("clear", help="clear one slot's orders from a JSON file")
    p.add_argument("--input", required=True, help="JSON file (see gridchain market --help)")
    p.set_defaults(func=_cmd_clear)
    p = sub.add_parser("settle", help="settle one slot's trades and readings from a JSON file")
    p.add_argument("--input", required=True)
    p.set_defaults(func=_cmd_settle)
    p = sub.add_parser("bench", help="apply_block throughput and time to clear a 10,000-order slot")
    p.add_argument("--orders", type=int, default=20_000, help="place_order txs for the throughput run")
    p.add_argument("--accounts", type=int, default=200)
    p.add_argument("--block-txs", type=int, default=2_000, help="transactions per block")
    p.add_argument("--slot-orders", type=int, default=10_000, help="orders in the cleared slot")
    p.set_defaults(func=_cmd_bench)
