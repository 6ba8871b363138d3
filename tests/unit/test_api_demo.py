"""``node.devnet.demo.run_demo`` runs a whole (short) trading day through the client
library against an API server over the real contracts, and the day settles."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
from rich.console import Console

from node.devnet.demo import run_demo
from node.ops import keys
from tests.unit.api_memory_backend import SIGNERS, MemoryBackend, addr, make_genesis
from tests.unit.test_api_cli import ServerThread

QUIET = True
ROLES = {"grid": "grid", "gen": "generator", "pros": "prosumer", "ret": "retailer", "cons": "consumer"}


def test_demo_trading_day_clears_settles_and_verifies_proofs(tmp_path: Path) -> None:
    backend = MemoryBackend(make_genesis(t0_ms=time.time_ns() // 1_000_000, slot_ms=1_000))
    accounts = []
    for name, role in ROLES.items():
        key_file = tmp_path / "keys" / f"{name}.json"
        keys.write_key_file(key_file, SIGNERS[name])
        accounts.append({"name": name, "address": addr(name), "role": role, "key_file": str(key_file)})
    (tmp_path / "accounts.json").write_bytes(orjson.dumps(accounts))
    with ServerThread(backend) as server:
        (tmp_path / "network.json").write_bytes(orjson.dumps({"nodes": [{"api_url": server.url}]}))
        result = run_demo(tmp_path, slots=1, console=Console(quiet=QUIET), timeout_s=20)
    assert [s["status"] for s in result.slots] == ["settled"]
    slot = result.slots[0]
    assert slot["volume_wh"] > 0 and slot["price_u_per_wh"] is not None
    assert result.proofs_ok
    # The generator delivered 2 % short: it paid an imbalance charge to the grid operator.
    lines = [line for line in backend.state.settlements.values() if line.account == addr("gen")]
    assert lines and lines[0].delta_wh < 0 and lines[0].imbalance_u < 0
    assert result.balances_after["grid"] > result.balances_before["grid"]
    newcomer = [name for name in result.balances_after if name.startswith("newcomer")]
    assert len(newcomer) == 1
