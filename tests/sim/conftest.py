"""Shared helpers for the simulator tests."""

from __future__ import annotations

from node.sim.result import SimResult


def explain(result: SimResult) -> str:
    """Failure message: the violations and the command that reproduces the run."""
    lines = [f"{v.kind} at {v.time_ms} ms: {v.detail}" for v in result.violations]
    lines.append(f"height {result.committed_height}, rounds {result.rounds}, "
                 f"liveness_ok {result.liveness_ok}, faults {result.faults}")
    lines.append(f"reproduce with: {result.reproduce}")
    return "\n".join(lines)
