"""The CI seed sweep: 200 runs over n in {4, 7} mixing every fault kind (equivocating
leader, double voter, silent leader, twins, forged TCs, inflated rounds, withheld
or garbage block answers, false blame; crashes with plain restart, crash
between persist and send, wiped restart; partitions; loss; duplication) with up to
f faulty validators. Every run must keep every invariant and make progress after
healing. Split into chunks so xdist spreads them over the cores."""

from __future__ import annotations

import pytest

from node.sim.config import BEHAVIOURS
from node.sim.runner import simulate
from node.sim.schedule import make_plan
from node.sim.sweep import sweep_config
from tests.sim.conftest import explain

RUNS = 200
CHUNK = 20
SWEEP_ROUNDS = 50


@pytest.mark.parametrize("first", range(0, RUNS, CHUNK))
def test_seed_sweep_has_no_violation_and_always_progresses(first: int) -> None:
    for seed in range(first, first + CHUNK):
        config = sweep_config(seed, nodes=(4, 7), rounds=SWEEP_ROUNDS)
        result = simulate(config)
        assert result.ok, explain(result)
        assert result.liveness_ok and result.committed_height > 0, explain(result)


def test_sweep_mixes_every_fault_kind() -> None:
    configs = [sweep_config(s, nodes=(4, 7), rounds=SWEEP_ROUNDS) for s in range(RUNS)]
    assert {c.nodes for c in configs} == {4, 7}
    for behaviour in BEHAVIOURS:
        for n in (4, 7):
            assert any(c.behaviour == behaviour and c.byzantine > 0 and c.nodes == n for c in configs), \
                (behaviour, n)
    assert any(c.byzantine == 2 and c.nodes == 7 for c in configs), "never f = 2 faulty"
    assert all(c.byzantine <= (c.nodes - 1) // 3 for c in configs)
    assert sum(c.partition for c in configs) >= 40
    assert sum(c.crash > 0 for c in configs) >= 60
    assert sum(c.loss_percent > 0 for c in configs) >= 40
    assert sum(c.fault_delay_ms > 0 for c in configs) >= 40
    modes = {crash.mode for c in configs for crash in make_plan(c).crashes}
    assert modes == {"restart", "between-persist-and-send", "wipe"}
