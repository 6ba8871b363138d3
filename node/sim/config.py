"""What one simulated run looks like: the knobs of ``gridchain sim``.

A ``SimConfig`` plus its ``seed`` determines a run completely: the fault
schedule (who is Byzantine, who crashes when and how, which partitions happen)
is drawn from the seed by ``node.sim.schedule``, the network draws delays,
losses and duplicates from the seed, and the cores are deterministic. Every
field maps to a CLI flag, so ``reproduce_command()`` is enough to replay any
run exactly.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Behaviour = Literal["equivocate", "double-vote", "silent", "twins", "forge-tc", "inflate-round",
                    "withhold-sync", "garbage-sync", "false-blame"]
BEHAVIOURS: tuple[Behaviour, ...] = ("equivocate", "double-vote", "silent", "twins", "forge-tc",
                                     "inflate-round", "withhold-sync", "garbage-sync", "false-blame")


class SimConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One simulated consortium and its fault budget."""

    nodes: int = 4
    """Number of validators (committee size n)."""
    seed: int = 0
    """The one seed every random choice of the run derives from."""
    rounds: int = 100
    """Run until the highest honest round reaches this (after the fault phase healed)."""
    byzantine: int = 0
    """Validators (or, for twins, twin pairs) that run ``behaviour``."""
    behaviour: Behaviour = "equivocate"
    """What the Byzantine validators do."""
    crash: int = 0
    """Honest validators that crash and restart during the fault phase."""
    partition: bool = False
    """Split the network into two random groups (by instance) during the fault phase."""
    loss_percent: int = 0
    """Per-message loss probability during the fault phase, in percent."""
    duplicate_percent: int = 2
    """Per-message duplication probability, in percent (the whole run)."""
    min_delay_ms: int = 2
    """Shortest one-way network delay."""
    max_delay_ms: int = 60
    """Longest regular one-way delay; a few messages take up to 10x this (tail)."""
    fault_delay_ms: int = 0
    """During the fault phase, every message takes up to this much extra delay
    (periods of asynchrony longer than a round timeout); 0 turns it off."""
    round_timeout_ms: int = 1_000
    """Base round timeout handed to the cores (``ConsensusParams.round_timeout_ms``)."""
    fault_fraction_percent: int = 50
    """The fault phase lasts until the highest honest round reaches this share of ``rounds``."""
    liveness_rounds: int = 40
    """After healing, every honest node must commit again before the highest honest
    round advances this many rounds further."""

    def reproduce_command(self) -> str:
        """The ``gridchain sim`` command line that replays this run exactly."""
        parts = [
            "gridchain sim",
            f"--nodes {self.nodes}",
            f"--seed {self.seed}",
            f"--rounds {self.rounds}",
        ]
        if self.byzantine:
            parts.append(f"--byzantine {self.byzantine} --behaviour {self.behaviour}")
        if self.crash:
            parts.append(f"--crash {self.crash}")
        if self.partition:
            parts.append("--partition")
        if self.loss_percent:
            parts.append(f"--loss {self.loss_percent}")
        defaults = SimConfig()
        extras = (
            ("duplicate_percent", "--duplicate"),
            ("min_delay_ms", "--min-delay-ms"),
            ("max_delay_ms", "--max-delay-ms"),
            ("fault_delay_ms", "--fault-delay-ms"),
            ("round_timeout_ms", "--round-timeout-ms"),
            ("fault_fraction_percent", "--fault-fraction"),
            ("liveness_rounds", "--liveness-rounds"),
        )
        for field, flag in extras:
            value = getattr(self, field)
            if value != getattr(defaults, field):
                parts.append(f"{flag} {value}")
        return " ".join(parts)

    def check(self) -> None:
        """Raise ``ValueError`` for a configuration that cannot be simulated."""
        if not 1 <= self.nodes <= 64:
            raise ValueError("--nodes must be between 1 and 64")
        if self.rounds < 1:
            raise ValueError("--rounds must be positive")
        if self.byzantine < 0 or self.crash < 0:
            raise ValueError("--byzantine and --crash must not be negative")
        if self.byzantine > self.nodes:
            raise ValueError("--byzantine cannot exceed --nodes")
        if self.byzantine + self.crash > self.nodes:
            raise ValueError("--byzantine plus --crash cannot exceed --nodes")
        if self.behaviour not in BEHAVIOURS:
            raise ValueError(f"--behaviour must be one of {', '.join(BEHAVIOURS)}")
        if not 0 <= self.loss_percent <= 100 or not 0 <= self.duplicate_percent <= 100:
            raise ValueError("percentages must be between 0 and 100")
        if not 0 <= self.min_delay_ms <= self.max_delay_ms or self.fault_delay_ms < 0:
            raise ValueError("need 0 <= --min-delay-ms <= --max-delay-ms")
        if self.round_timeout_ms < 1 or not 0 <= self.fault_fraction_percent <= 100:
            raise ValueError("bad --round-timeout-ms or --fault-fraction")
        if self.liveness_rounds < 1:
            raise ValueError("--liveness-rounds must be positive")
