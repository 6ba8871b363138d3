"""Gate-closure benchmark (not a test): execution time of the blocks that clear and settle a full slot.

``python -m tests.unit.clearing_bench [--orders 100000] [--accounts 2000] [--block-txs 2000]``

Builds, in-process, a chain whose slot 1 receives ``--orders`` orders from
``--accounts`` prosumers (half buy, half sell, crossing prices) in blocks of
``--block-txs``, then times with ``contracts.apply_block``:

* every order block (the largest is the "max block execution" of the run),
* the block at gate closure, which clears the slot (``market.clear_slot``),
* a block of one reading per account, and the block that settles the slot.

Signatures are taken as verified (a node verifies them once, at admission), so the
numbers are the contracts' execution alone: what the node's execution pipeline
spends per block before storing it.
"""

from __future__ import annotations

import argparse
import random
import time

from consensus import codec, crypto
from contracts.executor import BlockInput, apply_block
from contracts.genesis import AccountEntry, Genesis, ValidatorEntry, default_market_params
from contracts.initial import initial_state
from contracts.transactions import PlaceOrder, SignedTxWire, SubmitReading, Tx

CHAIN = "clearing-bench"
SLOT_MS, GATE_LEAD_MS, METER_WINDOW_MS = 10_000, 5_000, 10_000


class AllVerified:
    def __contains__(self, item: object) -> bool:
        return True


def _raw(sender: str, public_key: bytes, nonce: int, body: object) -> bytes:
    tx = Tx(chain_id=CHAIN, sender=sender, public_key=public_key, nonce=nonce, expires_at_ms=10**12, body=body)
    return codec.encode(SignedTxWire(tx_bytes=codec.encode(tx), signature=bytes(64)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--block-txs", type=int, default=2_000)
    args = parser.parse_args()
    rng = random.Random(7)
    keys = [bytes([1]) + i.to_bytes(31, "big") for i in range(args.accounts)]
    addresses = [crypto.address(k) for k in keys]
    val_key, grid_key = bytes([2]) * 32, bytes([3]) * 32
    grid = AccountEntry(name="grid", address=crypto.address(grid_key), public_key=grid_key, role="grid")
    genesis = Genesis(
        chain_id=CHAIN, genesis_time_ms=0, grid_operator=grid.address,
        validators=(ValidatorEntry(name="val", role="grid", public_key=val_key, address=crypto.address(val_key)),),
        accounts=(grid, *(AccountEntry(name=f"p{i}", address=a, public_key=k, role="prosumer", balance_u=10**12)
                          for i, (a, k) in enumerate(zip(addresses, keys, strict=True)))),
        market=default_market_params(slot_ms=SLOT_MS, gate_lead_ms=GATE_LEAD_MS, meter_window_ms=METER_WINDOW_MS,
                                     max_orders_per_slot=max(100_000, args.orders)))
    state = initial_state(genesis)
    verified = AllVerified()
    height = 0
    times: list[tuple[str, float]] = []

    def block(txs: list[bytes], at_ms: int, label: str) -> None:
        nonlocal height
        height += 1
        t = time.perf_counter()
        _, receipts, _ = apply_block(state, BlockInput(height=height, round=height, timestamp_ms=at_ms, proposer=0,
                                                       voters=(0,), txs=txs), verified=verified)
        times.append((label, time.perf_counter() - t))
        bad = [r.code for r in receipts if not r.ok]
        assert not bad, bad[:5]

    nonces = [0] * args.accounts
    txs: list[bytes] = []
    gate = SLOT_MS - GATE_LEAD_MS
    n_blocks = -(-args.orders // args.block_txs)
    for i in range(args.orders):
        k = i % args.accounts
        nonces[k] += 1
        sell = k % 2 == 0
        price = (300 if sell else 320) + rng.randint(-100, 100)
        txs.append(_raw(addresses[k], keys[k], nonces[k], PlaceOrder(
            slot=1, side="sell" if sell else "buy", price_u_per_wh=price, quantity_wh=rng.randint(100, 2_000))))
        if len(txs) == args.block_txs or i == args.orders - 1:
            block(txs, 1 + (gate - 2) * len(times) // n_blocks, "orders")
            txs = []
    order_s = sum(t for _, t in times)
    block([], gate, "clearing")
    end = 2 * SLOT_MS
    readings = [_raw(a, k, 1, SubmitReading(slot=1, import_wh=rng.randint(0, 50_000), export_wh=rng.randint(0, 50_000)))
                for a, k in zip(addresses, keys, strict=True)]
    block(readings, end, "readings")
    block([], end + METER_WINDOW_MS, "settlement")
    by_label = dict(times[-3:])
    longest = max(times, key=lambda item: item[1])
    print(f"orders in slot 1:         {args.orders:,} from {args.accounts:,} accounts in {n_blocks} blocks")
    print(f"order execution:          {1e6 * order_s / args.orders:,.0f} µs per order "
          f"(largest order block {1000 * max(t for label, t in times if label == 'orders'):,.0f} ms)")
    print(f"clearing block:           {1000 * by_label['clearing']:,.0f} ms")
    print(f"readings block:           {1000 * by_label['readings']:,.0f} ms ({len(readings):,} readings)")
    print(f"settlement block:         {1000 * by_label['settlement']:,.0f} ms")
    print(f"max block execution:      {1000 * longest[1]:,.0f} ms ({longest[0]})")


if __name__ == "__main__":
    main()
