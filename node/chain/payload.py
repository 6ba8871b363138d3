"""Proposal payload selection: which mempool transactions the next proposal carries,
and when to answer the core's ``RequestPayload`` (at once, or after the idle wait).

A proposal never repeats a transaction that is already in the uncommitted chain it
extends (``_in_flight``), and committed transactions leave the mempool as soon as
consensus commits them, before execution catches up.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from consensus import codec
from consensus import events as ev
from consensus.config import ConsensusParams
from consensus.types import Block, block_id
from node.chain.mempool import Mempool
from node.ops.config import NodeConfig
from node.ops.metrics import NodeMetrics

if TYPE_CHECKING:
    from node.chain.execution import ExecutionState

RECENT_BLOCKS = 1_024
"""Uncommitted blocks kept to answer peers' BlockRequests and to find in-flight txs."""
RECENT_BLOCKS_BYTES = 32 * 1024 * 1024
"""...and at most about this many payload bytes of them (full blocks of thousands of
transactions would otherwise keep ~1 GB alive); older ones are read from storage."""
RECENT_BLOCKS_MIN = 16
"""Blocks kept whatever their size (the uncommitted chain is a few blocks long)."""


def block_bytes(block: Block) -> int:
    """What a cached block costs, about: its payload plus a header."""
    return sum(map(len, block.payload)) + 1_024


class PayloadSelection:
    """The payload half of ``node.chain.driver.Driver`` (a mixin over the driver's fields)."""

    config: NodeConfig
    params: ConsensusParams
    mempool: Mempool
    metrics: NodeMetrics
    core: Any
    exec: ExecutionState | None
    syncing: bool
    recent_blocks: OrderedDict[bytes, Block]
    _hash_cache: dict[bytes, frozenset[bytes]]
    _idle_timer: asyncio.TimerHandle | None
    _waiting_round: int | None

    if TYPE_CHECKING:
        def _put(self, event: ev.Event) -> None: ...
        def _report_stale(self, hashes: list[bytes]) -> None: ...

    def _drop_committed_from_mempool(self, blocks: tuple[Block, ...]) -> None:
        """Committed txs leave the mempool at once (execution may lag behind), so no
        later leader proposes them again."""
        committed = []
        for block in blocks:
            for tx_hash in self._payload_hashes(block_id(block.header), block):
                pooled = self.mempool.get(tx_hash)
                if pooled is not None:
                    committed.append((tx_hash, pooled.sender, pooled.nonce))
        self._report_stale(self.mempool.remove_committed(committed))
        self.metrics.mempool_size.set(len(self.mempool))


    def _request_payload(self, round: int) -> None:
        """Propose at once when there is work (txs waiting, or txs in the uncommitted
        chain that need this block to commit); otherwise wait up to
        ``idle_block_interval_ms`` for transactions, so an idle chain does not spin."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if len(self.mempool) or self._chain_has_uncommitted_txs() or self.config.idle_block_interval_ms <= 0:
            self._put(self._payload(round))
            return
        self._waiting_round = round
        self._idle_timer = asyncio.get_running_loop().call_later(
            self.config.idle_block_interval_ms / 1000, self.txs_available)

    def txs_available(self) -> None:
        """The mempool got transactions (or the idle wait ended): answer a waiting payload request."""
        round, self._waiting_round = self._waiting_round, None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if round is not None and not self.syncing and self.core is not None and self.core.round == round:
            self._put(self._payload(round))

    def _in_flight(self) -> set[bytes]:
        """Tx hashes in the uncommitted blocks the next proposal extends (high QC back to the root)."""
        hashes: set[bytes] = set()
        if self.core is None:
            return hashes
        committed = self.core.committed_height
        bid = self.core.high_qc.block_id
        for _ in range(RECENT_BLOCKS):
            block = self.recent_blocks.get(bid)
            if block is None or block.height <= committed:
                break
            hashes.update(self._payload_hashes(bid, block))
            bid = block.parent_id
        return hashes

    def _payload_hashes(self, bid: bytes, block: Block) -> frozenset[bytes]:
        cached = self._hash_cache.get(bid)
        if cached is None:
            cached = self._hash_cache[bid] = frozenset(codec.digest(tx) for tx in block.payload)
            while len(self._hash_cache) > 64:
                del self._hash_cache[next(iter(self._hash_cache))]
        return cached

    def _chain_has_uncommitted_txs(self) -> bool:
        block = self.recent_blocks.get(self.core.high_qc.block_id) if self.core is not None else None
        committed = self.core.committed_height if self.core is not None else 0
        for _ in range(2):
            if block is None or block.height <= committed:
                return False
            if block.payload:
                return True
            block = self.recent_blocks.get(block.parent_id)
        return False

    def _payload(self, round: int) -> ev.PayloadReady:
        assert self.exec is not None
        batch = self.mempool.batch(max_txs=self.params.max_block_txs,
                                   max_bytes=self.params.max_block_bytes, exclude=self._in_flight())
        return ev.PayloadReady(round=round, payload=tuple(tx.raw for tx in batch),
                               executed_height=self.exec.height, executed_state_root=self.exec.root)

