"""Every node must compute the same roots: run one busy scenario in processes with
different hash seeds (set and dict-of-str iteration orders differ) and compare."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from contracts.transactions import (
    CancelOrder,
    IssueDispatch,
    PlaceOrder,
    SubmitReading,
    decode_signed_tx,
)

from .helpers import Chain, check_invariants, market_params

ROOT = Path(__file__).resolve().parents[3]


def scenario() -> list[str]:
    """A market with several traders, a cancellation, readings, a missed dispatch; returns roots."""
    chain = Chain(market=market_params(grid_fee=2, p_min=1, p_max=90, p_short=95, p_long=1,
                                       history_slots=2))
    roots = []
    specs = [("con", "buy", 60, 40), ("con2", "buy", 45, 70), ("pro", "sell", 20, 30),
             ("ret", "buy", 50, 25), ("gen", "sell", 30, 50), ("gen2", "sell", 44, 80)]
    for slot in (1, 2, 3):
        raws = [chain.tx(who, PlaceOrder(slot=slot, side=side, price_u_per_wh=p + slot, quantity_wh=q))  # type: ignore[arg-type]
                for who, side, p, q in specs]
        roots.append(chain.ok(*raws, at_ms=chain.now_ms + 10).state_root.hex())
    cancel = chain.tx("con", CancelOrder(order_id=decode_signed_tx(raws[0]).tx_hash.hex()))
    dispatch = chain.tx("grid", IssueDispatch(account=chain.addr("gen"), direction="curtail",
                                              amount_wh=5, deadline_ms=2_500, penalty_u=70))
    roots.append(chain.ok(cancel, dispatch, at_ms=100).state_root.hex())
    for at in (1_000, 2_000, 3_000, 4_000, 5_000, 6_000):
        slot = at // 1_000 - 1
        reads = [chain.tx(who, SubmitReading(slot=slot, import_wh=q // 2, export_wh=q // 3), meter=True)
                 for who, _side, _p, q in specs if who != "gen2"] if 1 <= slot <= 3 else []
        roots.append(chain.ok(*reads, at_ms=at).state_root.hex())
        check_invariants(chain.state)
    return roots


def test_roots_do_not_depend_on_the_process_hash_seed() -> None:
    code = "from tests.unit.contracts.test_contracts_determinism import scenario; print(','.join(scenario()))"
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              cwd=ROOT, timeout=120, check=True)
        outputs.add(proc.stdout.strip())
    outputs.add(",".join(scenario()))
    assert len(outputs) == 1
    assert len(set(next(iter(outputs)).split(","))) == 10  # every block moved the root
