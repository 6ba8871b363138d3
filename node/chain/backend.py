"""The runtime side of the REST API (``node.api.NodeBackend``) and transaction admission.

Admission path (DESIGN §10), for a batch of raw transactions from the API:

1. decode each (``contracts.transactions.decode_signed_tx``: size, canonical form);
2. a hash already pending or committed is answered with its hash (not an error);
3. a sender with no account may only send ``register_request`` (``not_registered``
   otherwise) and each of those costs the client address a rate-limit token — both
   before any signature work; signatures of the rest are verified in a worker thread (libsodium releases
   the GIL, so the event loop keeps running), and the hashes remembered in
   ``verified`` so neither the mempool nor block execution verifies them again;
4. ``contracts.executor.check_tx`` against the latest executed state (chain,
   expiry, registration, signer, stale nonce);
   then, for a transaction from a sender with no account yet, the per-sender rate
   limit (``node.api.rate_limit``: ``rate_limited``, HTTP 429);
5. the mempool takes them (or the whole batch is refused with ``mempool_full``
   when it has no room: back-pressure instead of an unbounded queue);
6. they are appended to the durable journal in one group commit shared with
   concurrent requests — only then is the answer 202;
7. they are gossiped to the other validators in batches.

Transactions gossiped by peers go through 1–5 (no journal: the accepting node
journals them and re-gossips its journal after a restart, so a 202 survives a
kill -9 of the node that gave it). A journaled transaction that can no longer
commit (expired, or rejected when re-admitted after a restart) is reported as
``failed`` with its code by ``tx_status``.
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
from contracts.errors import NOT_REGISTERED, TxError
from contracts.executor import check_tx
from contracts.genesis import Genesis
from contracts.transactions import RegisterRequest, SignedTx, decode_signed_tx, verify_signature
from node.api.protocol import CommittedBlock, Overloaded, SubmitResult, TxLookup
from node.api.rate_limit import RATE_LIMITED, RateLimiter
from node.chain.clock import now_ms
from node.chain.driver import Driver
from node.chain.execution import StoredReceipts
from node.chain.mempool import DUPLICATE, MEMPOOL_FULL, Mempool, PoolTx
from node.chain.storage import Storage
from node.net.transport import FRAME_TXS
from node.ops.config import NodeConfig
from node.ops.metrics import SUBMISSION_ADMITTED, NodeMetrics

log = logging.getLogger("gridchain.backend")

RECEIPT_CACHE_BLOCKS = 64

VERIFY_CHUNK = 256


class BoundedSet:
    """A set that forgets its oldest members beyond ``capacity`` (the verified-signature cache)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: dict[bytes, None] = {}

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: bytes) -> None:
        self._items[item] = None
        if len(self._items) > self.capacity:
            del self._items[next(iter(self._items))]

    def discard(self, item: bytes) -> None:
        self._items.pop(item, None)


def _verify_many(stxs: list[SignedTx]) -> list[bool]:
    return [verify_signature(stx) for stx in stxs]


class Backend:
    """Implements ``node.api.NodeBackend`` for one running node."""

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

    def status(self) -> dict[str, Any]:
        d = self.driver
        core = d.core
        exec_ = d.exec
        return {
            "height": exec_.height if exec_ else 0,
            "committed_height": core.committed_height if core is not None else (exec_.height if exec_ else 0),
            "round": d.round,
            "leader": d.leader,
            "state_root": exec_.root.hex() if exec_ else "",
            "peers": len(self.transport.connected()) if self.transport else 0,
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
        if len(self.transport.connected()) + 1 < self.driver.committee.quorum:
            return "no_quorum"
        return None

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

    # ------------------------------------------------------------------ admission
    def on_gossip(self, peer: int, raws: tuple[bytes, ...]) -> Any:
        """Transactions from a peer, admitted like API ones but not journaled or re-gossiped.

        With ``gossip_admission_queue`` > 0 they are queued, so the peer's link goes on
        delivering consensus messages meanwhile; when that many batches wait, further ones
        are dropped (the origin still holds them and proposes them when it leads). With 0
        they are admitted inline and the link waits (back-pressure on the sending peer)."""
        if self._gossip_in is None:
            return self._admit_gossip(raws)
        if self._gossip_in.full():
            self.metrics.dropped.labels(reason="gossip_overflow").inc()
            return
        self._gossip_in.put_nowait(raws)

    async def _admit_gossip(self, raws: tuple[bytes, ...]) -> None:
        fresh = [raw for raw in raws if codec.digest(raw) not in self.mempool]
        if fresh:
            await self._admit(fresh, journal=False, gossip=False, source="gossip")

    async def _gossip_admission_loop(self) -> None:
        assert self._gossip_in is not None
        while True:
            await self._admit_gossip(await self._gossip_in.get())

    async def _admit(self, raws: list[bytes], *, journal: bool, gossip: bool, source: str) -> list[SubmitResult]:
        results: list[SubmitResult | None] = [None] * len(raws)
        decoded: list[tuple[int, SignedTx]] = []
        for i, raw in enumerate(raws):
            try:
                stx = decode_signed_tx(raw)
            except TxError as exc:
                results[i] = SubmitResult(tx_hash=None, code=exc.code, message=exc.message)
                continue
            if stx.tx_hash in self.mempool:
                results[i] = SubmitResult(tx_hash=stx.tx_hash)
                continue
            decoded.append((i, stx))
        if decoded and source != "gossip":
            # A re-submitted committed tx answers with its hash; gossip skips the lookup (such a
            # tx fails check_tx with stale_nonce anyway).
            committed = self.storage.tx_locations([stx.tx_hash for _, stx in decoded])
            pending = []
            for i, stx in decoded:
                if stx.tx_hash in committed:
                    results[i] = SubmitResult(tx_hash=stx.tx_hash)
                else:
                    pending.append((i, stx))
            decoded = pending
        decoded = self._screen_unregistered(decoded, results, source)
        to_verify = [stx for _, stx in decoded if stx.tx_hash not in self.verified]
        if to_verify:
            ok = await self._verify(to_verify)
            for stx, good in zip(to_verify, ok, strict=True):
                if good:
                    self.verified.add(stx.tx_hash)
        state = self.state
        now = now_ms()
        limiter = self.rate_limiter if source == "api" else None
        admitted: list[tuple[int, SignedTx]] = []
        for i, stx in decoded:
            if stx.tx_hash not in self.verified:
                results[i] = SubmitResult(tx_hash=stx.tx_hash, code="bad_signature",
                                          message="signature does not verify")
                continue
            try:
                check_tx(state, stx, now_ms=now)
            except TxError as exc:
                results[i] = SubmitResult(tx_hash=stx.tx_hash, code=exc.code, message=exc.message)
                continue
            if limiter is not None and stx.tx.sender not in state.accounts:
                wait_s = limiter.sender_tx(stx.tx.sender)
                if wait_s > 0:
                    results[i] = SubmitResult(tx_hash=stx.tx_hash, code=RATE_LIMITED,
                                              message=f"too many submissions, retry in {wait_s:.0f} s")
                    continue
            admitted.append((i, stx))
        if len(admitted) > self.mempool.free():
            for i, stx in admitted:
                results[i] = SubmitResult(tx_hash=stx.tx_hash, code=MEMPOOL_FULL, message="mempool is full")
            if source == "gossip":
                self.metrics.dropped.labels(reason="mempool_full").inc()
            return [r for r in results if r is not None]
        added: list[tuple[bytes, bytes]] = []
        t_admit = time.monotonic()
        for i, stx in admitted:
            tx = stx.tx
            reason = self.mempool.add(PoolTx(tx_hash=stx.tx_hash, raw=stx.raw, sender=tx.sender,
                                             nonce=tx.nonce, expires_at_ms=tx.expires_at_ms))
            if reason is None or reason == DUPLICATE:
                results[i] = SubmitResult(tx_hash=stx.tx_hash)
                if reason is None:
                    added.append((stx.tx_hash, stx.raw))
                    if source != "gossip":
                        self.admitted_at.setdefault(stx.tx_hash, t_admit)
            else:
                results[i] = SubmitResult(tx_hash=stx.tx_hash, code=reason, message=f"mempool refused: {reason}")
        self.metrics.mempool_size.set(len(self.mempool))
        if added:
            self.driver.txs_available()
        if journal and added:
            await self._journal(added)
        if gossip and added:
            self._gossip.extend(raw for _, raw in added)
            self._gossip_wakeup.set()
        out = [r for r in results if r is not None]
        assert len(out) == len(raws)
        return out

    def _screen_unregistered(self, decoded: list[tuple[int, SignedTx]], results: list[SubmitResult | None],
                             source: str) -> list[tuple[int, SignedTx]]:
        """Before any signature is checked: a sender with no account may only ask to register
        [``not_registered``], and each such request costs the client address a token
        [``rate_limited``] — so a flood from throw-away keys buys no signature checks."""
        accounts = self.state.accounts
        limiter = self.rate_limiter if source == "api" else None
        kept = []
        for i, stx in decoded:
            if stx.tx.sender in accounts:
                kept.append((i, stx))
            elif not isinstance(stx.tx.body, RegisterRequest):
                results[i] = SubmitResult(tx_hash=stx.tx_hash, code=NOT_REGISTERED,
                                          message=f"account {stx.tx.sender} is unknown")
            elif limiter is not None and (wait_s := limiter.client_tx()) > 0:
                results[i] = SubmitResult(tx_hash=stx.tx_hash, code=RATE_LIMITED,
                                          message=f"too many submissions from this address, retry in {wait_s:.0f} s")
            else:
                kept.append((i, stx))
        return kept

    async def _verify(self, stxs: list[SignedTx]) -> list[bool]:
        loop = asyncio.get_running_loop()
        if len(stxs) <= 8:
            return _verify_many(stxs)
        futures = [
            loop.run_in_executor(self._verify_pool, _verify_many, stxs[i : i + VERIFY_CHUNK])
            for i in range(0, len(stxs), VERIFY_CHUNK)
        ]
        out: list[bool] = []
        for part in await asyncio.gather(*futures):
            out.extend(part)
        return out

    async def _journal(self, entries: list[tuple[bytes, bytes]]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._journal_pending.extend(entries)
        self._journal_waiters.append(future)
        self._journal_wakeup.set()
        await future

    async def _journal_loop(self) -> None:
        """Group commit: every pending entry of every waiting request in one SQLite transaction."""
        while True:
            await self._journal_wakeup.wait()
            self._journal_wakeup.clear()
            if self.config.journal_flush_ms > 0:
                await asyncio.sleep(self.config.journal_flush_ms / 1000)
            entries, waiters = self._journal_pending, self._journal_waiters
            self._journal_pending, self._journal_waiters = [], []
            try:
                await self.storage.journal_add(entries)
            except Exception as exc:
                log.exception("journal write failed")
                for w in waiters:
                    if not w.done():
                        w.set_exception(exc)
                continue
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    async def _gossip_loop(self) -> None:
        while True:
            await self._gossip_wakeup.wait()
            self._gossip_wakeup.clear()
            await asyncio.sleep(self.config.gossip_interval_ms / 1000)
            while self._gossip:
                batch = self._gossip[: self.config.gossip_batch_txs]
                del self._gossip[: self.config.gossip_batch_txs]
                if self.transport is not None:
                    self.transport.broadcast(FRAME_TXS, codec.encode(tuple(batch)))

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
