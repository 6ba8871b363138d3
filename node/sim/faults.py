"""The fault phase of a simulated run, then the liveness check after healing.

While the phase lasts, the planned crashes and partitions fire as the highest
honest round reaches them (``fire_triggers``, called after every step). The phase
ends at the plan's ``fault_end_round`` (or a virtual-time cap): the partition is
removed, loss and extra delay go off and crashed nodes restart (``heal``). From then
on ``check_liveness`` demands that every honest instance commits again within
``liveness_rounds`` rounds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from node.sim.clock import HEAL_PARTITION, RESTART, START_MS
from node.sim.schedule import CrashPlan, PartitionPlan

if TYPE_CHECKING:
    from node.sim.runner import Simulation


def fire_triggers(sim: Simulation) -> None:
    """Fire every planned fault whose round has come; heal at the end of the fault phase."""
    if sim.healed:
        return
    while sim.crashes and sim.crashes[0].at_round <= sim.max_round:
        _trigger_crash(sim, sim.crashes.pop(0))
    while sim.partitions and sim.partitions[0].at_round <= sim.max_round:
        _trigger_partition(sim, sim.partitions.pop(0))
    fault_cap_ms = START_MS + sim.plan.fault_end_round * sim.max_timeout_ms
    if sim.max_round >= sim.plan.fault_end_round or sim.now_ms >= fault_cap_ms:
        heal(sim)


def _trigger_crash(sim: Simulation, crash: CrashPlan) -> None:
    inst = sim.instances[crash.index]
    if not inst.alive:
        return
    if crash.mode == "between-persist-and-send":
        inst.crash_on_persist = crash.downtime_ms  # dies at its next PersistSafety
        return
    sim.crash(inst)
    sim.queue.push(sim.now_ms + crash.downtime_ms, RESTART, inst.id, 0, crash.mode == "wipe")


def _trigger_partition(sim: Simulation, partition: PartitionPlan) -> None:
    sim.partition_epoch += 1
    sim.counts["partitions"] += 1
    sim.network.split(partition.groups)
    sim.queue.push(sim.now_ms + partition.duration_ms, HEAL_PARTITION, 0, 0, sim.partition_epoch)


def heal(sim: Simulation) -> None:
    """End the fault phase: network whole and clean again, every crashed node restarted."""
    sim.healed = True
    sim.network.heal()
    sim.network.loss_percent = 0
    sim.network.extra_delay_ms = 0
    sim.crashes.clear()
    sim.partitions.clear()
    for inst in sim.instances:
        inst.crash_on_persist = None
    for inst in sim.instances:
        if not inst.alive:
            sim.restart(inst, wipe=False)
    sim.heal_round = sim.max_round
    sim.heal_height = sim.checker.agreed_height
    sim.heal_time_ms = sim.now_ms


def check_liveness(sim: Simulation) -> bool:
    """True when the run may stop; records a liveness violation when over budget."""
    if not sim.healed:
        return False
    honest = [i for i in sim.instances if i.honest]
    if not sim.liveness_ok:
        sim.liveness_ok = all(i.alive and len(i.chain) > sim.heal_height for i in honest)
    if sim.liveness_ok:
        return sim.max_round >= sim.config.rounds
    over_rounds = sim.max_round > sim.heal_round + sim.config.liveness_rounds
    over_time = sim.now_ms > sim.heal_time_ms + (
        sim.config.liveness_rounds + 5) * sim.max_timeout_ms * 2
    if over_rounds or over_time:
        behind = [i.index for i in honest if not (i.alive and len(i.chain) > sim.heal_height)]
        sim.checker.violation(
            "liveness",
            f"after healing at round {sim.heal_round} (height {sim.heal_height}) "
            f"honest validators {behind} did not commit again by round {sim.max_round}",
        )
        return True
    return False
