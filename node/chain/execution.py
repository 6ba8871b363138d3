"""The execution pipeline: apply committed blocks, store them, announce them; halt loudly.

Theory of operation
-------------------
The consensus loop (``node.chain.driver``) hands committed blocks to ``commits``
and returns at once. ``_execute_loop`` is a second task: committed blocks are
applied in height order with ``contracts.apply_block`` in a worker thread (a
block of thousands of transactions takes longer than the event loop may be
blocked), then stored with their receipts, tx index and (every K blocks) a state
snapshot in one SQLite transaction, and only then announced (mempool cleanup,
metrics, API listeners). Signatures checked at admission are passed as
``verified`` so every transaction signature is verified once per node.

Execution fails loudly: if a batch of committed blocks cannot be applied or
stored (an exception out of ``apply_block`` or the database), the node *halts
execution*: it logs an ERROR with the height and the exception, sets
``gridchain_execution_halted`` to 1, stops feeding its consensus core (so it no
longer votes, proposes or times out) and ``/readyz`` answers 503 with reason
``execution_halted``. It never retries the block by itself: the same input gives
the same exception, and a node that goes on voting without executing would
vouch for state roots it does not have. Peers' block and sync requests are
still answered from storage. An operator restarts it after a fix.

``execution_lag`` is what the consensus loop's back-pressure watches: committed
blocks not executed yet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from consensus import codec
from consensus import events as ev
from consensus.leader import CreditSnapshot
from consensus.types import Block, QuorumCert, block_id
from contracts import records
from contracts.executor import BlockInput, Receipt, apply_block
from contracts.genesis import Genesis
from contracts.initial import initial_state
from contracts.state import State, decode_state, encode_state, is_checkpoint
from node.api.protocol import CommittedBlock
from node.chain.clock import now_ms
from node.chain.mempool import Mempool
from node.chain.shedding import BacklogGate
from node.chain.storage import BlockRecord, Storage
from node.ops.config import NodeConfig
from node.ops.metrics import NodeMetrics

log = logging.getLogger("gridchain.driver")

EXECUTED_ROOTS = 4_096
"""State roots of recent heights kept to check proposals' executed_state_root."""
DROPPED_KEPT = 100_000
"""Accepted-but-never-committable txs remembered for tx status queries."""
CREDIT_HISTORY = 64
"""Credit snapshots of the latest committed blocks kept for a restart's leader election."""


class ExecutionHalt(msgspec.Struct, frozen=True):
    """Why execution stopped for good (until an operator restarts the node)."""

    height: int
    """Height of the block that could not be applied or stored."""
    error: str
    """The exception, as ``Type: message``."""


class StoredReceipts(msgspec.Struct, frozen=True):
    """What is stored per height for the API: receipts and the Merkle leaves."""

    receipts: tuple[Receipt, ...]
    leaves: tuple[bytes, ...]


@dataclass(slots=True)
class Executed:
    """One block after execution, ready to be stored and announced."""

    block: Block
    block_id: bytes
    receipts: list[Receipt]
    leaves: tuple[bytes, ...]
    state_root: bytes
    receipts_root: bytes
    record: BlockRecord


def block_input(block: Block) -> BlockInput:
    header = block.header
    return BlockInput(
        height=header.height,
        round=header.round,
        timestamp_ms=header.timestamp_ms,
        proposer=header.author,
        voters=tuple(header.parent_qc.signers),
        failed_authors=tuple(author for _round, author in header.failed_authors),
        equivocations=tuple((e.author, e.round) for e in header.evidence),
        txs=list(block.payload),
    )


@dataclass
class ExecutionState:
    """The contracts state and what the driver knows about its latest block."""

    state: State
    height: int
    root: bytes
    last_block: Block
    last_block_id: bytes
    roots: OrderedDict[int, bytes] = field(default_factory=OrderedDict)
    history: list[CreditSnapshot] = field(default_factory=list)
    """Credit after each of the latest committed blocks (oldest first), for ``RestorePoint``."""

    def record_credit(self, block: Block, bid: bytes) -> None:
        self.history.append(CreditSnapshot(round=block.round, block_id=bid, credit=self.state.credit))
        if len(self.history) > CREDIT_HISTORY:
            del self.history[: len(self.history) - CREDIT_HISTORY]

    def remember(self, height: int, root: bytes) -> None:
        self.roots[height] = root
        while len(self.roots) > EXECUTED_ROOTS:
            self.roots.popitem(last=False)


class ExecutionPipeline:
    """The execution half of ``node.chain.driver.Driver`` (a mixin over the driver's fields)."""

    config: NodeConfig
    genesis: Genesis
    genesis_block: Block
    storage: Storage
    mempool: Mempool
    metrics: NodeMetrics
    verified: Any
    admitted_at: dict[bytes, float]
    core: Any
    exec: ExecutionState | None
    commits: asyncio.Queue[tuple[tuple[Block, ...], QuorumCert]]
    halted: ExecutionHalt | None
    listeners: list[Callable[[Any], None]]
    exec_pool: ThreadPoolExecutor
    state_idle: asyncio.Event
    dropped: OrderedDict[bytes, tuple[str, str]]
    _exec_progress: asyncio.Event
    _exec_lock: asyncio.Lock
    _need_sync: bool
    _last_commit_t: float | None
    _applying: int
    backlog: BacklogGate

    if TYPE_CHECKING:
        def _put(self, event: ev.Event) -> None: ...

    def load(self) -> None:
        """Rebuild the executed state from the latest snapshot plus the stored blocks after it."""
        snapshot = self.storage.latest_snapshot()
        if snapshot is None:
            state = initial_state(self.genesis)
            height, root = 0, state.root
        else:
            height, data, root = snapshot
            state = decode_state(data)
            state.root = root  # a checkpoint's bytes hold the inner root
        last_block, last_id = self.genesis_block, block_id(self.genesis_block.header)
        history = [CreditSnapshot(round=0, block_id=last_id, credit=state.credit)] if snapshot is None else []
        saved = self.storage.load_meta("credit_history")
        if saved is not None:
            history = list(codec.decode(saved, tuple[CreditSnapshot, ...]))
        stored_head = self.storage.latest_height()
        verified_none: frozenset[bytes] = frozenset()
        for first in range(height + 1, stored_head + 1, 256):
            for stored in self.storage.blocks_range(first, min(first + 255, stored_head)):
                block = codec.decode(stored.block_bytes, Block)
                _, _, result = apply_block(state, block_input(block), verified=verified_none)
                if saved is None:
                    history.append(CreditSnapshot(round=block.round, block_id=stored.block_id, credit=state.credit))
                if result.state_root != stored.state_root:
                    raise RuntimeError(f"replay of height {stored.height} gave a different state root")
                height, root = stored.height, result.state_root
        if stored_head > 0:
            head = self.storage.block(stored_head)
            assert head is not None
            last_block, last_id = codec.decode(head.block_bytes, Block), head.block_id
            root = head.state_root
        self.exec = ExecutionState(state=state, height=height, root=root, last_block=last_block,
                                   last_block_id=last_id, history=history[-CREDIT_HISTORY:])
        self.exec.remember(height, root)
        log.info("loaded state at height %d (snapshot %s)", height, "none" if snapshot is None else snapshot[0])

    def execution_lag(self) -> int:
        """Committed blocks not executed yet."""
        if self.core is None or self.exec is None:
            return 0
        return max(0, self.core.committed_height - self.exec.height)

    def forget(self, tx_hash: bytes, code: str, message: str) -> None:
        """Remember that an accepted tx can never commit (bounded)."""
        self.dropped[tx_hash] = (code, message)
        while len(self.dropped) > DROPPED_KEPT:
            self.dropped.popitem(last=False)

    def _report_stale(self, hashes: list[bytes]) -> None:
        for tx_hash in hashes:
            if self.admitted_at.pop(tx_hash, None) is not None:
                self.forget(tx_hash, "stale_nonce", "a later nonce of the sender committed first")

    def _apply_all(self, blocks: list[Block], snapshot_every: int) -> tuple[list[Executed], Any]:
        """Worker thread: execute ``blocks`` in order; return results and maybe a snapshot."""
        assert self.exec is not None
        out: list[Executed] = []
        snapshot = None
        for block in blocks:
            self._applying = block.height
            state, receipts, result = apply_block(self.exec.state, block_input(block), verified=self.verified)
            bid = block_id(block.header)
            receipts_bytes = codec.encode(StoredReceipts(receipts=tuple(receipts), leaves=result.leaves))
            record = BlockRecord(
                block=block, block_bytes=codec.encode(block), block_id=bid, state_root=result.state_root,
                receipts_root=result.receipts_root, receipts_bytes=receipts_bytes,
                tx_results=[(r.tx_hash, r.code, r.nonce_consumed) for r in receipts],
            )
            self.exec.record_credit(block, bid)
            out.append(Executed(block=block, block_id=bid, receipts=receipts, leaves=result.leaves,
                                state_root=result.state_root, receipts_root=result.receipts_root, record=record))
            if state.checkpoint is not None and state.checkpoint[0] == block.height:
                # The checkpoint's own bytes (what state sync serves), not a second encoding.
                snapshot, state.checkpoint = (block.height, state.checkpoint[1], result.state_root), None
            elif block.height % snapshot_every == 0 and (snapshot is None or not is_checkpoint(snapshot[0])):
                snapshot = (block.height, encode_state(state), result.state_root)
        return out, snapshot

    async def _execute_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            blocks, proof = await self.commits.get()
            if self.halted is not None:
                continue  # nothing arrives once consensus is held; never re-run a failed block
            batch = list(blocks)
            # Take whatever else is already committed: one thread hop and one SQLite transaction.
            while not self.commits.empty() and len(batch) < 64:
                more, proof = self.commits.get_nowait()
                batch.extend(more)
            await self.execute_blocks(batch, proof, loop)

    async def execute_blocks(self, blocks: list[Block], proof: QuorumCert, loop: Any = None) -> None:
        """Execute, store and announce committed ``blocks`` (one at a time: the commit
        pipeline and a catch-up may both call this)."""
        async with self._exec_lock:
            await self._execute_locked(blocks, proof, loop or asyncio.get_running_loop())

    async def _execute_locked(self, blocks: list[Block], proof: QuorumCert, loop: Any) -> None:
        assert self.exec is not None
        if self.halted is not None:
            return
        blocks = [b for b in blocks if b.height > self.exec.height]
        if not blocks:
            return
        if blocks[0].height != self.exec.height + 1:
            # Committed blocks we do not have (e.g. the core restarted above us): fetch them by height.
            log.warning("commit gap: executed %d, next committed %d; catching up", self.exec.height,
                        blocks[0].height)
            self._need_sync = True
            self._put(ev.Tick(now_ms=now_ms()))
            self._exec_progress.set()
            return
        # apply_block mutates the state in place on the worker thread; readers wait
        # for state_idle so they never see a half-applied block.
        self.state_idle.clear()
        self._applying = blocks[0].height
        try:
            done, snapshot = await loop.run_in_executor(
                self.exec_pool, self._apply_all, blocks, self.config.snapshot_every_blocks
            )
        except Exception as exc:
            self._halt(self._applying, "applying", exc)
            return
        finally:
            self.state_idle.set()
        history = codec.encode(tuple(self.exec.history))
        try:
            await self.storage.store_committed([d.record for d in done], commit_qc=proof, snapshot=snapshot,
                                               extra_meta=[("credit_history", history)],
                                               journaled=self.admitted_at)
        except Exception as exc:
            self._halt(blocks[0].height, "storing", exc)
            return
        for item in done:
            self._announce(item)
        self._exec_progress.set()

    def _halt(self, height: int, what: str, exc: Exception) -> None:
        """Execution cannot continue: say so everywhere and stop taking part in consensus."""
        self.halted = ExecutionHalt(height=height, error=f"{type(exc).__name__}: {exc}")
        self.metrics.execution_halted.set(1)
        log.error("execution halted at height %d (%s failed: %r); this node stops voting and proposing "
                  "until an operator restarts it", height, what, exc, exc_info=exc)
        self._exec_progress.set()

    def _announce(self, item: Executed) -> None:
        assert self.exec is not None
        height = item.block.height
        self.exec.height, self.exec.root = height, item.state_root
        self.exec.last_block, self.exec.last_block_id = item.block, item.block_id
        self.exec.remember(height, item.state_root)
        now = time.monotonic()
        if self._last_commit_t is not None:
            self.metrics.block_interval.observe(now - self._last_commit_t)
        self._last_commit_t = now
        committed = []
        failed = 0
        verified = self.verified
        for receipt in item.receipts:
            tx_hash = receipt.tx_hash
            pooled = self.mempool.get(tx_hash)
            if pooled is not None:  # committed during a catch-up, not through a Commit action
                committed.append((tx_hash, pooled.sender, pooled.nonce))
            admitted = self.admitted_at.pop(tx_hash, None)
            if admitted is not None:
                self.metrics.commit_latency.observe(now - admitted)
                self.backlog.observe_latency(now - admitted)
            verified.discard(tx_hash)
            if not receipt.ok:
                failed += 1
        self._report_stale(self.mempool.remove_committed(committed))
        self._market_gauges(item.leaves)
        self.metrics.height.set(height)
        self.metrics.execution_lag.set(self.execution_lag())
        self.metrics.blocks_committed.inc()
        self.metrics.txs_committed.inc(len(item.receipts) - failed)
        self.metrics.txs_failed.inc(failed)
        self.metrics.mempool_size.set(len(self.mempool))
        log.info("committed height=%d round=%d txs=%d failed=%d root=%s", height, item.block.round,
                 len(item.receipts), failed, item.state_root.hex()[:16])
        if self.listeners:
            event = CommittedBlock(block=item.block, block_id=item.block_id, state_root=item.state_root,
                                   receipts_root=item.receipts_root, receipts=tuple(item.receipts),
                                   leaves=item.leaves)
            for listener in list(self.listeners):
                try:
                    listener(event)
                except Exception:
                    log.exception("block listener failed")

    def _market_gauges(self, leaves: tuple[bytes, ...]) -> None:
        """Clearing price and volume of the latest slot cleared in this block, if any."""
        for leaf in leaves:
            if b"clearing" not in leaf:  # cheap pre-filter; most leaves are receipts
                continue
            try:
                record = codec.decode(leaf, records.SlotCleared)
            except codec.CodecError:
                continue
            self.metrics.clearing_price.set(record.price_u_per_wh or 0)
            self.metrics.cleared_volume.set(record.volume_wh)

