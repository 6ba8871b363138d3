"""node.chain.mempool: bounds, dedup, nonce order, in-flight tracking, commit pruning."""

from __future__ import annotations

from consensus import codec
from node.chain.mempool import ACCOUNT_FULL, DUPLICATE, MEMPOOL_FULL, NONCE_IN_USE, Mempool, PoolTx


def _tx(sender: str, nonce: int, expires_at_ms: int = 10**12) -> PoolTx:
    raw = f"{sender}:{nonce}".encode()
    return PoolTx(tx_hash=codec.digest(raw), raw=raw, sender=sender, nonce=nonce, expires_at_ms=expires_at_ms)


def test_duplicates_and_bounds_are_refused_without_change() -> None:
    pool = Mempool(capacity=3, account_limit=2)
    assert pool.add(_tx("a", 1)) is None
    assert pool.add(_tx("a", 1)) == DUPLICATE
    clash = PoolTx(tx_hash=b"x" * 32, raw=b"other", sender="a", nonce=1, expires_at_ms=1)
    assert pool.add(clash) == NONCE_IN_USE
    assert pool.add(_tx("a", 2)) is None
    assert pool.add(_tx("a", 3)) == ACCOUNT_FULL
    assert pool.add(_tx("b", 1)) is None
    assert pool.add(_tx("c", 1)) == MEMPOOL_FULL
    assert len(pool) == 3 and pool.total_bytes == sum(len(_tx(s, n).raw) for s, n in [("a", 1), ("a", 2), ("b", 1)])


def test_batch_orders_each_sender_by_nonce_and_skips_in_flight() -> None:
    pool = Mempool(capacity=100, account_limit=100)
    for sender, nonce in [("a", 3), ("b", 1), ("a", 1), ("a", 2)]:
        pool.add(_tx(sender, nonce))
    batch = pool.batch(max_txs=10, max_bytes=10_000)
    assert [(t.sender, t.nonce) for t in batch] == [("a", 1), ("a", 2), ("a", 3), ("b", 1)]
    # a:1 and a:2 ride in an uncommitted ancestor: the next proposal leaves them out.
    in_flight = {t.tx_hash for t in batch[:2]}
    assert [(t.sender, t.nonce) for t in pool.batch(max_txs=10, max_bytes=10_000, exclude=in_flight)] == [
        ("a", 3), ("b", 1)]
    assert [(t.sender, t.nonce) for t in pool.batch(max_txs=2, max_bytes=10_000)] == [("a", 1), ("a", 2)]
    assert pool.batch(max_txs=10, max_bytes=2) == []


def test_commit_removes_txs_and_stale_nonces_and_expiry_evicts() -> None:
    pool = Mempool(capacity=100, account_limit=100)
    for n in (1, 2, 3):
        pool.add(_tx("a", n))
    pool.add(_tx("b", 1, expires_at_ms=50))
    committed = _tx("a", 2)
    # Committing a:2 also drops a:1, which can no longer commit.
    assert pool.remove_committed([(committed.tx_hash, "a", 2)]) == [_tx("a", 1).tx_hash]
    assert [t.nonce for t in pool.batch(max_txs=10, max_bytes=10_000) if t.sender == "a"] == [3]
    assert pool.evict_expired(now_ms=50) == 1
    assert len(pool) == 1
    assert pool.add(_tx("a", 1)) is None  # nothing of a:1 is left behind
