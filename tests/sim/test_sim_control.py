"""The checker is not blind: with more than f faulty validators (2 twin pairs in a
4-validator network, so f = 1 is exceeded) and partitions that separate twins,
some seed in a bounded range breaks agreement, the checker reports it, the same
seed reproduces it exactly, and ``gridchain sim`` exits 1 with the violation in
its JSON."""

from __future__ import annotations

import json

import pytest

from node.cli import main
from node.sim.config import SimConfig
from node.sim.runner import Simulation, simulate

SEARCH_SEEDS = 60
"""Seeds searched (deterministic); the first hit is usually within the first few."""


def twins_config(seed: int) -> SimConfig:
    return SimConfig(nodes=4, seed=seed, rounds=60, byzantine=2, behaviour="twins",
                     partition=True, fault_fraction_percent=80)


@pytest.fixture(scope="module")
def violating_seed() -> int:
    for seed in range(SEARCH_SEEDS):
        result = simulate(twins_config(seed))
        if any(v.kind == "agreement" for v in result.violations):
            return seed
    pytest.fail(f"no seed in 0..{SEARCH_SEEDS - 1} broke agreement with 2 twins in 4: "
                "the checker is blind")


def test_two_twins_in_four_break_agreement_and_are_detected(violating_seed: int) -> None:
    result = simulate(twins_config(violating_seed))
    assert not result.ok
    assert result.violations[0].kind == "agreement"
    assert f"--seed {violating_seed}" in result.reproduce and "--behaviour twins" in result.reproduce


def test_the_violating_seed_reproduces_exactly(violating_seed: int) -> None:
    first, second = Simulation(twins_config(violating_seed)), Simulation(twins_config(violating_seed))
    a, b = first.run(), second.run()
    assert a.violations == b.violations
    assert first.trace.hexdigest() == second.trace.hexdigest()


def test_cli_exits_1_and_reports_the_violation(violating_seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    argv = twins_config(violating_seed).reproduce_command().split()[1:]
    assert main([*argv, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["violations"] and report["violations"][0]["kind"] == "agreement"


def test_cli_summary_prints_the_reproduce_line(violating_seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    argv = twins_config(violating_seed).reproduce_command().split()[1:]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "reproduce with: gridchain sim" in out and f"--seed {violating_seed}" in out


def test_double_vote_check_sees_real_wire_votes() -> None:
    """One twin pair (within f): when the twinned validator leads, each twin signs
    its own block and votes for it. Declaring that key honest must make the
    checker report the two different votes it signed for one round."""
    sim = Simulation(SimConfig(nodes=4, seed=4, rounds=40, byzantine=1, behaviour="twins"))
    twinned = sim.plan.byzantine[0]
    sim.checker.honest_indices = sim.checker.honest_indices | {twinned}
    result = sim.run()
    assert result.violations and result.violations[0].kind in {"double_vote", "double_proposal"}
    assert f"validator {twinned}" in result.violations[0].detail
