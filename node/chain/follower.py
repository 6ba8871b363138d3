"""The observer's follower: fetch committed blocks from upstream links, verify, execute.

Theory of operation
-------------------
An observer runs no consensus core: it never proposes, votes or counts in a
quorum. Its ``Follower`` keeps the executed chain level with its upstream links
(``node.net.observer_links``): each upstream pushes its committed height
(``HEAD``) after every commit; whenever a link is ahead, the follower asks it for
the next committed blocks (``SyncRequest``, the catch-up protocol of
``node.net.sync``) and checks the answer exactly as a catching-up validator does
(``node.net.sync.check_committed``): the hash chain from our last executed block,
every payload against its ``tx_root``, and a commit QC signed by a quorum of the
validator set (``Driver.committee``, the one place the validator set comes from).
Only then are the blocks handed to the same execution pipeline as on a
validator (``Driver.execute_blocks``: apply, store, announce to the API's event
stream). A link whose blocks fail a check is dropped and counted
(``gridchain_observer_blocks_refused_total{reason}``); nothing it sent reaches
storage. Heads are polled once a second as well, so a lost ``HEAD`` frame only
delays.

With ``state_sync`` on, the follower first asks its upstream links for a certified
snapshot (``Driver._state_sync``, ``node.net.statesync``: verified before anything is
stored) and follows from its height; without a usable one it starts from genesis.

``ready`` is set once the follower has reached the highest head its links
announce (``/readyz`` then answers 200).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from consensus import codec
from node.net.sync import SYNC_BATCH_BLOCKS, SYNC_TIMEOUT_S, check_committed
from node.net.transport import FRAME_SYNC_REQUEST, SyncRequest, SyncResponse

if TYPE_CHECKING:
    from node.chain.driver import Driver
    from node.net.observer_links import Head, ObserverLinks

log = logging.getLogger("gridchain.follower")

POLL_S = 1.0
"""Ask the upstream links for news at least this often."""

def refusal_reason(problem: str) -> str:
    """The metric label of a ``check_committed`` problem."""
    if "QC" in problem:
        return "bad_qc"
    if "tx_root" in problem:
        return "bad_tx_root"
    if "hash chain" in problem:
        return "broken_chain"
    return "not_our_chain"


class Follower:
    """Follows the committed chain from upstream observer links; see the module docstring."""

    def __init__(self, *, driver: Driver, links: ObserverLinks) -> None:
        self.driver = driver
        self.links = links
        self.metrics = driver.metrics
        self.heads: dict[int, int] = {}
        """Latest committed height each upstream link announced."""
        self.ready = False
        self._wakeup = asyncio.Event()
        self._waiters: dict[int, asyncio.Future[SyncResponse]] = {}
        self._task: asyncio.Task[Any] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="follower")
        self.driver._tasks.append(self._task)  # healthy() watches it like the driver's own tasks

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    # ------------------------------------------------------------------ link events
    def on_head(self, peer: int, head: Head) -> None:
        if head.height > self.heads.get(peer, -1):
            self.heads[peer] = head.height
        self._wakeup.set()

    def on_link_change(self, peer: int, up: bool) -> None:
        if not up:
            self.heads.pop(peer, None)
            waiter = self._waiters.pop(peer, None)
            if waiter is not None and not waiter.done():
                waiter.cancel()
        self._wakeup.set()

    def on_sync_response(self, peer: int, response: SyncResponse) -> None:
        self.heads[peer] = max(self.heads.get(peer, -1), response.head_height)
        waiter = self._waiters.pop(peer, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    # ------------------------------------------------------------------ following
    def height(self) -> int:
        assert self.driver.exec is not None
        return self.driver.exec.height

    async def _run(self) -> None:
        await self.driver._state_sync()
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), POLL_S)
            except TimeoutError:
                self.heads.clear()  # nothing heard for a while: ask again (a HEAD frame may be lost)
            self._wakeup.clear()
            if self.driver.halted is not None:
                continue
            progressed = True
            while progressed:
                progressed = await self._step()

    async def _step(self) -> bool:
        """Fetch from one upstream link that may be ahead; True if blocks were executed."""
        upstream = self.links.upstream()
        if not upstream:
            return False
        mine = self.height()
        ahead = [p for p in upstream if self.heads.get(p, mine + 1) > mine]  # unknown head: ask
        if not ahead:
            self._set_ready(True)
            return False
        peer = max(ahead, key=lambda p: self.heads.get(p, mine + 1))
        response = await self._ask(peer, mine + 1)
        if response is None:
            return False
        return await self.accept(peer, response)

    async def _ask(self, peer: int, from_height: int) -> SyncResponse | None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[SyncResponse] = loop.create_future()
        self._waiters[peer] = waiter
        request = SyncRequest(from_height=from_height, count=SYNC_BATCH_BLOCKS)
        if not self.links.send(peer, FRAME_SYNC_REQUEST, codec.encode(request)):
            self._waiters.pop(peer, None)
            return None
        try:
            return await asyncio.wait_for(waiter, SYNC_TIMEOUT_S)
        except (TimeoutError, asyncio.CancelledError):
            if self._task is not None and self._task.cancelling():
                raise
            self._waiters.pop(peer, None)
            self.heads.pop(peer, None)
            return None

    async def accept(self, peer: int, response: SyncResponse) -> bool:
        """Verify ``response`` from ``peer`` and execute it; drop the peer if it does not verify.
        True if blocks were executed."""
        exec_ = self.driver.exec
        assert exec_ is not None
        # A late answer to an earlier request may start below our height: skip what we have.
        blocks = tuple(b for b in response.blocks if b.height > exec_.height)
        if not blocks:
            if response.head_height <= exec_.height:
                self.heads[peer] = response.head_height
            return False
        problem = check_committed(blocks, response.commit_qc, committee=self.driver.committee,
                                  height=exec_.height, last_block_id=exec_.last_block_id)
        if problem is not None:
            reason = refusal_reason(problem)
            self.metrics.observer_refused.labels(reason=reason).inc()
            log.warning("blocks %d..%d from observer link %d refused: %s", blocks[0].height, blocks[-1].height,
                        peer, problem)
            self.heads.pop(peer, None)
            await self.links.drop(peer, "bad_block")
            return False
        assert response.commit_qc is not None
        self._check_roots(blocks)
        await self.driver.execute_blocks(list(blocks), response.commit_qc)
        if self.height() >= max(self.heads.values(), default=0):
            self._set_ready(True)
        return self.height() >= blocks[-1].height

    def _check_roots(self, blocks: tuple[Any, ...]) -> None:
        """Proposers state the root they executed to; a different one of ours is a loud error."""
        exec_ = self.driver.exec
        assert exec_ is not None
        for block in blocks:
            header = block.header
            ours = exec_.roots.get(header.executed_height)
            if ours is not None and ours != header.executed_state_root:
                self.metrics.state_root_mismatch.inc()
                log.error("state root mismatch at height %d: block %d says %s, ours %s", header.executed_height,
                          block.height, header.executed_state_root.hex()[:16], ours.hex()[:16])

    def _set_ready(self, ready: bool) -> None:
        if ready != self.ready:
            self.ready = ready
            self.driver.syncing = not ready
            log.info("observer %s at height %d", "in sync" if ready else "catching up", self.height())
