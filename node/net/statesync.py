"""State sync, both sides: offer certified state snapshots in chunks to peers, and start an
empty or far-behind node from one instead of replaying every block from genesis.

Theory of operation
-------------------
Every ``contracts.state.CHECKPOINT_EVERY`` blocks the state root commits to the whole
state: it is ``checkpoint_root(height, bytes)`` over the ``encode_state`` bytes the
execution pipeline stores as that height's snapshot (``node.chain.storage``). Those
bytes are what is served, cut into ``CHUNK_BYTES`` chunks.

Serving: ``ListSnapshots`` is answered with the stored checkpoints (``SnapshotInfo``:
height, state root, size, the SHA-256 of every chunk, and the header of the block of
that height); ``GetChunk`` with one chunk read straight from SQLite.

Validators serve on the validator transport and on observer links (``node.ops.observers``
passes the links' ``send``); observers serve their own downstream observers the same way.

Restoring (``config.state_sync``, ``gridchain node --state-sync``): before its first
catch-up, a node asks every linked peer for its snapshots — an observer: its upstream
observer links, before its follower starts (``node.chain.follower``) — and tries the
highest one at least ``MIN_GAP_BLOCKS`` above its executed height, peer by peer:

1. the offer is bounded (a checkpoint height, at most ``MAX_CHUNKS`` chunks, one
   32-byte hash per chunk, the header of that height);
2. the proof: committed blocks above the snapshot, fetched with the ordinary
   ``SyncRequest``, must link by hash to the offered header and end at a block whose
   commit QC verifies against the validator set (``check_proof``); blocks of at least
   f+1 distinct proposers must name an ``executed_height`` at or above the snapshot's
   (``executed_state_root``: the root the proposer executed; one of them is honest);
3. every chunk must have its advertised length and hash; the whole must hash to the
   advertised root (``checkpoint_root``), which binds the chunk list to the root;
4. the decoded state (same genesis, same height) executes the proof blocks, and the
   root of every height a proof block names must equal the one it names. Roots chain
   (each folds in the previous one), so reaching an honest proposer's root from these
   bytes proves they are the state the chain committed to.

Only then is anything stored, in one SQLite transaction: the snapshot, the executed
proof blocks with their commit QC, and the snapshot's header (``statesync_base``, so
the node can offer the snapshot in turn). Any failure refuses the offer (logged,
``gridchain_peer_messages_dropped_total{reason="bad_snapshot"}``) and changes nothing;
the node tries the next offer, and without one it replays blocks from genesis as
before. The ordinary catch-up (``node.net.sync``) then follows the chain. Blocks
below the snapshot are not stored: the API answers ``pruned`` for them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from consensus import codec
from consensus.committee import Committee
from consensus.leader import CreditSnapshot
from consensus.types import Block, BlockHeader, QuorumCert, block_id
from contracts.state import is_checkpoint, restore_checkpoint
from node.chain.execution import ExecutionState
from node.net.snapshots import (
    BASE_KEY,
    CHUNK_BYTES,
    CHUNK_TIMEOUT_S,
    CHUNKS_PER_PEER_PER_S,
    FRAME_STATESYNC_REQUEST,
    FRAME_STATESYNC_RESPONSE,
    MAX_CHUNKS,
    MAX_OFFERS,
    MAX_PROOF_BATCHES,
    MIN_GAP_BLOCKS,
    OFFER_WAIT_S,
    Chunk,
    Claim,
    GetChunk,
    ListSnapshots,
    SnapshotInfo,
    SnapshotList,
    SnapshotRefused,
    StateSyncRequest,
    StateSyncResponse,
    TooRecent,
    certified_claims,
    check_chunk,
    check_offer,
    check_proof,
    check_roots,
    check_snapshot,
    vouched,
)
from node.net.sync import SYNC_BATCH_BLOCKS, SYNC_TIMEOUT_S
from node.net.transport import FRAME_SYNC_REQUEST, SyncRequest, SyncResponse

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from contracts.genesis import Genesis
    from node.chain.execution import Executed, ExecutionHalt
    from node.chain.storage import Storage
    from node.ops.config import NodeConfig
    from node.ops.metrics import NodeMetrics

log = logging.getLogger("gridchain.statesync")


@dataclass
class _Session:
    offers: dict[int, tuple[SnapshotInfo, ...]] = field(default_factory=dict)
    collecting: bool = False
    chunk_waiter: asyncio.Future[bytes] | None = None
    chunk_want: tuple[int, int, int] = (-1, -1, -1)
    chunk_times: dict[int, list[float]] = field(default_factory=dict)
    """When each peer was last served chunks (the serving budget)."""
    served: dict[int, SnapshotInfo] = field(default_factory=dict)
    """Offers this node computed, by height (chunk hashes cost a pass over the snapshot)."""


class StateSync:
    """The state-sync half of ``node.chain.driver.Driver`` (a mixin over the driver's fields)."""

    config: NodeConfig
    genesis: Genesis
    storage: Storage
    metrics: NodeMetrics
    committee: Committee
    transport: Any
    exec: ExecutionState | None
    halted: ExecutionHalt | None
    exec_pool: ThreadPoolExecutor
    state_idle: asyncio.Event
    _exec_lock: asyncio.Lock
    _sync_waiter: asyncio.Future[SyncResponse] | None
    _stopped: bool
    _ss_session: _Session | None = None

    if TYPE_CHECKING:
        def _apply_all(self, blocks: list[Block], snapshot_every: int) -> tuple[list[Executed], Any]: ...
        def _announce(self, item: Executed) -> None: ...
        def _halt(self, height: int, what: str, exc: Exception) -> None: ...

    def _ss(self) -> _Session:
        if self._ss_session is None:
            self._ss_session = _Session()
        return self._ss_session

    # ------------------------------------------------------------------ serving peers
    def on_statesync_request(self, peer: int, request: StateSyncRequest,
                             send: Callable[[int, int, bytes], bool] | None = None) -> Any:
        """Answer ``peer`` through ``send`` (default: the transport's; observer links pass theirs)."""
        send = send or self.transport.send
        if isinstance(request, ListSnapshots):
            return self._offer(peer, send)
        data, session, now = b"", self._ss(), time.monotonic()
        served = [t for t in session.chunk_times.get(peer, []) if t > now - 1.0]
        if len(served) >= CHUNKS_PER_PEER_PER_S:  # a peer that asks faster than it reads: not served
            self.metrics.dropped.labels(reason="bad_snapshot").inc()
            return None
        session.chunk_times[peer] = [*served, now]
        if 0 <= request.index < MAX_CHUNKS and is_checkpoint(request.height):
            data = self.storage.snapshot_slice(request.height, request.index * CHUNK_BYTES, CHUNK_BYTES) or b""
        chunk = Chunk(height=request.height, index=request.index, data=data)
        send(peer, FRAME_STATESYNC_RESPONSE, codec.encode(chunk))
        return None

    def pruned_height(self) -> int:
        """Blocks at or below this height were never stored here (the node started from a snapshot)."""
        base = self.storage.load_meta(BASE_KEY)
        return 0 if base is None else codec.decode(base, BlockHeader).height

    def _header_at(self, height: int) -> BlockHeader | None:
        stored = self.storage.block(height)
        if stored is not None:
            return codec.decode(stored.block_bytes, Block).header
        base = self.storage.load_meta(BASE_KEY)
        header = None if base is None else codec.decode(base, BlockHeader)
        return header if header is not None and header.height == height else None

    def _hash_chunks(self, height: int, size: int) -> tuple[bytes, ...] | None:
        out = []
        for offset in range(0, size, CHUNK_BYTES):
            data = self.storage.snapshot_slice(height, offset, CHUNK_BYTES)
            if data is None:
                return None
            out.append(hashlib.sha256(data).digest())
        return tuple(out)

    async def _offer(self, peer: int, send: Callable[[int, int, bytes], bool]) -> None:
        session, infos = self._ss(), []
        for height, root, size in self.storage.checkpoints()[:MAX_OFFERS]:
            info = session.served.get(height)
            if info is None or info.state_root != root:
                header = self._header_at(height)
                if header is None or not 0 < size <= MAX_CHUNKS * CHUNK_BYTES:
                    continue
                hashes = await asyncio.to_thread(self._hash_chunks, height, size)
                if hashes is None:
                    continue
                info = SnapshotInfo(height=height, state_root=root, size=size, chunk_hashes=hashes, header=header)
                session.served = {h: i for h, i in session.served.items() if h >= height - 4 * MIN_GAP_BLOCKS}
                session.served[height] = info
            infos.append(info)
        send(peer, FRAME_STATESYNC_RESPONSE, codec.encode(SnapshotList(snapshots=tuple(infos))))

    def on_statesync_response(self, peer: int, response: StateSyncResponse) -> None:
        session = self._ss()
        if isinstance(response, SnapshotList):
            if session.collecting:
                session.offers[peer] = response.snapshots
            return
        waiter = session.chunk_waiter
        if waiter is not None and not waiter.done() and session.chunk_want == (peer, response.height, response.index):
            waiter.set_result(response.data)

    # ------------------------------------------------------------------ restoring
    async def _state_sync(self) -> bool:
        """Start from the best verified peer snapshot; False when there is none to use."""
        if not self.config.state_sync or self.exec is None or self.halted is not None:
            return False
        loop, session = asyncio.get_running_loop(), self._ss()
        deadline = loop.time() + 3.0
        while len(self._statesync_peers()) < self._statesync_want() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        peers = self._statesync_peers()
        session.offers, session.collecting = {}, True
        for peer in peers:
            self.transport.send(peer, FRAME_STATESYNC_REQUEST, codec.encode(ListSnapshots()))
        deadline = loop.time() + OFFER_WAIT_S
        while len(session.offers) < len(peers) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        session.collecting = False
        floor = self.exec.height + MIN_GAP_BLOCKS
        candidates = sorted(((info.height, peer, info) for peer, infos in session.offers.items()
                             for info in infos[:MAX_OFFERS] if info.height >= floor),
                            key=lambda c: (-c[0], c[1]))
        refused: set[int] = set()
        for height, peer, info in candidates:
            if peer in refused or self._stopped:
                continue
            started = time.monotonic()
            try:
                blocks = await self._restore(peer, info)
            except SnapshotRefused as exc:
                refused.add(peer)
                self.metrics.dropped.labels(reason="bad_snapshot").inc()
                log.warning("state sync: snapshot %d from peer %d refused: %s", height, peer, exc)
                continue
            except (TimeoutError, TooRecent) as exc:
                log.info("state sync: snapshot %d from peer %d not used: %s", height, peer, exc or "timeout")
                continue
            log.info("state sync: restored height %d from peer %d (%d bytes, %d chunks) and executed %d "
                     "blocks above it in %.1f s", height, peer, info.size, len(info.chunk_hashes), blocks,
                     time.monotonic() - started)
            return True
        if self.exec.height == 0:
            log.info("state sync: no usable snapshot at or above height %d; replaying blocks from genesis", floor)
        return False

    def _statesync_peers(self) -> list[int]:
        """Whom to ask: on an observer its upstream observer links, else the linked validators."""
        if self.config.node_role == "observer":
            return list(self.transport.upstream())
        return list(self.transport.connected())

    def _statesync_want(self) -> int:
        if self.config.node_role == "observer":
            return len(self.config.observer_peers)
        return self.committee.quorum - 1

    async def _ask_sync(self, peer: int, from_height: int) -> SyncResponse:
        self._sync_waiter = asyncio.get_running_loop().create_future()
        try:
            self.transport.send(peer, FRAME_SYNC_REQUEST,
                                codec.encode(SyncRequest(from_height=from_height, count=SYNC_BATCH_BLOCKS)))
            return await asyncio.wait_for(self._sync_waiter, SYNC_TIMEOUT_S)
        finally:
            self._sync_waiter = None

    async def _fetch_proof(self, peer: int, info: SnapshotInfo) -> tuple[list[Block], QuorumCert]:
        blocks: list[Block] = []
        parent = info.header
        for _ in range(MAX_PROOF_BATCHES):
            response = await self._ask_sync(peer, parent.height + 1)
            if not response.blocks and response.head_height <= parent.height:
                raise TooRecent(f"the peer has no committed blocks above height {parent.height}")
            check_proof(parent, response.blocks, response.commit_qc, self.committee)
            assert response.commit_qc is not None
            blocks.extend(response.blocks)
            if vouched(certified_claims(info.height, blocks), self.committee.f):
                return blocks, response.commit_qc
            parent = blocks[-1].header
        raise SnapshotRefused(f"fewer than f+1 proposers of committed blocks above it name an executed height "
                              f"of {info.height} or later")

    async def _fetch_chunks(self, peer: int, info: SnapshotInfo) -> bytes:
        loop, session = asyncio.get_running_loop(), self._ss()
        data = bytearray()
        for index in range(len(info.chunk_hashes)):
            session.chunk_waiter = loop.create_future()
            session.chunk_want = (peer, info.height, index)
            try:
                self.transport.send(peer, FRAME_STATESYNC_REQUEST,
                                    codec.encode(GetChunk(height=info.height, index=index)))
                chunk = await asyncio.wait_for(session.chunk_waiter, CHUNK_TIMEOUT_S)
            finally:
                session.chunk_waiter = None
            check_chunk(info, index, chunk)
            data += chunk
        return bytes(data)

    async def _restore(self, peer: int, info: SnapshotInfo) -> int:
        """Verify and install ``info`` from ``peer``; the number of proof blocks executed."""
        check_offer(info)
        blocks, commit_qc = await self._fetch_proof(peer, info)
        claims = certified_claims(info.height, blocks)
        check_roots([c for c in claims if c[1] == info.height], {info.height: info.state_root})
        data = await self._fetch_chunks(peer, info)
        await asyncio.to_thread(check_snapshot, info, data)
        async with self._exec_lock:
            return await self._install(info, data, blocks, commit_qc, claims)

    async def _install(self, info: SnapshotInfo, data: bytes, blocks: list[Block], commit_qc: QuorumCert,
                       claims: list[Claim]) -> int:
        loop = asyncio.get_running_loop()
        try:
            state = await loop.run_in_executor(self.exec_pool, restore_checkpoint, info.height, data)
        except codec.CodecError as exc:
            raise SnapshotRefused(f"the snapshot does not decode: {exc}") from exc
        if state.genesis != self.genesis or state.meta.height != info.height:
            raise SnapshotRefused("the snapshot is of another chain or height")
        root, hid = state.root, block_id(info.header)
        previous = self.exec
        self.exec = ExecutionState(state=state, height=info.height, root=root, last_block=Block(header=info.header),
                                   last_block_id=hid, history=[CreditSnapshot(round=info.header.round, block_id=hid,
                                                                              credit=state.credit)])
        self.state_idle.clear()
        try:
            done, snapshot = await loop.run_in_executor(self.exec_pool, self._apply_all, blocks,
                                                        self.config.snapshot_every_blocks)
            check_roots(claims, {info.height: root} | {d.block.height: d.state_root for d in done})
        except Exception as exc:
            self.exec = previous
            if isinstance(exc, SnapshotRefused):
                raise
            raise SnapshotRefused(f"executing the blocks above it failed: {exc!r}") from exc
        finally:
            self.state_idle.set()
        self.exec.remember(info.height, root)
        keep = snapshot if snapshot is not None and is_checkpoint(snapshot[0]) else (info.height, data, root)
        try:
            await self.storage.store_committed(
                [d.record for d in done], commit_qc=commit_qc, snapshot=keep,
                extra_meta=[("credit_history", codec.encode(tuple(self.exec.history))),
                            (BASE_KEY, codec.encode(info.header))])
        except Exception as exc:
            self._halt(blocks[0].height, "storing", exc)  # memory is ahead of disk: stop, loudly
            return 0
        for item in done:
            self._announce(item)
        return len(done)
