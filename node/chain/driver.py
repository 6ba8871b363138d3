"""The driver: one asyncio task that feeds the consensus core and carries out its actions.

Theory of operation
-------------------
Everything that happens to the validator becomes a ``consensus.events`` event in
one bounded queue: validated peer messages (from ``node.net.transport``), timer
ticks, payload answers, fetched blocks. ``run()`` takes one event at a time,
calls ``Core.handle`` and executes the returned actions strictly in order:

* ``PersistSafety`` is awaited until the safety data is fsynced (``node.chain.storage``)
  before any later action — so no vote or timeout ever leaves the process unless
  the data that forbids a conflicting one is on disk;
* ``Send``/``Broadcast`` encode the message once and queue it on the peer links;
* ``RequestPayload`` is answered at once with a mempool batch (``PayloadReady``);
* ``ScheduleTick`` (re)arms the one timer; ``FetchBlocks`` asks a peer;
* ``Commit`` hands the blocks to the execution pipeline and returns immediately.

Execution (``_execute_loop``) is a second task: committed blocks are applied in
height order with ``contracts.apply_block`` in a worker thread (a block of
thousands of transactions takes longer than the event loop may be blocked),
then stored with their receipts, tx index and (every K blocks) a state snapshot
in one SQLite transaction, and only then announced (mempool cleanup, metrics,
API listeners). Signatures checked at admission are passed as ``verified`` so
every transaction signature is verified once per node.

Execution fails loudly: if a batch of committed blocks cannot be applied or
stored (an exception out of ``apply_block`` or the database), the node *halts
execution*: it logs an ERROR with the height and the exception, sets
``gridchain_execution_halted`` to 1, stops feeding its consensus core (so it no
longer votes, proposes or times out) and ``/readyz`` answers 503 with reason
``execution_halted``. It never retries the block by itself: the same input gives
the same exception, and a node that goes on voting without executing would
vouch for state roots it does not have. Peers' block and sync requests are
still answered from storage. An operator restarts it after a fix.

Back-pressure: consensus may commit faster than execution applies. Before it
takes the next event, the consensus loop waits while the committed height is
``max_execution_lag_blocks`` (node config) or more above the executed height,
so the commit queue stays bounded by that lag (plus the blocks of one commit)
instead of growing without limit; meanwhile this validator does not vote or
propose, and the others carry on without it.

Catch-up: a node whose executed height is far below what peers' sync info
shows (or that starts with a wiped data directory) stops feeding the core,
fetches committed blocks by height (``SyncRequest``) with the QC that commits the
last of them, checks the hash chain and that QC, executes and stores them, and
restarts its core from the new committed root (``RestorePoint``). A wiped node
starts with no safety data, so its core's double-sign guard keeps it from signing
until it is past every round it might have signed in before.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec

from consensus import actions as act
from consensus import codec
from consensus import core as core_mod
from consensus import events as ev
from consensus.committee import Committee
from consensus.crypto import Signer
from consensus.leader import CreditSnapshot
from consensus.types import (
    Block,
    BlockRequest,
    BlockResponse,
    Message,
    ProposalMsg,
    QuorumCert,
    SafetyData,
    TimeoutCert,
    block_id,
    payload_root,
)
from consensus.validation import InvalidMessage, check_qc
from contracts import records
from contracts.executor import BlockInput, Receipt, apply_block
from contracts.genesis import Genesis, initial_state
from contracts.state import State, decode_state, encode_state
from node.chain.mempool import Mempool
from node.chain.storage import BlockRecord, Storage
from node.net.transport import (
    FRAME_CONSENSUS,
    FRAME_SYNC_REQUEST,
    FRAME_SYNC_RESPONSE,
    SyncRequest,
    SyncResponse,
)
from node.ops.config import NodeConfig
from node.ops.metrics import NodeMetrics

log = logging.getLogger("gridchain.driver")

EVENT_QUEUE_SIZE = 20_000
"""Bound of the event queue; beyond it peer messages are dropped (consensus recovers)."""
RECENT_BLOCKS = 1_024
"""Uncommitted blocks kept to answer peers' BlockRequests."""
EXECUTED_ROOTS = 4_096
"""State roots of recent heights kept to check proposals' executed_state_root."""
SYNC_LAG_BLOCKS = 32
"""Start a committed-block catch-up when peers are this many blocks ahead."""
SYNC_BATCH_BLOCKS = 128
"""Most blocks per SyncRequest."""
SYNC_TIMEOUT_S = 10.0
SYNC_RESPONSE_BYTES = 8 * 1024 * 1024
"""Soft size limit of one sync response / block response (peer frames are capped at 32 MiB)."""
DROPPED_KEPT = 100_000
"""Accepted-but-never-committable txs remembered for tx status queries."""
LEADER_SHARE_ROUNDS = 200
"""Window of rounds over which ``gridchain_validator_leader_share`` is computed."""
CREDIT_HISTORY = 64
"""Credit snapshots of the latest committed blocks kept for a restart's leader election."""


class ExecutionHalt(msgspec.Struct, frozen=True):
    """Why execution stopped for good (until an operator restarts the node)."""

    height: int
    """Height of the block that could not be applied or stored."""
    error: str
    """The exception, as ``Type: message``."""


class Tip(msgspec.Struct, frozen=True):
    """The certified tip stored with the safety data (see ``node.chain.storage``)."""

    high_qc: QuorumCert
    high_tc: TimeoutCert | None = None


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


def now_ms() -> int:
    """The node's wall clock in ms: the one clock of the runtime."""
    return time.time_ns() // 1_000_000


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


class Driver:
    """Feeds one ``consensus.core.Core`` and executes committed blocks; see the module docstring."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        genesis: Genesis,
        signer: Signer,
        storage: Storage,
        mempool: Mempool,
        metrics: NodeMetrics,
        verified: Any,
        admitted_at: dict[bytes, float],
    ) -> None:
        self.config = config
        self.genesis = genesis
        self.signer = signer
        self.storage = storage
        self.mempool = mempool
        self.metrics = metrics
        self.verified = verified
        """Hashes of transactions whose signatures this node checked (``node.chain.backend``)."""
        self.admitted_at = admitted_at
        """tx hash -> monotonic admission time, for the commit latency histogram."""
        self.me = config.node_id
        self.params = genesis.consensus
        self.committee = Committee(genesis.chain_id, 0, [v.public_key for v in genesis.validators])
        self.genesis_block = core_mod.make_genesis_block(genesis.chain_id, 0, genesis.genesis_time_ms)
        self.transport: Any = None
        self.events: asyncio.Queue[ev.Event] = asyncio.Queue(maxsize=EVENT_QUEUE_SIZE)
        self.commits: asyncio.Queue[tuple[tuple[Block, ...], QuorumCert]] = asyncio.Queue()
        """Committed blocks waiting for execution; bounded by the back-pressure in ``_run``
        (at most ``max_execution_lag_blocks`` plus the blocks of one commit)."""
        self.halted: ExecutionHalt | None = None
        """Set once execution failed; the node then stops voting (see the module docstring)."""
        self._exec_progress = asyncio.Event()
        """Set whenever execution advances or halts: wakes a consensus loop held by back-pressure."""
        self.listeners: list[Callable[[Any], None]] = []
        self.exec_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="execute")
        self.recent_blocks: OrderedDict[bytes, Block] = OrderedDict()
        self.core: Any = None
        self.exec: ExecutionState | None = None
        self.syncing = True
        self.peer_heights: dict[int, int] = {}
        """Highest committed height each peer's sync info showed."""
        self._timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._waiting_round: int | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._hash_cache: dict[bytes, frozenset[bytes]] = {}
        self._exec_lock = asyncio.Lock()
        self.state_idle = asyncio.Event()
        """Set while no block is being applied: the contracts state sits at a block boundary."""
        self.state_idle.set()
        self._stats_seen: dict[tuple[int, str], int] = {}
        self._need_sync = False
        self.dropped: OrderedDict[bytes, tuple[str, str]] = OrderedDict()
        """Accepted txs that can never commit (code, message), reported as failed by the API."""
        self._sync_waiter: asyncio.Future[SyncResponse] | None = None
        self._last_commit_t: float | None = None
        self._last_leader: int | None = None
        self._stopped = False
        self._applying = 0
        """Height of the block being applied (names the block when execution fails)."""
        self.round = 0
        self.leader = 0
        self.recent_leaders: deque[int] = deque(maxlen=LEADER_SHARE_ROUNDS)

    # ------------------------------------------------------------------ startup
    def load(self) -> None:
        """Rebuild the executed state from the latest snapshot plus the stored blocks after it."""
        snapshot = self.storage.latest_snapshot()
        if snapshot is None:
            state = initial_state(self.genesis)
            height, root = 0, state.root
        else:
            height, data, root = snapshot
            state = decode_state(data)
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

    def _make_core(self, safety: SafetyData | None) -> Any:
        assert self.exec is not None
        restore = None
        pending = tuple(self.storage.load_pending_blocks(self.exec.height))
        tip_bytes = self.storage.load_meta("tip")
        tip = codec.decode(tip_bytes, Tip) if tip_bytes is not None else None
        if self.exec.height > 0 or pending or tip is not None:
            commit_qc = self.storage.load_commit_qc() if self.exec.height > 0 else core_mod.genesis_qc(
                self.genesis_block)
            assert commit_qc is not None, "a stored block without its commit QC"
            restore = core_mod.RestorePoint(
                block=self.exec.last_block, commit_qc=commit_qc, history=tuple(self.exec.history),
                pending=pending,
                high_qc=tip.high_qc if tip is not None and tip.high_qc.round > commit_qc.round else None,
                high_tc=tip.high_tc if tip is not None else None,
            )
        return core_mod.Core(
            committee=self.committee, params=self.params, me=self.me, signer=self.signer,
            genesis_block=self.genesis_block, safety=safety, restore=restore, block_check=self.block_check,
        )

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._run_with_sync(), name="driver"))
        self._tasks.append(loop.create_task(self._execute_loop(), name="execute"))
        for task in self._tasks:
            task.add_done_callback(self._task_done)

    @staticmethod
    def _task_done(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.critical("%s task died: %r (the node reports unhealthy)", task.get_name(), task.exception(),
                         exc_info=task.exception())

    async def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        for task in list(self._background):  # pending-block writes still queued for the database
            with contextlib.suppress(BaseException):
                await task
        self.exec_pool.shutdown(wait=True)

    # ------------------------------------------------------------------ inputs
    def on_consensus(self, peer: int, message: Message) -> None:
        """A validated consensus message from ``peer`` (called by the transport)."""
        if isinstance(message, BlockRequest):
            self._answer_block_request(peer, message)
            return
        sync = getattr(message, "sync", None)
        if sync is not None:
            height = sync.high_commit_qc.vote_data.height
            if height > self.peer_heights.get(peer, 0):
                self.peer_heights[peer] = height
        if isinstance(message, BlockResponse):
            self._put(ev.BlocksFetched(blocks=message.blocks))
            return
        if self.syncing or self.halted is not None:
            return  # the core is not running: the sync loop catches up first, or execution halted
        if isinstance(message, ProposalMsg):
            self._remember_block(message.block)
        self._put(ev.MessageReceived(sender=peer, message=message))

    def _put(self, event: ev.Event) -> None:
        try:
            self.events.put_nowait(event)
        except asyncio.QueueFull:
            self.metrics.dropped.labels(reason="event_queue_full").inc()

    def _remember_block(self, block: Block) -> None:
        bid = block_id(block.header)
        if bid in self.recent_blocks:
            return
        self.recent_blocks[bid] = block
        if self.exec is not None and block.height > self.exec.height:
            task = asyncio.get_running_loop().create_task(self.storage.save_pending_block(block, bid))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        while len(self.recent_blocks) > RECENT_BLOCKS:
            self.recent_blocks.popitem(last=False)

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

    def block_check(self, block: Block) -> str | None:
        """Runtime veto on voting: the author's executed state root must match ours."""
        assert self.exec is not None
        header = block.header
        ours = self.exec.roots.get(header.executed_height)
        if ours is not None and ours != header.executed_state_root:
            self.metrics.state_root_mismatch.inc()
            log.error("state root mismatch at height %d: proposal of round %d by %d says %s, ours %s",
                      header.executed_height, header.round, header.author,
                      header.executed_state_root.hex()[:16], ours.hex()[:16])
            return "executed_state_root differs from ours"
        return None

    # ------------------------------------------------------------------ consensus loop
    async def _run_with_sync(self) -> None:
        while not self._stopped:
            await self._catch_up()
            if self.halted is not None:
                await self._hold_for_execution()  # never returns: the node stays halted
            async with self._exec_lock:  # the restore point must not move while the core is built
                safety = self.storage.load_safety()
                self.core = self._make_core(safety)
            self.syncing = False
            log.info("consensus running from height %d (safety data %s)",
                     self.exec.height if self.exec else 0, "loaded" if safety else "absent: guard armed")
            self._put(ev.Tick(now_ms=now_ms()))
            await self._run()

    async def _run(self) -> None:
        """Feed the core until a catch-up is needed."""
        while True:
            event = await self.events.get()
            if self.halted is not None or self.execution_lag() >= self.config.max_execution_lag_blocks:
                await self._hold_for_execution()
            try:
                actions = self.core.handle(event)
            except Exception:  # a core bug must not take the validator down with it
                log.exception("consensus core failed on %s; event skipped", type(event).__name__)
                continue
            await self._carry_out(actions)
            if self._far_behind():
                log.warning("peers are ahead (%d vs %d): catching up", max(self.peer_heights.values(), default=0),
                            self.exec.height if self.exec else 0)
                self.syncing = True
                if self._timer is not None:
                    self._timer.cancel()
                while not self.events.empty():
                    self.events.get_nowait()
                return

    def execution_lag(self) -> int:
        """Committed blocks not executed yet."""
        if self.core is None or self.exec is None:
            return 0
        return max(0, self.core.committed_height - self.exec.height)

    async def _hold_for_execution(self) -> None:
        """Back-pressure: feed the core nothing (no votes, no proposals) until execution is
        less than ``max_execution_lag_blocks`` behind consensus; forever once halted."""
        limit = self.config.max_execution_lag_blocks
        if self.halted is None:
            log.warning("execution is %d blocks behind consensus (limit %d): consensus paused",
                        self.execution_lag(), limit)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # A commit gap (execution waits for a catch-up that only the consensus loop can
        # start) releases the hold, so the two never wait for each other.
        while self.halted is not None or (self.execution_lag() >= limit and not self._need_sync):
            self._exec_progress.clear()
            await self._exec_progress.wait()
        log.info("execution caught up (%d blocks behind): consensus resumed", self.execution_lag())
        self._put(ev.Tick(now_ms=now_ms()))

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

    async def _carry_out(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, act.PersistSafety):
                tip = codec.encode(Tip(high_qc=self.core.high_qc, high_tc=self.core.high_tc))
                await self.storage.save_safety(action.data, tip=tip)
                self.metrics.last_voted_round.set(action.data.last_voted_round)
            elif isinstance(action, act.Send):
                if action.to == self.me:
                    self._put(ev.MessageReceived(sender=self.me, message=action.message))
                else:
                    self.transport.send(action.to, FRAME_CONSENSUS, codec.encode(action.message))
            elif isinstance(action, act.Broadcast):
                message = action.message
                if isinstance(message, ProposalMsg):
                    self._remember_block(message.block)
                self.transport.broadcast(FRAME_CONSENSUS, codec.encode(message))
            elif isinstance(action, act.Commit):
                self._drop_committed_from_mempool(action.blocks)
                self.commits.put_nowait((action.blocks, action.proof))
            elif isinstance(action, act.RequestPayload):
                self._request_payload(action.round)
            elif isinstance(action, act.ScheduleTick):
                self._schedule(action.at_ms)
            elif isinstance(action, act.FetchBlocks):
                request = BlockRequest(block_id=action.block_id, count=action.count)
                self.transport.send(action.peer, FRAME_CONSENSUS, codec.encode(request))
            elif isinstance(action, act.RoundEntered):
                self._on_round(action)
            elif isinstance(action, act.EquivocationDetected):
                log.warning("equivocation by validator %d in round %d (%s)", action.author, action.round,
                            action.kind)

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

    def forget(self, tx_hash: bytes, code: str, message: str) -> None:
        """Remember that an accepted tx can never commit (bounded)."""
        self.dropped[tx_hash] = (code, message)
        while len(self.dropped) > DROPPED_KEPT:
            self.dropped.popitem(last=False)

    def _report_stale(self, hashes: list[bytes]) -> None:
        for tx_hash in hashes:
            if self.admitted_at.pop(tx_hash, None) is not None:
                self.forget(tx_hash, "stale_nonce", "a later nonce of the sender committed first")

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

    def _schedule(self, at_ms: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay_s = max(0.0, (at_ms - now_ms()) / 1000)
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._fire_timer)

    def _fire_timer(self) -> None:
        self._timer = None
        if not self.syncing:
            self._put(ev.Tick(now_ms=now_ms()))

    def sync_stats(self) -> None:
        """Move the core's monotonic counters into the Prometheus counters."""
        if self.core is None:
            return
        stats = self.core.stats
        for name, counter in (("timeouts", self.metrics.timeouts), ("tcs", self.metrics.tcs),
                              ("leader_changes", self.metrics.leader_changes)):
            value = getattr(stats, name)
            seen = self._stats_seen.get((id(self.core), name), 0)
            if value > seen:
                counter.inc(value - seen)
            self._stats_seen = {k: v for k, v in self._stats_seen.items() if k[0] == id(self.core)}
            self._stats_seen[(id(self.core), name)] = value

    def _on_round(self, action: act.RoundEntered) -> None:
        self.sync_stats()
        self._last_leader = action.leader
        self.round, self.leader = action.round, action.leader
        self.recent_leaders.append(action.leader)
        self.metrics.round.set(action.round)
        self.metrics.is_leader.set(1 if action.leader == self.me else 0)
        log.debug("round %d leader %d%s", action.round, action.leader, " (after timeout)" if action.via_timeout else "")

    def leader_shares(self) -> dict[int, float]:
        total = len(self.recent_leaders)
        shares: dict[int, float] = {}
        for leader in self.recent_leaders:
            shares[leader] = shares.get(leader, 0.0) + 1.0 / total
        return shares

    # ------------------------------------------------------------------ execution
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
            if block.height % snapshot_every == 0:
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
            from node.api.app import CommittedBlock

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

    # ------------------------------------------------------------------ catch-up by height
    def on_sync_request(self, peer: int, request: SyncRequest) -> None:
        """Answer with committed blocks from ``from_height``: at most ``count`` and about
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
        if found is None and first <= head:
            found = self.storage.commit_qc_at_or_above(first)  # a long commit: send it whole
        if found is None:
            response = SyncResponse(blocks=(), commit_qc=None, head_height=head)
        else:
            end, qc = found
            blocks = tuple(codec.decode(s.block_bytes, Block) for s in self.storage.blocks_range(first, end))
            response = SyncResponse(blocks=blocks, commit_qc=qc, head_height=head)
        self.transport.send(peer, FRAME_SYNC_RESPONSE, codec.encode(response))

    def on_sync_response(self, peer: int, response: SyncResponse) -> None:
        if response.head_height > self.peer_heights.get(peer, 0):
            self.peer_heights[peer] = response.head_height
        if self._sync_waiter is not None and not self._sync_waiter.done():
            self._sync_waiter.set_result(response)

    def _check_sync(self, response: SyncResponse) -> str | None:
        """Why ``response`` cannot extend our executed chain, or None."""
        assert self.exec is not None
        blocks, qc = response.blocks, response.commit_qc
        if not blocks or qc is None:
            return "empty"
        if blocks[0].height != self.exec.height + 1 or blocks[0].parent_id != self.exec.last_block_id:
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
            check_qc(qc, committee=self.committee)
        except InvalidMessage as exc:
            return f"bad commit QC: {exc}"
        return None

    async def _catch_up(self) -> None:
        """Fetch and execute committed blocks from peers until no quorum of them is ahead."""
        assert self.exec is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        # Give the links a moment so a restarted node learns where the others are.
        while len(self.transport.connected()) < self.committee.quorum - 1 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        idle_rounds = 0
        while not self._stopped and self.halted is None and idle_rounds < 2:
            peers = self.transport.connected()
            if not peers:
                return
            progressed = False
            for peer in peers:
                self._sync_waiter = loop.create_future()
                request = SyncRequest(from_height=self.exec.height + 1, count=SYNC_BATCH_BLOCKS)
                self.transport.send(peer, FRAME_SYNC_REQUEST, codec.encode(request))
                try:
                    response = await asyncio.wait_for(self._sync_waiter, SYNC_TIMEOUT_S)
                except TimeoutError:
                    continue
                finally:
                    self._sync_waiter = None
                problem = self._check_sync(response)
                if problem is None:
                    await self.execute_blocks(list(response.blocks), response.commit_qc, loop)  # type: ignore[arg-type]
                    log.info("caught up to height %d from peer %d", self.exec.height, peer)
                    progressed = True
                    break
                if problem != "empty":
                    self.metrics.dropped.labels(reason="bad_sync").inc()
                    log.warning("sync response from peer %d rejected: %s", peer, problem)
            idle_rounds = 0 if progressed else idle_rounds + 1
