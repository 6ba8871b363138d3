"""node.chain.shedding: the overload rule, and admission refusing a batch with 503 before any work;
node.chain.mempool nonce lanes (readings and account transactions do not collide)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from contracts.transactions import Transfer, Tx, sign_tx
from node.api.protocol import Overloaded
from node.chain.mempool import METER_LANE, Mempool, PoolTx, lane
from node.chain.shedding import BacklogGate
from node.ops.keys import load_key_file
from tests.unit.node_harness import make_node


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _gate_at_rate(rate: int, seconds: int = 5) -> tuple[BacklogGate, Clock, int]:
    """A gate that has seen ``rate`` commits/s for ``seconds``; returns (gate, clock, committed_total)."""
    clock = Clock()
    gate = BacklogGate(max_wait_s=1.5, floor_txs=100, window_s=5.0, clock=clock)
    total = 0
    for _ in range(seconds * 10):
        gate.observe(total)
        clock.t += 0.1
        total += rate // 10
    gate.observe(total)
    return gate, clock, total


def test_an_idle_chain_admits_up_to_the_floor() -> None:
    gate = BacklogGate(max_wait_s=1.5, floor_txs=100, clock=Clock())
    assert gate.rate() == 0.0
    assert gate.refuse(pending=0, incoming=100, committed_total=0) == 0.0
    assert gate.refuse(pending=50, incoming=51, committed_total=0) == 1.0


def test_the_backlog_may_hold_max_wait_s_of_commits_at_the_recent_rate() -> None:
    gate, _, total = _gate_at_rate(1_000)
    assert gate.rate() == pytest.approx(1_000, rel=0.05)
    assert gate.allowed() == pytest.approx(1_500, rel=0.05)
    assert gate.refuse(pending=1_000, incoming=400, committed_total=total) == 0.0
    wait = gate.refuse(pending=1_400, incoming=500, committed_total=total)
    assert 1.0 <= wait <= 5.0


def test_the_rate_follows_the_window_when_commits_stop() -> None:
    gate, clock, total = _gate_at_rate(2_000)
    assert gate.refuse(pending=2_500, incoming=0, committed_total=total) == 0.0
    clock.t += 10  # nothing committed for longer than the window: only the floor is left
    gate.observe(total)
    clock.t += 1
    assert gate.rate() == 0.0
    assert gate.refuse(pending=2_500, incoming=0, committed_total=total) > 0


def test_lanes_keep_reading_and_account_nonces_apart() -> None:
    pool = Mempool(capacity=10, account_limit=10)
    order = PoolTx(tx_hash=b"o" * 32, raw=b"o", sender=lane("alice", reading=False), nonce=7, expires_at_ms=1)
    reading = PoolTx(tx_hash=b"r" * 32, raw=b"r", sender=lane("alice", reading=True), nonce=7, expires_at_ms=1)
    later = PoolTx(tx_hash=b"l" * 32, raw=b"l", sender="alice", nonce=8, expires_at_ms=1)
    assert reading.sender == "alice" + METER_LANE
    assert pool.add(order) is None and pool.add(reading) is None and pool.add(later) is None
    # A committed reading with a high meter nonce leaves the account's orders pending.
    assert pool.remove_committed([(reading.tx_hash, reading.sender, 9)]) == []
    assert order.tx_hash in pool and later.tx_hash in pool
    assert pool.committed_total == 1


async def test_admission_sheds_an_api_batch_with_503_when_the_backlog_is_too_long(tmp_path: Path) -> None:
    n = make_node(tmp_path, capacity=1_000)
    backend = n.backend
    backend.backlog = BacklogGate(max_wait_s=1.5, floor_txs=3, clock=Clock())
    key = load_key_file(n.accounts["consumer-1"]["key_file"])
    to = n.accounts["consumer-2"]["address"]

    def transfer(nonce: int) -> bytes:
        return sign_tx(Tx(chain_id=n.driver.genesis.chain_id, sender=key.address, public_key=key.public_key,
                          nonce=nonce, expires_at_ms=int(time.time() * 1000) + 60_000,
                          body=Transfer(to=to, amount_u=1)), key.signer)

    backend.start()
    try:
        assert [r.code for r in await backend.submit([transfer(1), transfer(2)])] == [None, None]
        with pytest.raises(Overloaded):
            await backend.submit([transfer(3), transfer(4)])
        assert len(n.driver.mempool) == 2
        # Gossip from a peer is never shed (another validator accepted it already).
        await backend.on_gossip(1, (transfer(3), transfer(4)))
        assert len(n.driver.mempool) == 4
    finally:
        await backend.stop()
        await n.storage.close()


def test_a_recent_mean_latency_above_the_limit_sheds_until_it_is_older_than_two_seconds() -> None:
    gate, clock, total = _gate_at_rate(1_000)
    gate.max_latency_s = 1.5
    for _ in range(9):
        gate.observe_latency(0.4)
    gate.observe_latency(5.0)  # one slow transaction does not close the door
    assert gate.recent_latency() == pytest.approx(0.86)
    assert gate.refuse(pending=0, incoming=10, committed_total=total) == 0.0
    for _ in range(10):
        gate.observe_latency(3.0)
    assert gate.refuse(pending=0, incoming=10, committed_total=total) == 1.0
    clock.t += 1.0
    assert gate.recent_latency() == pytest.approx(1.93)  # the previous second still counts
    clock.t += 1.0
    assert gate.recent_latency() == 0.0
    assert gate.refuse(pending=0, incoming=10, committed_total=total) == 0.0


def test_limits_of_zero_turn_shedding_off() -> None:
    gate, _, total = _gate_at_rate(1_000)
    gate.max_wait_s = 0
    gate.max_latency_s = 0
    gate.observe_latency(60.0)
    assert gate.refuse(pending=10**6, incoming=500, committed_total=total) == 0.0
