"""The deterministic simulator: N real consensus cores, one virtual clock, one seed.

Theory of operation. Everything happens in a single event heap ordered by
(virtual time, sequence number): message deliveries, timer ticks, payload
answers and fault triggers. ``run()`` pops one event, hands it to the right
core instance and executes the core's actions **in order**, exactly like the
node's driver:

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
extra delay),
then heals (partition removed, loss off, crashed nodes restarted) and checks
liveness: every honest instance must commit again within
``liveness_rounds`` rounds.
"""

from __future__ import annotations

import hashlib
import heapq
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
from node.sim.config import SimConfig
from node.sim.instance import CHAIN_ID, EPOCH, Instance, state_root, validator_seed
from node.sim.network import NetworkModel
from node.sim.result import SimResult, fairness
from node.sim.schedule import CrashPlan, FaultPlan, PartitionPlan, make_plan

START_MS = 1_000
"""Virtual time of the first tick (genesis is at 0)."""
MAX_CLOCK_OFFSET_MS = 500
"""Each validator's clock runs ahead of virtual time by a fixed 0..this ms."""

# Heap event kinds.
_DELIVER, _TICK, _PAYLOAD, _RESTART, _HEAL_PARTITION = range(5)


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
        self._heap: list[tuple[int, int, int, int, int, Any]] = []
        self._seq = 0
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
        self._crashes = sorted(self.plan.crashes, key=lambda c: c.at_round)
        self._partitions = list(self.plan.partitions)
        self._partition_epoch = 0
        self.healed = False
        self.heal_round = 0
        self.heal_height = 0
        self.heal_time_ms = 0
        self.liveness_ok = False
        self.trace = hashlib.sha256()
        """Running digest of every processed event: two runs of one seed match exactly."""
        self.on_step: Callable[[Simulation], None] | None = None
        """Optional observer called after every step (scenario tests)."""

    # -- heap ----------------------------------------------------------------
    def _push(self, at_ms: int, kind: int, target: int, incarnation: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at_ms, self._seq, kind, target, incarnation, payload))

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

    def _crash(self, inst: Instance) -> None:
        inst.alive = False
        inst.sign_refusals += inst.running().stats.sign_refusals
        inst.core = None
        inst.incarnation += 1
        inst.pending.clear()
        inst.tick_times.clear()
        inst.crash_on_persist = None
        self.counts["crashes"] += 1

    def _restart(self, inst: Instance, *, wipe: bool) -> None:
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
                    self._crash(inst)
                    self._push(self.now_ms + downtime_ms, _RESTART, inst.id, 0, False)
                    return
            elif isinstance(action, Send):
                self._send(inst, action.to, action.message)
            elif isinstance(action, Broadcast):
                self._broadcast(inst, action.message)
            elif isinstance(action, ScheduleTick):
                at_ms = max(self.now_ms, action.at_ms - inst.clock_offset_ms)
                if at_ms not in inst.tick_times:
                    inst.tick_times.add(at_ms)
                    self._push(at_ms, _TICK, inst.id, inst.incarnation, None)
            elif isinstance(action, Commit):
                self._commit(inst, action)
            elif isinstance(action, FetchBlocks):
                request = BlockRequest(block_id=action.block_id, count=action.count)
                self._send(inst, action.peer, request)
            elif isinstance(action, RequestPayload):
                self._push(self.now_ms, _PAYLOAD, inst.id, inst.incarnation, action.round)
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
            self._push(self.now_ms + delay_ms, _DELIVER, dst.id, -1, (src.id, data))

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

    # -- faults ------------------------------------------------------------------
    def _fire_triggers(self) -> None:
        if self.healed:
            return
        while self._crashes and self._crashes[0].at_round <= self.max_round:
            self._trigger_crash(self._crashes.pop(0))
        while self._partitions and self._partitions[0].at_round <= self.max_round:
            self._trigger_partition(self._partitions.pop(0))
        fault_cap_ms = START_MS + self.plan.fault_end_round * self.max_timeout_ms
        if self.max_round >= self.plan.fault_end_round or self.now_ms >= fault_cap_ms:
            self._heal()

    def _trigger_crash(self, crash: CrashPlan) -> None:
        inst = self.instances[crash.index]
        if not inst.alive:
            return
        if crash.mode == "between-persist-and-send":
            inst.crash_on_persist = crash.downtime_ms  # dies at its next PersistSafety
            return
        self._crash(inst)
        self._push(self.now_ms + crash.downtime_ms, _RESTART, inst.id, 0, crash.mode == "wipe")

    def _trigger_partition(self, partition: PartitionPlan) -> None:
        self._partition_epoch += 1
        self.counts["partitions"] += 1
        self.network.split(partition.groups)
        self._push(
            self.now_ms + partition.duration_ms, _HEAL_PARTITION, 0, 0, self._partition_epoch
        )

    def _heal(self) -> None:
        self.healed = True
        self.network.heal()
        self.network.loss_percent = 0
        self.network.extra_delay_ms = 0
        self._crashes.clear()
        self._partitions.clear()
        for inst in self.instances:
            inst.crash_on_persist = None
        for inst in self.instances:
            if not inst.alive:
                self._restart(inst, wipe=False)
        self.heal_round = self.max_round
        self.heal_height = self.checker.agreed_height
        self.heal_time_ms = self.now_ms

    def _check_liveness(self) -> bool:
        """True when the run may stop; records a liveness violation when over budget."""
        if not self.healed:
            return False
        honest = [i for i in self.instances if i.honest]
        if not self.liveness_ok:
            self.liveness_ok = all(i.alive and len(i.chain) > self.heal_height for i in honest)
        if self.liveness_ok:
            return self.max_round >= self.config.rounds
        over_rounds = self.max_round > self.heal_round + self.config.liveness_rounds
        over_time = self.now_ms > self.heal_time_ms + (
            self.config.liveness_rounds + 5) * self.max_timeout_ms * 2
        if over_rounds or over_time:
            behind = [i.index for i in honest if not (i.alive and len(i.chain) > self.heal_height)]
            self.checker.violation(
                "liveness",
                f"after healing at round {self.heal_round} (height {self.heal_height}) "
                f"honest validators {behind} did not commit again by round {self.max_round}",
            )
            return True
        return False

    # -- main loop -----------------------------------------------------------------
    def run(self) -> SimResult:
        cfg = self.config
        max_steps = (cfg.rounds + cfg.liveness_rounds) * len(self.instances) * 400 + 20_000
        for inst in self.instances:
            self._start(inst)
        stop_at_ms = START_MS + (cfg.rounds + cfg.liveness_rounds + 10) * self.max_timeout_ms * 3
        while self._heap and self.checker.ok:
            at_ms, _seq, kind, target, incarnation, payload = heapq.heappop(self._heap)
            self.now_ms = at_ms
            self.step += 1
            self.checker.time_ms = at_ms
            self.checker.step = self.step
            self._process(kind, target, incarnation, payload)
            self._fire_triggers()
            if self.on_step is not None:
                self.on_step(self)
            if self._check_liveness():
                break
            if self.step >= max_steps or self.now_ms >= stop_at_ms:
                if not self.liveness_ok:
                    self.checker.violation(
                        "liveness", f"run budget exhausted at round {self.max_round}"
                    )
                break
        return self._result()

    def _process(self, kind: int, target: int, incarnation: int, payload: Any) -> None:
        inst = self.instances[target]
        self.trace.update(f"{self.now_ms}:{kind}:{target}:".encode())
        if kind == _DELIVER:
            src_id, data = payload
            self.trace.update(data)
            if inst.alive:
                self._deliver(inst, src_id, data)
        elif kind == _TICK:
            if inst.alive and inst.incarnation == incarnation:
                inst.tick_times.discard(self.now_ms)
                self._handle(inst, Tick(now_ms=self.now_ms + inst.clock_offset_ms))
        elif kind == _PAYLOAD:
            if inst.alive and inst.incarnation == incarnation:
                self._handle(inst, self._payload(inst, payload))
        elif kind == _RESTART and not self.healed:
            self._restart(inst, wipe=bool(payload))
        elif kind == _HEAL_PARTITION and payload == self._partition_epoch and not self.healed:
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

    # -- result --------------------------------------------------------------------
    def _result(self) -> SimResult:
        n = self.config.nodes
        honest = [i for i in self.instances if i.honest]
        heights = [len(i.chain) for i in honest] or [0]
        top = max(honest, key=lambda i: len(i.chain), default=None)
        credit = list(top.core.credit.credits) if top is not None and top.core else []
        refusals = sum(
            i.sign_refusals + (i.core.stats.sign_refusals if i.core else 0) for i in honest
        )
        led = [0] * n
        for leader in self.leaders.values():
            if 0 <= leader < n:
                led[leader] += 1
        total_led = max(1, sum(led))
        leader_share = [round(c / total_led, 4) for c in led]
        proposed = [0] * n  # committed blocks per proposer, in the most advanced honest chain
        if top is not None:
            for bid in top.chain:
                block = top.committed.get(bid)
                if block is not None and 0 <= block.header.author < n:
                    proposed[block.header.author] += 1
        height = max(heights)
        per_block = self.network.sent / max(1, height)
        forged = sum(i.byzantine.forged for i in self.instances if i.byzantine)
        withheld = sum(i.byzantine.dropped for i in self.instances if i.byzantine)
        forged_tcs = sum(i.byzantine.forged_tcs for i in self.instances if i.byzantine)
        faults = dict(self.counts)
        faults.update(
            lost=self.network.lost, duplicated=self.network.duplicated,
            forged=forged, forged_tcs=forged_tcs, withheld=withheld, sign_refusals=refusals,
        )
        return SimResult(
            seed=self.config.seed,
            nodes=n,
            violations=list(self.checker.violations),
            committed_height=height,
            committed_fraction=round(min(heights) / max(1, self.max_round), 4),
            min_committed_height=min(heights),
            rounds=self.max_round,
            timeouts=len(self.timeout_rounds),
            leader_share=leader_share,
            credit=credit,
            fairness=fairness(leader_share, proposed, [i for i in range(n) if i not in self.byzantine]),
            messages=self.network.sent,
            messages_per_block=round(per_block, 2),
            messages_per_block_per_node=round(per_block / n, 2),
            virtual_time_ms=self.now_ms,
            steps=self.step,
            faults=faults,
            liveness_ok=self.liveness_ok,
            reproduce=self.config.reproduce_command(),
        )


def simulate(config: SimConfig, *, plan: FaultPlan | None = None) -> SimResult:
    """Run one simulation and return its result."""
    return Simulation(config, plan=plan).run()
