"""The simulator's run loop: N real consensus cores, one virtual clock, one seed.

Theory of operation. Everything happens in a single event heap ordered by
(virtual time, sequence number) (``node.sim.clock``): message deliveries, timer
ticks, payload answers and fault triggers. ``run()`` pops one event, hands it to
the right core instance and executes the core's actions **in order**, exactly
like the node's driver:

* ``PersistSafety`` writes the simulated disk (a dict that survives crashes);
  a node armed to crash "between persist and send" dies right there and the
  actions after it are lost;
* ``Send``/``Broadcast`` encode the message once with ``consensus.codec`` and
  hand one copy per destination instance to the seeded ``NetworkModel``; the
  receiver decodes it and runs ``consensus.validation.check_message`` before the
  core sees it, so codec and validation bugs surface as violations;
* ``ScheduleTick`` puts a tick on the heap, ``RequestPayload`` is answered at the
  same virtual instant with a few synthetic transactions, ``FetchBlocks`` becomes
  a ``BlockRequest`` answered from the peer's block store over the network;
* ``Commit`` goes to the ``Checker`` (agreement) and to the disk.

Every vote that leaves an instance is shown to the checker (double votes). No
wall clock, no asyncio, no sockets; all randomness comes from
``random.Random`` objects seeded from the run's seed, so a seed replays exactly.
The run has a fault phase (Byzantine validators, crashes, partitions, loss,
extra delay), then heals and checks liveness (``node.sim.faults``); the final
state becomes a ``SimResult`` (``node.sim.summary``).
"""

from __future__ import annotations

import hashlib
import random
import traceback
from collections.abc import Callable
from typing import Any

import msgspec

from consensus import codec
from consensus.actions import (
    Action,
    Broadcast,
    Commit,
    EquivocationDetected,
    FetchBlocks,
    PersistSafety,
    RequestPayload,
    RoundEntered,
    ScheduleTick,
    Send,
)
from consensus.config import ConsensusParams
from consensus.core import Core, make_genesis_block
from consensus.crypto import Signer
from consensus.events import BlocksFetched, Event, MessageReceived, PayloadReady, Tick
from consensus.types import (
    Block,
    BlockRequest,
    BlockResponse,
    Message,
    NodeId,
    ProposalMsg,
    TimeoutMsg,
    block_id,
)
from consensus.validation import check_message
from node.sim.byzantine import Byzantine
from node.sim.checker import Checker
from node.sim.clock import (
    DELIVER,
    HEAL_PARTITION,
    MAX_CLOCK_OFFSET_MS,
    PAYLOAD,
    RESTART,
    START_MS,
    TICK,
    EventQueue,
)
from node.sim.config import SimConfig
from node.sim.faults import check_liveness, fire_triggers
from node.sim.instance import CHAIN_ID, EPOCH, Instance, state_root, validator_seed
from node.sim.network import NetworkModel
from node.sim.result import SimResult
from node.sim.schedule import FaultPlan, make_plan
from node.sim.summary import summarize


class Simulation:
    """One seeded run. ``Simulation(config).run()`` returns a ``SimResult``."""

    def __init__(self, config: SimConfig, *, plan: FaultPlan | None = None) -> None:
        config.check()
        self.config = config
        self.plan = plan if plan is not None else make_plan(config)
        n = config.nodes
        self.params = ConsensusParams(round_timeout_ms=config.round_timeout_ms)
        self.max_timeout_ms = config.round_timeout_ms * 3
        self.signers = [Signer(validator_seed(i)) for i in range(n)]
        self.public_keys = tuple(s.public_key for s in self.signers)
        self.genesis = make_genesis_block(CHAIN_ID, EPOCH, 0)
        self.byzantine = set(self.plan.byzantine)
        honest = {i for i in range(n) if i not in self.byzantine}
        self.checker = Checker(honest_indices=honest)
        self.network = NetworkModel(
            random.Random(f"{config.seed}:network"),
            min_delay_ms=config.min_delay_ms,
            max_delay_ms=config.max_delay_ms,
            loss_percent=config.loss_percent,
            duplicate_percent=config.duplicate_percent,
            extra_delay_ms=config.fault_delay_ms,
        )
        clock_rng = random.Random(f"{config.seed}:clocks")
        byz_rng = random.Random(f"{config.seed}:byzantine")
        self.instances: list[Instance] = []
        twins = sorted(self.byzantine) if config.behaviour == "twins" else []
        for id, index in enumerate([*range(n), *twins]):
            inst = Instance(
                id=id, index=index, signer=self.signers[index], public_keys=self.public_keys,
                honest=index in honest, seed=config.seed,
            )
            inst.clock_offset_ms = clock_rng.randint(0, MAX_CLOCK_OFFSET_MS)
            if index in self.byzantine:
                inst.byzantine = Byzantine(
                    behaviour=config.behaviour, me=index, nodes=n, chain_id=CHAIN_ID,
                    signer=self.signers[index], rng=random.Random(byz_rng.random()),
                )
                inst.byzantine.lookup = inst.block
            self.instances.append(inst)
        self.by_index: dict[NodeId, list[Instance]] = {}
        for inst in self.instances:
            self.by_index.setdefault(inst.index, []).append(inst)

        self.now_ms = START_MS
        self.step = 0
        self.queue = EventQueue()
        self.max_round = 0
        self.leaders: dict[int, NodeId] = {}
        """round -> leader, as first announced by an honest instance."""
        self.timeout_rounds: set[int] = set()
        self.evidence_rounds: dict[NodeId, int] = {}
        """validator -> round of the first committed block carrying evidence against it."""
        self.counts: dict[str, int] = dict.fromkeys(
            ("byzantine", "crashes", "restarts", "crash_between_persist_and_send",
             "wiped_restarts", "partitions", "rejected", "equivocations_detected"), 0)
        self.counts["byzantine"] = len(self.plan.byzantine)
        self.crashes = sorted(self.plan.crashes, key=lambda c: c.at_round)
        """Planned crashes not fired yet, earliest round first (``node.sim.faults``)."""
        self.partitions = list(self.plan.partitions)
        """Planned partitions not fired yet."""
        self.partition_epoch = 0
        """Counts partitions fired; a heal event of an older partition is ignored."""
        self.healed = False
        self.heal_round = 0
        self.heal_height = 0
        self.heal_time_ms = 0
        self.liveness_ok = False
        self.trace = hashlib.sha256()
        """Running digest of every processed event: two runs of one seed match exactly."""
        self.on_step: Callable[[Simulation], None] | None = None
        """Optional observer called after every step (scenario tests)."""

    # -- lifecycle -------------------------------------------------------------
    def _block_check(self, inst: Instance) -> Callable[[Block], str | None]:
        def check(block: Block) -> str | None:
            height = block.header.executed_height
            if height <= len(inst.chain) and block.header.executed_state_root != state_root(
                inst.chain[:height]
            ):
                return "executed_state_root differs from ours"
            return None

        return check

    def _start(self, inst: Instance) -> None:
        inst.core = Core(
            committee=inst.committee,
            params=self.params,
            me=inst.index,
            signer=inst.signer,
            genesis_block=self.genesis,
            safety=inst.safety,
            restore=inst.restore,
            block_check=self._block_check(inst),
        )
        inst.alive = True
        inst.incarnation += 1
        self._handle(inst, Tick(now_ms=self.now_ms + inst.clock_offset_ms))

    def crash(self, inst: Instance) -> None:
        inst.alive = False
        inst.sign_refusals += inst.running().stats.sign_refusals
        inst.core = None
        inst.incarnation += 1
        inst.pending.clear()
        inst.tick_times.clear()
        inst.crash_on_persist = None
        self.counts["crashes"] += 1

    def restart(self, inst: Instance, *, wipe: bool) -> None:
        if inst.alive:
            return
        if wipe:
            inst.safety = None
            inst.chain = []
            inst.committed = {}
            inst.restore = None
            self.counts["wiped_restarts"] += 1
        self.counts["restarts"] += 1
        self._start(inst)

    # -- the core boundary -------------------------------------------------------
    def _handle(self, inst: Instance, event: Event) -> None:
        try:
            actions = inst.running().handle(event)
        except Exception as exc:  # a core must never raise on any input
            self.checker.violation(
                "core_exception",
                f"instance {inst.id} (validator {inst.index}) raised {exc!r} on "
                f"{type(event).__name__}: {traceback.format_exc(limit=-3)}",
            )
            return
        if inst.index in self.byzantine and inst.byzantine is not None:
            actions = inst.byzantine.rewrite(actions)
        round = inst.running().round
        if inst.honest and round > self.max_round:
            self.max_round = round
        self._execute(inst, actions)

    def _execute(self, inst: Instance, actions: list[Action]) -> None:
        incarnation = inst.incarnation
        for action in actions:
            if not inst.alive or inst.incarnation != incarnation:
                return
            if isinstance(action, PersistSafety):
                inst.safety = action.data
                self._persist_restore(inst)
                downtime_ms = inst.crash_on_persist
                if downtime_ms is not None:
                    self.counts["crash_between_persist_and_send"] += 1
                    self.crash(inst)
                    self.queue.push(self.now_ms + downtime_ms, RESTART, inst.id, 0, False)
                    return
            elif isinstance(action, Send):
                self._send(inst, action.to, action.message)
            elif isinstance(action, Broadcast):
                self._broadcast(inst, action.message)
            elif isinstance(action, ScheduleTick):
                at_ms = max(self.now_ms, action.at_ms - inst.clock_offset_ms)
                if at_ms not in inst.tick_times:
                    inst.tick_times.add(at_ms)
                    self.queue.push(at_ms, TICK, inst.id, inst.incarnation, None)
            elif isinstance(action, Commit):
                self._commit(inst, action)
            elif isinstance(action, FetchBlocks):
                request = BlockRequest(block_id=action.block_id, count=action.count)
                self._send(inst, action.peer, request)
            elif isinstance(action, RequestPayload):
                self.queue.push(self.now_ms, PAYLOAD, inst.id, inst.incarnation, action.round)
            elif isinstance(action, RoundEntered):
                if inst.honest:
                    self.leaders.setdefault(action.round, action.leader)
                    if action.via_timeout:
                        self.timeout_rounds.add(action.round - 1)
            elif isinstance(action, EquivocationDetected):
                self.counts["equivocations_detected"] += 1

    def _commit(self, inst: Instance, action: Commit) -> None:
        self.checker.on_commit(
            instance=inst.id, index=inst.index, chain=inst.chain, blocks=action.blocks
        )
        for block in action.blocks:
            inst.committed[block_id(block.header)] = block
            if inst.honest:
                for ev in block.header.evidence:
                    self.evidence_rounds.setdefault(ev.author, block.round)
        self._persist_restore(inst)

    def _persist_restore(self, inst: Instance) -> None:
        """Write the core's restore point as storage would: never ahead of the blocks
        actually committed to disk. A ``PersistSafety`` can precede a ``Commit`` in
        one action list; if the node dies between them, the restore point on disk
        must still name the last block it stored (else it restarts past blocks it
        never executed). Then only the certificates are refreshed."""
        point = inst.running().restore_point()
        height = point.block.height
        if height == len(inst.chain) and (height == 0 or inst.chain[-1] == block_id(point.block.header)):
            inst.restore = point
        elif inst.restore is not None:
            inst.restore = msgspec.structs.replace(
                inst.restore, high_qc=point.high_qc, high_tc=point.high_tc
            )

    # -- network -----------------------------------------------------------------
    def _send(self, inst: Instance, to: NodeId, message: Message) -> None:
        if not 0 <= to < self.config.nodes:
            return
        data = self._wire(inst, message)
        for dst in self.by_index[to]:
            if dst.id != inst.id:
                self._transmit(inst, dst, data)

    def _broadcast(self, inst: Instance, message: Message) -> None:
        data = self._wire(inst, message)
        for dst in self.instances:
            if dst.index != inst.index:
                self._transmit(inst, dst, data)

    def _wire(self, inst: Instance, message: Message) -> bytes:
        self.checker.on_message_sent(sender_index=inst.index, message=message)
        if isinstance(message, ProposalMsg) and message.block.header.author == inst.index:
            inst.remember(message.block)
        return codec.encode(message)

    def _transmit(self, src: Instance, dst: Instance, data: bytes) -> None:
        for delay_ms in self.network.plan(src.id, dst.id):
            self.queue.push(self.now_ms + delay_ms, DELIVER, dst.id, -1, (src.id, data))

    def _deliver(self, inst: Instance, src_id: int, data: bytes) -> None:
        src = self.instances[src_id]
        if not self.network.connected(src_id, inst.id):
            self.network.lost += 1
            return
        try:
            message: Message = codec.decode(data, Message)  # type: ignore[arg-type]
            check_message(message, sender=src.index, committee=inst.committee)
        except Exception as exc:
            self.counts["rejected"] += 1
            if src.honest:
                self.checker.violation(
                    "invalid_honest_message",
                    f"instance {inst.id} rejected a message of honest validator {src.index}: {exc!r}",
                )
            return
        if isinstance(message, BlockRequest):
            self._serve_blocks(inst, src, message)
        elif isinstance(message, BlockResponse):
            for block in message.blocks:
                inst.remember(block)
            self._handle(inst, BlocksFetched(blocks=message.blocks))
        else:
            if isinstance(message, ProposalMsg):
                inst.remember(message.block)
                if inst.byzantine is not None:
                    inst.byzantine.saw_proposal(message.block)
            self._handle(inst, MessageReceived(sender=src.index, message=message))
            if isinstance(message, TimeoutMsg) and inst.byzantine is not None and inst.alive:
                self._execute(inst, inst.byzantine.saw_timeout(message))

    def _serve_blocks(self, inst: Instance, requester: Instance, request: BlockRequest) -> None:
        blocks: list[Block] = []
        bid = request.block_id
        limit = min(request.count, self.params.max_fetch_blocks)
        while len(blocks) < limit:
            block = inst.block(bid)
            if block is None:
                break
            blocks.append(block)
            if block.height <= 1:
                break
            bid = block.parent_id
        if inst.byzantine is not None:
            answer = inst.byzantine.serve(request, blocks)
            if answer is None:
                return
            blocks = answer
        if blocks:
            data = codec.encode(BlockResponse(blocks=tuple(blocks)))
            self._transmit(inst, requester, data)

    # -- main loop -----------------------------------------------------------------
    def run(self) -> SimResult:
        cfg = self.config
        max_steps = (cfg.rounds + cfg.liveness_rounds) * len(self.instances) * 400 + 20_000
        for inst in self.instances:
            self._start(inst)
        stop_at_ms = START_MS + (cfg.rounds + cfg.liveness_rounds + 10) * self.max_timeout_ms * 3
        while self.queue and self.checker.ok:
            at_ms, _seq, kind, target, incarnation, payload = self.queue.pop()
            self.now_ms = at_ms
            self.step += 1
            self.checker.time_ms = at_ms
            self.checker.step = self.step
            self._process(kind, target, incarnation, payload)
            fire_triggers(self)
            if self.on_step is not None:
                self.on_step(self)
            if check_liveness(self):
                break
            if self.step >= max_steps or self.now_ms >= stop_at_ms:
                if not self.liveness_ok:
                    self.checker.violation(
                        "liveness", f"run budget exhausted at round {self.max_round}"
                    )
                break
        return summarize(self)

    def _process(self, kind: int, target: int, incarnation: int, payload: Any) -> None:
        inst = self.instances[target]
        self.trace.update(f"{self.now_ms}:{kind}:{target}:".encode())
        if kind == DELIVER:
            src_id, data = payload
            self.trace.update(data)
            if inst.alive:
                self._deliver(inst, src_id, data)
        elif kind == TICK:
            if inst.alive and inst.incarnation == incarnation:
                inst.tick_times.discard(self.now_ms)
                self._handle(inst, Tick(now_ms=self.now_ms + inst.clock_offset_ms))
        elif kind == PAYLOAD:
            if inst.alive and inst.incarnation == incarnation:
                self._handle(inst, self._payload(inst, payload))
        elif kind == RESTART and not self.healed:
            self.restart(inst, wipe=bool(payload))
        elif kind == HEAL_PARTITION and payload == self.partition_epoch and not self.healed:
            self.network.heal()

    def _payload(self, inst: Instance, round: int) -> PayloadReady:
        rng = inst.payload_rng
        txs = tuple(rng.randbytes(rng.randint(16, 48)) for _ in range(rng.randint(1, 3)))
        return PayloadReady(
            round=round,
            payload=txs,
            executed_height=len(inst.chain),
            executed_state_root=state_root(inst.chain),
        )


def simulate(config: SimConfig, *, plan: FaultPlan | None = None) -> SimResult:
    """Run one simulation and return its result."""
    return Simulation(config, plan=plan).run()
