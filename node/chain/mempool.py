"""The mempool: admitted transactions waiting for a block.

Bounded (``capacity`` in total, ``account_limit`` per sender), deduplicated by tx
hash and by (sender, nonce), and it hands out proposal batches in per-sender
nonce order. It is plain in-memory bookkeeping on the event loop: every method
is O(batch) or O(pool) with small constants and never awaits.

Life of a transaction: ``add`` (after the signature and ``contracts.check_tx``
passed) -> picked by ``batch`` for a proposal; the driver passes as ``exclude``
the transactions of the uncommitted blocks the new proposal extends, so a
transaction is never proposed twice on one chain (and a sender's nonces stay in
order), while one carried only by an abandoned fork becomes eligible again at
once -> ``remove_committed`` when its block commits, which also drops the
sender's pending txs with lower nonces (they can no longer commit; their
hashes are returned so the node can report them as failed).

Nonce lanes: a meter reading consumes the account's *meter* nonce, every other
transaction its account nonce (``contracts.executor``), so the two sequences are
independent. ``lane(sender, reading)`` is the key the pool orders and deduplicates
by: ``sender`` for account-nonce transactions, ``sender + METER_LANE`` for readings
— a reading with nonce 7 and an order with nonce 7 do not collide, and a committed
reading does not drop the sender's pending orders as stale.

``committed_total`` counts the transactions ``remove_committed`` removed (the
admission's overload estimate, ``node.chain.shedding``, takes the commit rate from it).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass

DUPLICATE = "duplicate"
NONCE_IN_USE = "nonce_in_use"
ACCOUNT_FULL = "account_limit"
MEMPOOL_FULL = "mempool_full"
METER_LANE = "/meter"


def lane(sender: str, *, reading: bool) -> str:
    """The nonce lane of a transaction (see the module docstring)."""
    return sender + METER_LANE if reading else sender


@dataclass(frozen=True, slots=True)
class PoolTx:
    """One admitted transaction: its raw signed bytes and what ordering needs."""

    tx_hash: bytes
    raw: bytes
    sender: str
    """The nonce lane (``lane``): the sender address, or the address + ``METER_LANE``."""
    nonce: int
    expires_at_ms: int


class Mempool:
    """Pending transactions; see the module docstring."""

    def __init__(self, *, capacity: int, account_limit: int) -> None:
        assert capacity > 0 and account_limit > 0
        self.capacity = capacity
        self.account_limit = account_limit
        self._txs: dict[bytes, PoolTx] = {}
        """Every pending tx by hash, in arrival order (dicts keep insertion order)."""
        self._by_sender: dict[str, dict[int, bytes]] = {}
        """sender -> nonce -> hash."""
        self.total_bytes = 0
        self.committed_total = 0
        """Transactions removed by ``remove_committed`` so far."""

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._txs

    def get(self, tx_hash: bytes) -> PoolTx | None:
        return self._txs.get(tx_hash)

    def free(self) -> int:
        return self.capacity - len(self._txs)

    def check(self, tx: PoolTx) -> str | None:
        """Why ``tx`` cannot be added now (a code), or None."""
        if tx.tx_hash in self._txs:
            return DUPLICATE
        nonces = self._by_sender.get(tx.sender)
        if nonces is not None:
            if tx.nonce in nonces:
                return NONCE_IN_USE
            if len(nonces) >= self.account_limit:
                return ACCOUNT_FULL
        if len(self._txs) >= self.capacity:
            return MEMPOOL_FULL
        return None

    def add(self, tx: PoolTx) -> str | None:
        """Add ``tx``; return None, or the code of why it was not added (nothing changes then)."""
        reason = self.check(tx)
        if reason is not None:
            return reason
        self._txs[tx.tx_hash] = tx
        self._by_sender.setdefault(tx.sender, {})[tx.nonce] = tx.tx_hash
        self.total_bytes += len(tx.raw)
        return None

    def _remove(self, tx_hash: bytes) -> None:
        tx = self._txs.pop(tx_hash, None)
        if tx is None:
            return
        self.total_bytes -= len(tx.raw)
        nonces = self._by_sender.get(tx.sender)
        if nonces is not None:
            nonces.pop(tx.nonce, None)
            if not nonces:
                del self._by_sender[tx.sender]

    def batch(self, *, max_txs: int, max_bytes: int, exclude: Container[bytes] = frozenset()) -> list[PoolTx]:
        """Up to ``max_txs``/``max_bytes`` txs not in ``exclude``, senders in order of
        their oldest pending tx, each sender's in increasing nonce order."""
        chosen: list[PoolTx] = []
        size = 0
        done: set[str] = set()
        for tx in self._txs.values():
            if tx.sender in done:
                continue
            done.add(tx.sender)
            nonces = self._by_sender[tx.sender]
            for nonce in sorted(nonces):
                candidate = self._txs[nonces[nonce]]
                if candidate.tx_hash in exclude:
                    continue
                if len(chosen) >= max_txs or size + len(candidate.raw) > max_bytes:
                    return chosen
                chosen.append(candidate)
                size += len(candidate.raw)
        return chosen

    def remove_committed(self, committed: Sequence[tuple[bytes, str, int]]) -> list[bytes]:
        """Drop committed ``(hash, sender, nonce)`` and every pending tx of that sender
        with a nonce at or below it; return the hashes of the latter (they can no
        longer commit)."""
        stale_hashes: list[bytes] = []
        top: dict[str, int] = {}
        self.committed_total += len(committed)
        for tx_hash, sender, nonce in committed:
            self._remove(tx_hash)
            if nonce > top.get(sender, 0):
                top[sender] = nonce
        for sender, nonce in top.items():
            nonces = self._by_sender.get(sender)
            if nonces:
                for stale in [n for n in nonces if n <= nonce]:
                    stale_hashes.append(nonces[stale])
                    self._remove(nonces[stale])
        return stale_hashes

    def expired(self, now_ms: int) -> list[PoolTx]:
        """Txs whose expiry has passed (they can only fail now)."""
        return [tx for tx in self._txs.values() if tx.expires_at_ms <= now_ms]

    def evict_expired(self, now_ms: int) -> int:
        """Drop txs whose expiry has passed (they could only fail). Returns how many."""
        expired = [h for h, tx in self._txs.items() if tx.expires_at_ms <= now_ms]
        for tx_hash in expired:
            self._remove(tx_hash)
        return len(expired)
