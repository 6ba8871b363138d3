"""The runtime side of the REST API: ``Backend`` implements ``node.api.protocol.NodeBackend``
for one running node — reads of state, blocks, receipts and transaction status, readiness
and health, block listeners — and admits submissions through ``node.chain.admission``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from consensus import codec
from consensus.types import Block
from contracts.genesis import Genesis
from node.api.protocol import CommittedBlock, Overloaded, SubmitResult, TxLookup
from node.api.rate_limit import RateLimiter
from node.chain.admission import Admission
from node.chain.clock import now_ms
from node.chain.driver import Driver
from node.chain.execution import StoredReceipts
from node.chain.mempool import MEMPOOL_FULL, Mempool
from node.chain.shedding import BacklogGate
from node.chain.storage import Storage
from node.ops.config import NodeConfig
from node.ops.metrics import SUBMISSION_ADMITTED, NodeMetrics

log = logging.getLogger("gridchain.backend")

RECEIPT_CACHE_BLOCKS = 64


class Backend(Admission):
    """Implements ``node.api.protocol.NodeBackend`` for one running node."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        genesis: Genesis,
        storage: Storage,
        mempool: Mempool,
        metrics: NodeMetrics,
        driver: Driver,
    ) -> None:
        self.config = config
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.node_name = config.name
        self.role = config.role
        self.node_id = config.node_id
        self.storage = storage
        self.mempool = mempool
        self.metrics = metrics
        self.driver = driver
        self.transport: Any = None
        self.verified = driver.verified
        self.admitted_at = driver.admitted_at
        self.backlog: BacklogGate = driver.backlog
        """Overload shedding of API submissions (``node.chain.shedding``)."""
        self._verify_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify")
        self._journal_pending: list[tuple[bytes, bytes]] = []
        self._journal_waiters: list[asyncio.Future[None]] = []
        self._journal_wakeup = asyncio.Event()
        self._gossip: list[bytes] = []
        self._gossip_wakeup = asyncio.Event()
        self._gossip_in: asyncio.Queue[tuple[bytes, ...]] | None = (
            asyncio.Queue(maxsize=config.gossip_admission_queue) if config.gossip_admission_queue > 0 else None)
        self._receipt_cache: OrderedDict[int, StoredReceipts] = OrderedDict()
        self.rate_limiter = RateLimiter.from_config(
            config, on_refused=lambda limit: metrics.rate_limited.labels(limit=limit).inc())
        """Submission limits (``node.api.rate_limit``); the API app enforces the per-client one."""
        self._tasks: list[asyncio.Task[Any]] = []
        self.started_at = time.monotonic()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Every task here runs until stop(); healthy() reports a finished one as a failure.
        self._tasks += [
            loop.create_task(self._journal_loop(), name="journal"),
            loop.create_task(self._gossip_loop(), name="gossip"),
            loop.create_task(self._housekeeping(), name="housekeeping"),
        ]
        if self._gossip_in is not None:
            self._tasks.append(loop.create_task(self._gossip_admission_loop(), name="gossip-admission"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._verify_pool.shutdown(wait=True)

    async def restore_journal(self) -> int:
        """Re-admit (and re-gossip) the accepted transactions a previous run left in the journal."""
        raws = self.storage.load_journal()
        if not raws:
            return 0
        results = await self._admit(raws, journal=False, gossip=True, source="journal")
        gone = [r.tx_hash for r in results if r.code is not None and r.tx_hash is not None]
        await self.storage.journal_remove(gone)
        log.info("journal: %d accepted transactions re-admitted, %d can no longer commit",
                 len(raws) - len(gone), len(gone))
        return len(raws) - len(gone)

    # ------------------------------------------------------------------ NodeBackend
    @property
    def state(self) -> Any:
        assert self.driver.exec is not None
        return self.driver.exec.state

    async def read_state(self) -> Any:
        idle = self.driver.state_idle
        while not idle.is_set():
            await idle.wait()
        # No await between the check and the return: the caller gets the state at a block boundary.
        return self.state

    def validator_set(self) -> list[tuple[int, str, bytes]]:
        """(index, name, public key) of the validators this node verifies against: the keys of
        the driver's committee, named from the executed state's validator table."""
        d = self.driver
        names: dict[bytes, str] = {}
        if d.exec is not None:
            names = {v.public_key: v.name for v in d.exec.state.validators.values()}
        return [(i, names.get(key, ""), key) for i, key in enumerate(d.committee.public_keys)]

    def status(self) -> dict[str, Any]:
        d = self.driver
        core = d.core
        exec_ = d.exec
        return {
            "node_role": self.config.node_role,
            "epoch": d.committee.epoch,
            "validators": [{"index": i, "name": name, "public_key": key.hex()}
                           for i, name, key in self.validator_set()],
            "height": exec_.height if exec_ else 0,
            "committed_height": core.committed_height if core is not None else (exec_.height if exec_ else 0),
            "round": d.round,
            "leader": d.leader,
            "state_root": exec_.root.hex() if exec_ else "",
            "peers": len(self.transport.connected()) if self.transport else 0,
            "peer_validators": self.transport.connected() if self.transport else [],
            "syncing": d.syncing,
            "mempool_size": len(self.mempool),
            "last_voted_round": core.last_voted_round if core is not None else 0,
            "execution_lag_blocks": d.execution_lag(),
            "execution_halted": None if d.halted is None else {"height": d.halted.height, "error": d.halted.error},
        }

    def ready(self) -> bool:
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why ``/readyz`` answers 503: ``execution_halted``, ``syncing`` or ``no_quorum``; None if ready."""
        if self.driver.halted is not None:
            return "execution_halted"
        if self.driver.syncing or self.transport is None:
            return "syncing"
        if self.config.node_role == "observer":  # never counts in a quorum: it needs one upstream link
            return None if self.transport.upstream() else "no_peers"
        if len(self.transport.connected()) + 1 < self.driver.committee.quorum:
            return "no_quorum"
        return None

    def pruned_height(self) -> int:
        """Blocks at or below it are not stored (the node started from a state-sync snapshot)."""
        return self.driver.pruned_height()

    def healthy(self) -> bool:
        return all(not t.done() for t in self._tasks + self.driver._tasks)

    def add_listener(self, listener: Callable[[CommittedBlock], None]) -> Callable[[], None]:
        self.driver.listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self.driver.listeners.remove(listener)

        return remove

    async def submit(self, raw_txs: Sequence[bytes]) -> list[SubmitResult]:
        results = await self._admit(list(raw_txs), journal=True, gossip=True, source="api")
        accepted = sum(1 for r in results if r.code is None)
        self.metrics.txs_submitted.inc(accepted)
        for r in results:
            if r.code is not None:
                self.metrics.txs_rejected.labels(code=r.code).inc()
        if (admitted := SUBMISSION_ADMITTED.get()) is not None:
            admitted.append(True)
        if accepted == 0 and results and all(r.code == MEMPOOL_FULL for r in results):
            raise Overloaded("mempool is full, retry later")
        return results

    async def tx_status(self, tx_hash: bytes) -> TxLookup | None:
        if tx_hash in self.mempool:
            return TxLookup(status="pending")
        location = self.storage.tx_location(tx_hash)
        if location is not None:
            stored = self._receipts(location.height)
            receipt = stored.receipts[location.index] if stored is not None else None
            return TxLookup(status="committed" if location.code == "ok" else "failed",
                            height=location.height, index=location.index, receipt=receipt)
        dropped = self.driver.dropped.get(tx_hash)
        if dropped is not None:
            return TxLookup(status="failed", receipt={"code": dropped[0], "message": dropped[1]})
        if tx_hash in self.admitted_at:
            return TxLookup(status="pending")
        return None

    async def block(self, height: int | None) -> CommittedBlock | None:
        if height is None:
            height = self.driver.exec.height if self.driver.exec else 0
        stored = self.storage.block(height)
        if stored is None:
            if height == 0:
                genesis_block = self.driver.genesis_block
                return CommittedBlock(block=genesis_block, block_id=codec.digest_of(genesis_block.header),
                                      state_root=b"", receipts_root=b"")
            return None
        block = codec.decode(stored.block_bytes, Block)
        child = self.storage.block(height + 1)
        commit_qc = codec.decode(child.block_bytes, Block).header.parent_qc if child is not None else None
        receipts = self._receipts(height)
        return CommittedBlock(
            block=block, block_id=stored.block_id, state_root=stored.state_root,
            receipts_root=stored.receipts_root,
            receipts=receipts.receipts if receipts else (), leaves=receipts.leaves if receipts else (),
            commit_qc=commit_qc,
        )

    async def receipt_leaves(self, height: int) -> list[bytes] | None:
        stored = self._receipts(height)
        return None if stored is None else list(stored.leaves)

    def _receipts(self, height: int) -> StoredReceipts | None:
        cached = self._receipt_cache.get(height)
        if cached is not None:
            return cached
        blob = self.storage.receipts(height)
        if blob is None:
            return None
        stored = codec.decode(blob, StoredReceipts)
        self._receipt_cache[height] = stored
        while len(self._receipt_cache) > RECEIPT_CACHE_BLOCKS:
            self._receipt_cache.popitem(last=False)
        return stored


    async def _housekeeping(self) -> None:
        """Once a second: expire transactions, refresh gauges."""
        while True:
            await asyncio.sleep(1.0)
            now = now_ms()
            expired = [tx.tx_hash for tx in self.mempool.expired(now)]
            if expired:
                self.mempool.evict_expired(now)
                mine = [h for h in expired if self.admitted_at.pop(h, None) is not None]
                for h in mine:
                    self.driver.forget(h, "expired", "expired before it was included in a block")
                await self.storage.journal_remove(mine)
            self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        m = self.metrics
        m.mempool_size.set(len(self.mempool))
        m.peers.set(len(self.transport.connected()) if self.transport else 0)
        core = self.driver.core
        if core is None:
            return
        self.driver.sync_stats()
        exec_ = self.driver.exec
        credits = exec_.state.credit.credits if exec_ is not None else ()
        for index, validator in enumerate(self.genesis.validators):
            if index < len(credits):
                m.credit.labels(validator=validator.name).set(credits[index])
        shares = self.driver.leader_shares()
        for index, validator in enumerate(self.genesis.validators):
            m.leader_share.labels(validator=validator.name).set(shares.get(index, 0.0))
