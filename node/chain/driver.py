"""The consensus loop: one asyncio task that feeds the consensus core and carries out its actions.

Theory of operation
-------------------
Everything that happens to the validator becomes a ``consensus.events`` event in
one bounded queue: validated peer messages (from ``node.net.transport``), timer
ticks, payload answers, fetched blocks. ``_run()`` takes one event at a time,
calls ``Core.handle`` and executes the returned actions strictly in order:

* ``PersistSafety`` is awaited until the safety data is fsynced (``node.chain.storage``)
  before any later action — so no vote or timeout ever leaves the process unless
  the data that forbids a conflicting one is on disk;
* ``Send``/``Broadcast`` encode the message once and queue it on the peer links;
* ``RequestPayload`` is answered with a mempool batch (``node.chain.payload``);
* ``ScheduleTick`` (re)arms the one timer; ``FetchBlocks`` asks a peer;
* ``Commit`` hands the blocks to the execution pipeline (``node.chain.execution``)
  and returns immediately.

Back-pressure: consensus may commit faster than execution applies. Before it
takes the next event, the consensus loop waits while the committed height is
``max_execution_lag_blocks`` (node config) or more above the executed height,
so the commit queue stays bounded by that lag (plus the blocks of one commit)
instead of growing without limit; meanwhile this validator does not vote or
propose, and the others carry on without it. Once execution halted, it waits
for good.

Catch-up (``node.net.sync``): at start and whenever peers are far ahead, the loop
stops feeding the core, fetches committed blocks by height, and restarts its core
from the new committed root. With ``state_sync`` set, a node that is empty or far
behind first tries a peer's certified snapshot (``node.net.statesync``).

``Driver`` is the one object the rest of the node holds; its parts live in the
mixins ``ExecutionPipeline``, ``CatchUp``, ``StateSync`` and ``PayloadSelection``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from consensus import actions as act
from consensus import codec
from consensus import core as core_mod
from consensus import events as ev
from consensus.committee import Committee
from consensus.crypto import Signer
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
)
from contracts.genesis import Genesis
from node.chain.clock import now_ms
from node.chain.execution import (
    ExecutionHalt,
    ExecutionPipeline,
    ExecutionState,
)
from node.chain.mempool import Mempool
from node.chain.payload import (
    RECENT_BLOCKS,
    RECENT_BLOCKS_BYTES,
    RECENT_BLOCKS_MIN,
    PayloadSelection,
    block_bytes,
)
from node.chain.shedding import BacklogGate
from node.chain.storage import Storage
from node.net.statesync import StateSync
from node.net.sync import CatchUp
from node.net.transport import FRAME_CONSENSUS, SyncResponse
from node.ops.config import NodeConfig
from node.ops.metrics import NodeMetrics

log = logging.getLogger("gridchain.driver")

EVENT_QUEUE_SIZE = 20_000
"""Bound of the event queue; beyond it peer messages are dropped (consensus recovers)."""
LEADER_SHARE_ROUNDS = 200
"""Window of rounds over which ``gridchain_validator_leader_share`` is computed."""


class Tip(msgspec.Struct, frozen=True):
    """The certified tip stored with the safety data (see ``node.chain.storage``)."""

    high_qc: QuorumCert
    high_tc: TimeoutCert | None = None



class Driver(ExecutionPipeline, CatchUp, StateSync, PayloadSelection):
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
        self.backlog = BacklogGate(max_wait_s=config.shed_backlog_ms / 1000,
                                   max_latency_s=config.shed_latency_ms / 1000)
        """Overload shedding (``node.chain.shedding``): admission asks it, execution feeds it latencies."""
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
        self._recent_bytes = 0
        """Payload bytes held by ``recent_blocks`` (bounded by ``RECENT_BLOCKS_BYTES``)."""
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
        self._stopped = False
        self._applying = 0
        """Height of the block being applied (names the block when execution fails)."""
        self.round = 0
        self.leader = 0
        self.recent_leaders: deque[int] = deque(maxlen=LEADER_SHARE_ROUNDS)


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
        self._recent_bytes += block_bytes(block)
        if self.exec is not None and block.height > self.exec.height:
            task = asyncio.get_running_loop().create_task(self.storage.save_pending_block(block, bid))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        while len(self.recent_blocks) > RECENT_BLOCKS or (
                self._recent_bytes > RECENT_BLOCKS_BYTES and len(self.recent_blocks) > RECENT_BLOCKS_MIN):
            self._recent_bytes -= block_bytes(self.recent_blocks.popitem(last=False)[1])

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
            await self._state_sync()
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

