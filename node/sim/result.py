"""The outcome of one simulated run: violations and metrics (``gridchain sim --json``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from node.sim.checker import Violation


class Fairness(msgspec.Struct, kw_only=True):
    """How evenly the honest validators shared leadership and its rewards."""

    leader_share_max_deviation: float
    """Largest deviation of an honest validator's leader share from the honest mean."""
    proposer_reward_gini: float
    """Gini coefficient of proposer rewards among honest validators (each committed
    block pays its proposer the same reward, so: of committed blocks proposed)."""


def gini(values: Sequence[int] | Sequence[float]) -> float:
    """The Gini coefficient of ``values``: 0 when all are equal, towards 1 when one holds all."""
    total = sum(values)
    if len(values) < 2 or total <= 0:
        return 0.0
    ordered = sorted(values)
    n = len(ordered)
    return sum((2 * (i + 1) - n - 1) * v for i, v in enumerate(ordered)) / (n * total)


def fairness(leader_share: Sequence[float], proposed: Sequence[int], honest: Iterable[int]) -> Fairness:
    """``Fairness`` of the validators ``honest`` (indexes into both sequences)."""
    honest = sorted(honest)
    shares = [leader_share[i] for i in honest]
    mean = sum(shares) / max(1, len(shares))
    return Fairness(
        leader_share_max_deviation=round(max((abs(s - mean) for s in shares), default=0.0), 4),
        proposer_reward_gini=round(gini([proposed[i] for i in honest]), 4),
    )


class SimResult(msgspec.Struct, kw_only=True):
    """Outcome and metrics of one run (the ``--json`` object of ``gridchain sim``)."""

    seed: int
    nodes: int
    violations: list[Violation]
    """Empty when every invariant held."""
    committed_height: int
    """Highest height committed by an honest validator."""
    min_committed_height: int
    """Lowest final height among honest validators."""
    committed_fraction: float
    """Share of the rounds that committed a block: ``min_committed_height / rounds``
    (every honest validator committed that many blocks; at most one block per round)."""
    rounds: int
    """Highest round an honest validator reached."""
    timeouts: int
    """Rounds that ended in a timeout (some honest validator entered the next via a TC)."""
    leader_share: list[float]
    """Per validator: share of the rounds it led."""
    credit: list[int]
    """Per validator: credit as computed by the most advanced honest validator."""
    fairness: Fairness
    """Leader share and proposer rewards among the honest validators (docs/CREDIT.md)."""
    messages: int
    """Messages handed to the network (one per destination)."""
    messages_per_block: float
    """messages / committed_height."""
    messages_per_block_per_node: float
    """messages_per_block / nodes."""
    virtual_time_ms: int
    steps: int
    faults: dict[str, int]
    """Counts: byzantine, crashes, restarts, crash_between_persist_and_send,
    wiped_restarts, partitions, lost, duplicated, rejected (messages that failed
    validation), forged (conflicting or forged messages and block answers Byzantine validators
    made), forged_tcs (TCs built around a forged QC round), withheld (proposals a silent leader kept, block requests a withhold-sync
    validator left unanswered), equivocations_detected, sign_refusals (honest
    signatures refused, e.g. by the double-sign guard)."""
    liveness_ok: bool
    """Every honest validator committed again after the faults healed."""
    reproduce: str
    """The command that replays this run."""

    @property
    def ok(self) -> bool:
        return not self.violations
