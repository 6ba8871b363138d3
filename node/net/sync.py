"""The catch-up protocol, both sides: answer peers' block and sync requests from
storage, and fetch committed blocks by height when this node is far behind.

Theory of operation
-------------------
A node whose executed height is far below what peers' sync info shows (or that
starts with a wiped data directory) stops feeding its consensus core, fetches
committed blocks by height (``SyncRequest``) with the QC that commits the last
of them, checks the hash chain and that QC, executes and stores them (asking for
the next batch before executing this one, so transfer and execution overlap), and
restarts its core from the new committed root (``RestorePoint``). A wiped node
starts with no safety data, so its core's double-sign guard keeps it from
signing until it is past every round it might have signed in before.

The serving side answers ``SyncRequest`` (committed blocks by height) and the
consensus core's ``BlockRequest`` (blocks by id, walking parents) from the
recent-block cache and storage; it keeps answering while execution is halted.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from consensus import codec
from consensus.committee import Committee
from consensus.config import ConsensusParams
from consensus.types import Block, BlockRequest, BlockResponse, QuorumCert, block_id, payload_root
from consensus.validation import InvalidMessage, check_qc
from node.net.transport import (
    FRAME_CONSENSUS,
    FRAME_SYNC_REQUEST,
    FRAME_SYNC_RESPONSE,
    SyncRequest,
    SyncResponse,
)

if TYPE_CHECKING:
    from node.chain.execution import ExecutionHalt, ExecutionState
    from node.chain.storage import Storage
    from node.ops.metrics import NodeMetrics

log = logging.getLogger("gridchain.driver")

SYNC_LAG_BLOCKS = 32
"""Start a committed-block catch-up when peers are this many blocks ahead."""
SYNC_BATCH_BLOCKS = 256
"""Most blocks per SyncRequest."""
SYNC_TIMEOUT_S = 10.0
SYNC_RESPONSE_BYTES = 8 * 1024 * 1024
"""Soft size limit of one sync response / block response (peer frames are capped at 32 MiB)."""


def check_committed(blocks: tuple[Block, ...], qc: QuorumCert | None, *, committee: Committee,
                    height: int, last_block_id: bytes) -> str | None:
    """Why ``blocks`` with ``qc`` are not committed blocks extending the chain whose block at
    ``height`` is ``last_block_id``, or None: the hash chain, each payload against its
    ``tx_root``, and a QC of ``committee`` that commits the last block (a QC for its child in
    the next round). A catching-up validator and an observer check the same."""
    if not blocks or qc is None:
        return "empty"
    if blocks[0].height != height + 1 or blocks[0].parent_id != last_block_id:
        return "does not extend our chain"
    for parent, child in itertools.pairwise(blocks):
        if child.height != parent.height + 1 or child.parent_id != block_id(parent.header):
            return "broken hash chain"
    for block in blocks:
        if block.header.tx_root != payload_root(block.payload):
            return f"payload of height {block.height} does not match its tx_root"
    last = blocks[-1]
    data = qc.vote_data
    if data.parent_id != block_id(last.header) or data.parent_round != last.round or data.round != last.round + 1:
        return "commit QC does not commit the last block"
    try:
        check_qc(qc, committee=committee)
    except InvalidMessage as exc:
        return f"bad commit QC: {exc}"
    return None


class CatchUp:
    """The catch-up half of ``node.chain.driver.Driver`` (a mixin over the driver's fields)."""

    storage: Storage
    metrics: NodeMetrics
    committee: Committee
    params: ConsensusParams
    transport: Any
    core: Any
    exec: ExecutionState | None
    halted: ExecutionHalt | None
    recent_blocks: OrderedDict[bytes, Block]
    peer_heights: dict[int, int]
    _sync_waiter: asyncio.Future[SyncResponse] | None
    _need_sync: bool
    _stopped: bool

    if TYPE_CHECKING:
        async def execute_blocks(self, blocks: list[Block], proof: QuorumCert, loop: Any = None) -> None: ...

    # ------------------------------------------------------------------ serving peers
    def _answer_block_request(self, peer: int, request: BlockRequest) -> None:
        blocks: list[Block] = []
        wanted: bytes | None = request.block_id
        limit = min(request.count, self.params.max_fetch_blocks)
        total = 0
        while wanted is not None and len(blocks) < limit and total < SYNC_RESPONSE_BYTES:
            block = self.recent_blocks.get(wanted)
            if block is None:
                height = self.storage.height_of(wanted)
                stored = None if height is None else self.storage.block(height)
                if stored is None:
                    break
                block = codec.decode(stored.block_bytes, Block)
            blocks.append(block)
            total += sum(len(tx) for tx in block.payload) + 1024
            wanted = block.parent_id if block.height > 0 else None
        if blocks:
            self.transport.send(peer, FRAME_CONSENSUS, codec.encode(BlockResponse(blocks=tuple(blocks))))


    def on_sync_request(self, peer: int, request: SyncRequest) -> None:
        self.transport.send(peer, FRAME_SYNC_RESPONSE, codec.encode(self.sync_response(request)))

    def sync_response(self, request: SyncRequest) -> SyncResponse:
        """Committed blocks from ``from_height``: at most ``count`` and about
        ``SYNC_RESPONSE_BYTES``, ending at a block whose commit QC is stored."""
        head = self.storage.latest_height()
        first = max(1, request.from_height)
        last = min(head, first + min(max(request.count, 1), SYNC_BATCH_BLOCKS) - 1)
        total = 0
        for height, size in self.storage.block_sizes(first, last):
            total += size
            if total > SYNC_RESPONSE_BYTES:
                last = max(first, height - 1)
                break
        found = self.storage.commit_qc_at_or_below(last, first) if last >= first else None
        if first <= head and self.storage.block(first) is None:
            found = None  # below the snapshot this node started from: never stored here
        elif found is None and first <= head:
            found = self.storage.commit_qc_at_or_above(first)  # a long commit: send it whole
        if found is None:
            return SyncResponse(blocks=(), commit_qc=None, head_height=head)
        end, qc = found
        blocks = tuple(codec.decode(s.block_bytes, Block) for s in self.storage.blocks_range(first, end))
        return SyncResponse(blocks=blocks, commit_qc=qc, head_height=head)

    def on_sync_response(self, peer: int, response: SyncResponse) -> None:
        if response.head_height > self.peer_heights.get(peer, 0):
            self.peer_heights[peer] = response.head_height
        if self._sync_waiter is not None and not self._sync_waiter.done():
            self._sync_waiter.set_result(response)

    def _ask(self, peer: int, from_height: int) -> asyncio.Future[SyncResponse]:
        """Send a ``SyncRequest``; the future gets the answer (one request in flight at a time)."""
        self._sync_waiter = asyncio.get_running_loop().create_future()
        request = SyncRequest(from_height=from_height, count=SYNC_BATCH_BLOCKS)
        self.transport.send(peer, FRAME_SYNC_REQUEST, codec.encode(request))
        return self._sync_waiter

    def _check_sync(self, response: SyncResponse) -> str | None:
        """Why ``response`` cannot extend our executed chain, or None."""
        assert self.exec is not None
        return check_committed(response.blocks, response.commit_qc, committee=self.committee,
                               height=self.exec.height, last_block_id=self.exec.last_block_id)

    def _far_behind(self) -> bool:
        if self._need_sync:
            self._need_sync = False
            return True
        if not self.peer_heights or self.exec is None:
            return False
        ahead = sorted(self.peer_heights.values(), reverse=True)
        # f+1 peers claim it, so at least one honest node has committed that far.
        if len(ahead) < self.committee.f + 1:
            return False
        return ahead[self.committee.f] > max(self.exec.height, self.core.committed_height) + SYNC_LAG_BLOCKS


    async def _catch_up(self) -> None:
        """Fetch and execute committed blocks from peers until no quorum of them is ahead."""
        assert self.exec is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        # Give the links a moment so a restarted node learns where the others are.
        while len(self.transport.connected()) < self.committee.quorum - 1 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        try:
            await self._catch_up_loop(loop)
        finally:
            self._sync_waiter = None  # a prefetched answer still on its way is not waited for

    async def _catch_up_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.exec is not None
        idle_rounds = 0
        prefetch: tuple[int, asyncio.Future[SyncResponse]] | None = None
        while not self._stopped and self.halted is None and idle_rounds < 2:
            peers = self.transport.connected()
            if not peers:
                return
            progressed = False
            if prefetch is not None and prefetch[0] in peers:  # the batch asked for while executing
                peers = [prefetch[0], *(p for p in peers if p != prefetch[0])]
            for peer in peers:
                if prefetch is not None and prefetch[0] == peer:
                    waiter = prefetch[1]
                else:
                    waiter = self._ask(peer, self.exec.height + 1)
                prefetch = None
                try:
                    response = await asyncio.wait_for(waiter, SYNC_TIMEOUT_S)
                except TimeoutError:
                    continue
                finally:
                    self._sync_waiter = None
                problem = self._check_sync(response)
                if problem is None:
                    # Pipelining: the next batch travels and is served while this one executes.
                    following = response.blocks[-1].height + 1
                    if response.head_height >= following:
                        prefetch = (peer, self._ask(peer, following))
                    await self.execute_blocks(list(response.blocks), response.commit_qc, loop)  # type: ignore[arg-type]
                    log.info("caught up to height %d from peer %d", self.exec.height, peer)
                    progressed = True
                    break
                if problem != "empty":
                    self.metrics.dropped.labels(reason="bad_sync").inc()
                    log.warning("sync response from peer %d rejected: %s", peer, problem)
            idle_rounds = 0 if progressed else idle_rounds + 1
