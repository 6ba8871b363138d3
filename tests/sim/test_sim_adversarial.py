"""The Byzantine behaviours of issue 10 (forge-tc, inflate-round, withhold-sync,
garbage-sync, false-blame): with f such validators, no invariant breaks and at
least 60% of the rounds of a 300-round run commit, at n = 4 and n = 7. The seeds
are the first CI-sweep seeds that draw each behaviour (``sweep_config``), so the
liveness runs and the sweep exercise the same schedules."""

from __future__ import annotations

import pytest

from consensus.core import Core
from consensus.types import TimeoutMsg
from node.sim.config import SimConfig
from node.sim.runner import Simulation, simulate
from node.sim.schedule import CrashPlan, FaultPlan
from node.sim.sweep import sweep_config
from tests.sim.conftest import explain
from tests.sim.test_sim_sweep import RUNS, SWEEP_ROUNDS

NEW_BEHAVIOURS = ("forge-tc", "inflate-round", "withhold-sync", "garbage-sync", "false-blame")
LIVENESS_ROUNDS = 300
MIN_COMMITTED_FRACTION = 0.6
SEEDS_PER_BEHAVIOUR = 2


def _sweep_seeds(behaviour: str) -> list[int]:
    seeds = [s for s in range(RUNS) if sweep_config(s, rounds=SWEEP_ROUNDS).behaviour == behaviour]
    return seeds[:SEEDS_PER_BEHAVIOUR]


@pytest.mark.parametrize("nodes", [4, 7])
@pytest.mark.parametrize("behaviour", NEW_BEHAVIOURS)
def test_f_byzantine_validators_cannot_stop_the_chain(behaviour: str, nodes: int) -> None:
    seeds = _sweep_seeds(behaviour)
    assert len(seeds) == SEEDS_PER_BEHAVIOUR
    for seed in seeds:
        config = SimConfig(nodes=nodes, seed=seed, rounds=LIVENESS_ROUNDS, byzantine=(nodes - 1) // 3,
                           behaviour=behaviour)  # type: ignore[arg-type]
        result = simulate(config)
        assert result.ok, explain(result)
        assert result.liveness_ok, explain(result)
        assert result.committed_fraction >= MIN_COMMITTED_FRACTION, explain(result)
        # The attack really happened.
        acted = result.faults["forged"] + result.faults["withheld"]
        assert acted > 0, explain(result)
        # forge-tc is not here: its leader turns end in timeouts, and the credit rule
        # (docs/CREDIT.md) takes its turns away after the first, so on some seeds it never
        # holds a round to forge in; test_forge_tc_builds_forged_certificates_that_everyone_refuses
        # shows forged TCs built and refused.
        if behaviour in ("inflate-round", "garbage-sync"):
            assert result.faults["rejected"] > 0, explain(result)


def test_forge_tc_builds_forged_certificates_that_everyone_refuses() -> None:
    sim = Simulation(SimConfig(nodes=7, seed=1, rounds=120, byzantine=2, behaviour="forge-tc"))
    result = sim.run()
    assert result.ok, explain(result)
    assert result.faults["forged_tcs"] > 0, explain(result)
    honest = [i for i in sim.instances if i.honest and i.core is not None]
    assert all(i.core.high_tc is None or i.core.high_tc.high_qc.round == i.core.high_tc.high_qc_round
               for i in honest)


def test_false_blame_fires_and_is_never_committed() -> None:
    sim = Simulation(SimConfig(nodes=4, seed=1, rounds=150, byzantine=1, behaviour="false-blame"))
    result = sim.run()
    assert result.ok, explain(result)
    liar = sim.plan.byzantine[0]
    assert result.faults["forged"] > 0, explain(result)
    refused = sum(i.core.stats.invalid_proposals for i in sim.instances if i.honest and i.core is not None)
    assert refused > 0
    # Every committed failed-author list names exactly the elected leaders of the skipped rounds.
    for inst in sim.instances:
        if not inst.honest or inst.core is None:
            continue
        for block in inst.committed.values():
            if block.header.author == liar:
                named = block.header.failed_authors
                assert all(sim.leaders.get(r, a) == a for r, a in named), (block.round, named)


def _wiped_voter_run(*, old_guard: bool, monkeypatch: pytest.MonkeyPatch, seed: int = 1) -> tuple[int, int]:
    """Validator 0 restarts with a wiped disk at round 20 while validator 3 inflates
    rounds; returns (round at the end, the wiped validator's last voted round)."""
    if old_guard:
        # The rule before: a timeout's claimed round counted towards the guard's floor.
        original = Core._on_timeout

        def on_timeout(self: Core, sender: int, msg: TimeoutMsg) -> None:
            self._safety.observe_network_round(sender, msg.timeout.data.round)
            original(self, sender, msg)

        monkeypatch.setattr(Core, "_on_timeout", on_timeout)
    config = SimConfig(nodes=4, seed=seed, rounds=150, byzantine=1, behaviour="inflate-round", crash=1)
    plan = FaultPlan(byzantine=(3,), partitions=(), fault_end_round=60,
                     crashes=(CrashPlan(index=0, at_round=20, downtime_ms=2_000, mode="wipe"),))
    sim = Simulation(config, plan=plan)
    result = sim.run()
    assert result.ok, explain(result)
    assert result.faults["wiped_restarts"] == 1
    core = sim.instances[0].core
    assert core is not None
    return result.rounds, core.last_voted_round


def test_inflated_rounds_do_not_mute_a_wiped_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    """An inflate-round validator claims absurd rounds to everyone, including a node
    that restarts with a wiped disk: its guard counts certified rounds only, so it
    votes again. Under the old rule (claimed rounds counted) it stays mute."""
    # Whether the absurd claim lands among the first f+1 a wiped node hears depends on
    # message order, so the old rule is shown muted on some seeds; the new one on none.
    seeds = range(1, 9)
    for seed in seeds:
        rounds, voted = _wiped_voter_run(old_guard=False, monkeypatch=monkeypatch, seed=seed)
        assert voted > rounds - 5, (seed, rounds, voted)
    muted_before = []
    for seed in seeds:
        rounds, voted = _wiped_voter_run(old_guard=True, monkeypatch=monkeypatch, seed=seed)
        monkeypatch.undo()
        if voted == 0:
            muted_before.append(seed)
    assert muted_before, "the old rule was never fooled: the test no longer shows the attack"
