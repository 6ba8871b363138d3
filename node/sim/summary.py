"""Sums up a finished run as its ``SimResult``: heights, leader shares, fairness, message and fault counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from node.sim.result import SimResult, fairness

if TYPE_CHECKING:
    from node.sim.runner import Simulation


def summarize(sim: Simulation) -> SimResult:
    """The result of ``sim`` as it stands (called once its run loop has stopped)."""
    n = sim.config.nodes
    honest = [i for i in sim.instances if i.honest]
    heights = [len(i.chain) for i in honest] or [0]
    top = max(honest, key=lambda i: len(i.chain), default=None)
    credit = list(top.core.credit.credits) if top is not None and top.core else []
    refusals = sum(
        i.sign_refusals + (i.core.stats.sign_refusals if i.core else 0) for i in honest
    )
    led = [0] * n
    for leader in sim.leaders.values():
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
    per_block = sim.network.sent / max(1, height)
    forged = sum(i.byzantine.forged for i in sim.instances if i.byzantine)
    withheld = sum(i.byzantine.dropped for i in sim.instances if i.byzantine)
    forged_tcs = sum(i.byzantine.forged_tcs for i in sim.instances if i.byzantine)
    faults = dict(sim.counts)
    faults.update(
        lost=sim.network.lost, duplicated=sim.network.duplicated,
        forged=forged, forged_tcs=forged_tcs, withheld=withheld, sign_refusals=refusals,
    )
    return SimResult(
        seed=sim.config.seed,
        nodes=n,
        violations=list(sim.checker.violations),
        committed_height=height,
        committed_fraction=round(min(heights) / max(1, sim.max_round), 4),
        min_committed_height=min(heights),
        rounds=sim.max_round,
        timeouts=len(sim.timeout_rounds),
        leader_share=leader_share,
        credit=credit,
        fairness=fairness(leader_share, proposed, [i for i in range(n) if i not in sim.byzantine]),
        messages=sim.network.sent,
        messages_per_block=round(per_block, 2),
        messages_per_block_per_node=round(per_block / n, 2),
        virtual_time_ms=sim.now_ms,
        steps=sim.step,
        faults=faults,
        liveness_ok=sim.liveness_ok,
        reproduce=sim.config.reproduce_command(),
    )
