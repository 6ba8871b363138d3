"""Transaction admission: decode, screen, verify, check, pool, journal and gossip.

Admission path (DESIGN §10), for a batch of raw transactions from the API:

0. overload is shed, not queued: when the pending backlog plus the batch would take
   more than ``node.chain.shedding.MAX_WAIT_S`` to commit at the recent commit rate,
   the whole batch is refused with ``mempool_full`` (HTTP 503, Retry-After) before
   any decoding or signature work;
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
kill -9 of the node that gave it). Gossip reaches only the peers linked at that
moment, so each newly linked peer is also sent every transaction this node accepted
and has not yet seen committed (``send_pending_to``): what a node accepted while
cut off, or re-admitted from its journal before its links came up, reaches the
other validators and commits whoever leads. A journaled transaction that can no longer
commit (expired, or rejected when re-admitted after a restart) is reported as
``failed`` with its code by ``tx_status``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from consensus import codec
from contracts.errors import NOT_REGISTERED, TxError
from contracts.executor import check_tx
from contracts.transactions import (
    RegisterRequest,
    SignedTx,
    SubmitReading,
    decode_signed_tx,
    verify_signature,
)
from node.api.protocol import SubmitResult
from node.api.rate_limit import RATE_LIMITED, RateLimiter
from node.chain.clock import now_ms
from node.chain.mempool import DUPLICATE, MEMPOOL_FULL, Mempool, PoolTx, lane
from node.chain.shedding import BacklogGate
from node.chain.storage import Storage
from node.net.transport import FRAME_TXS
from node.ops.config import NodeConfig
from node.ops.metrics import NodeMetrics

if TYPE_CHECKING:
    from node.chain.driver import Driver

log = logging.getLogger("gridchain.backend")

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


class Admission:
    """The admission half of ``node.chain.backend.Backend`` (a mixin over the backend's fields)."""

    config: NodeConfig
    storage: Storage
    mempool: Mempool
    metrics: NodeMetrics
    driver: Driver
    transport: Any
    verified: Any
    admitted_at: dict[bytes, float]
    rate_limiter: RateLimiter
    _verify_pool: ThreadPoolExecutor
    _journal_pending: list[tuple[bytes, bytes]]
    _journal_waiters: list[asyncio.Future[None]]
    _journal_wakeup: asyncio.Event
    _gossip: list[bytes]
    _gossip_wakeup: asyncio.Event
    _gossip_in: asyncio.Queue[tuple[bytes, ...]] | None
    backlog: BacklogGate

    if TYPE_CHECKING:
        @property
        def state(self) -> Any: ...

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
        if source == "api" and (wait_s := self.backlog.refuse(
                pending=len(self.mempool), incoming=len(raws), committed_total=self.mempool.committed_total)):
            message = (f"backlog of {len(self.mempool)} pending transactions at {self.backlog.rate():.0f} tx/s "
                       f"committed; retry in {wait_s:.0f} s")
            return [SubmitResult(tx_hash=codec.digest(raw), code=MEMPOOL_FULL, message=message) for raw in raws]
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
            sender = lane(tx.sender, reading=isinstance(tx.body, SubmitReading))
            reason = self.mempool.add(PoolTx(tx_hash=stx.tx_hash, raw=stx.raw, sender=sender,
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

    def send_pending_to(self, peer: int) -> int:
        """Send a newly linked peer every transaction this node accepted that is still pending."""
        raws = [pooled.raw for h in self.admitted_at if (pooled := self.mempool.get(h)) is not None]
        step = self.config.gossip_batch_txs
        for i in range(0, len(raws), step):
            self.transport.send(peer, FRAME_TXS, codec.encode(tuple(raws[i : i + step])))
        return len(raws)

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
