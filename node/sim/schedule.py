"""The fault schedule of one run, drawn from the seed.

Everything that goes wrong in a run is decided here, before the run starts,
from ``random.Random(f"{seed}:schedule")``: which validators are Byzantine,
which honest validators crash (at which round, for how long, and how: a plain
restart from disk, a crash between persisting safety data and sending, or a
restart with wiped data), and the partition episodes. Triggers are expressed in
rounds (the highest round any honest instance reached), durations in virtual
milliseconds.

Instances: validator ``i`` runs as instance ``i``; the twin of a twinned
validator runs as instance ``nodes + k`` (k-th twin).

With twins, half of the partition episodes put every twin on the other side
from its original (the Twins method: each side sees one copy of the key), the
other half split all instances at random.
"""

from __future__ import annotations

import random
from typing import Literal

import msgspec

from node.sim.config import SimConfig

CrashMode = Literal["restart", "between-persist-and-send", "wipe"]


class CrashPlan(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    """Validator (and instance) that crashes."""
    at_round: int
    """Crash when the highest honest round reaches this."""
    downtime_ms: int
    """Restart this long after the crash (or at healing, whichever comes first)."""
    mode: CrashMode
    """restart: from disk; between-persist-and-send: dies right after the next
    PersistSafety, dropping the actions after it; wipe: restarts with an empty disk."""


class PartitionPlan(msgspec.Struct, frozen=True, kw_only=True):
    at_round: int
    """Split when the highest honest round reaches this."""
    duration_ms: int
    """Heal this long after the split (or at the end of the fault phase)."""
    groups: tuple[tuple[int, ...], ...]
    """Instance ids per side."""


class FaultPlan(msgspec.Struct, frozen=True, kw_only=True):
    byzantine: tuple[int, ...]
    """Validators running the Byzantine behaviour (twinned validators for ``twins``)."""
    crashes: tuple[CrashPlan, ...]
    partitions: tuple[PartitionPlan, ...]
    fault_end_round: int
    """The fault phase ends (everything heals) when the highest honest round reaches this."""

    @property
    def wiped(self) -> int:
        return sum(1 for c in self.crashes if c.mode == "wipe")


def instance_count(config: SimConfig) -> int:
    return config.nodes + (config.byzantine if config.behaviour == "twins" else 0)


def make_plan(config: SimConfig) -> FaultPlan:
    """The deterministic fault plan of ``config`` (same config, same plan)."""
    rng = random.Random(f"{config.seed}:schedule")
    n = config.nodes
    f = (n - 1) // 3
    fault_end_round = max(2, config.rounds * config.fault_fraction_percent // 100)
    byzantine = tuple(sorted(rng.sample(range(n), config.byzantine)))
    honest = [i for i in range(n) if i not in byzantine]
    victims = sorted(rng.sample(honest, min(config.crash, len(honest))))
    # A wiped node is trusted only through the double-sign guard; keep it within
    # the fault budget together with the Byzantine validators.
    wipe_budget = max(0, f - config.byzantine)
    crashes: list[CrashPlan] = []
    for index in victims:
        modes: list[CrashMode] = ["restart", "between-persist-and-send"]
        if wipe_budget > 0:
            modes.append("wipe")
        mode = rng.choice(modes)
        if mode == "wipe":
            wipe_budget -= 1
        crashes.append(
            CrashPlan(
                index=index,
                at_round=rng.randint(1, max(1, fault_end_round - 1)),
                downtime_ms=rng.randint(config.round_timeout_ms // 5, 5 * config.round_timeout_ms),
                mode=mode,
            )
        )
    partitions: list[PartitionPlan] = []
    if config.partition:
        instances = list(range(instance_count(config)))
        twin_of = {n + k: index for k, index in enumerate(byzantine)} if config.behaviour == "twins" else {}
        for _ in range(rng.randint(1, 2)):
            while True:
                sides = [rng.randrange(2) for _ in instances]
                if twin_of and rng.randrange(2):
                    # Twins-style split: every twin on the other side from its
                    # original, so both sides can hold a quorum of keys.
                    for twin, original in twin_of.items():
                        sides[twin] = 1 - sides[original]
                if 0 < sum(sides) < len(instances):
                    break
            groups = tuple(
                tuple(i for i, side in zip(instances, sides, strict=True) if side == s)
                for s in (0, 1)
            )
            partitions.append(
                PartitionPlan(
                    at_round=rng.randint(1, max(1, fault_end_round - 1)),
                    duration_ms=rng.randint(config.round_timeout_ms, 8 * config.round_timeout_ms),
                    groups=groups,
                )
            )
        partitions.sort(key=lambda p: p.at_round)
    return FaultPlan(
        byzantine=byzantine,
        crashes=tuple(crashes),
        partitions=tuple(partitions),
        fault_end_round=fault_end_round,
    )
