"""Fairness of C-LBFT credit (docs/CREDIT.md): long runs of the leader model
(node.sim.leader_model: the real consensus.leader and consensus.credit code driven by
round outcomes) and shorter runs of the full simulator."""

from __future__ import annotations

import msgspec
import pytest

from consensus.config import ConsensusParams
from node.sim.config import SimConfig
from node.sim.leader_model import Fault, LeaderModelConfig, run_leader_model
from node.sim.result import fairness, gini
from node.sim.runner import Simulation
from tests.sim.conftest import explain
from tests.sim.test_sim_scenarios import plan

ROUNDS = 100_000
CREDIT = ConsensusParams().credit
WINDOW_ROUNDS = CREDIT.window_buckets * CREDIT.window_bucket_rounds
RECOVERY_ROUNDS = WINDOW_ROUNDS + ConsensusParams().leader_history_lag_rounds
"""Stated in docs/CREDIT.md: full credit again at most this many rounds after the last failure."""
WARM_UP_ROUNDS = WINDOW_ROUNDS
"""Stated in docs/CREDIT.md: an always-silent validator leads < 1 % of the rounds after this."""


@pytest.mark.parametrize("nodes", [4, 7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_honest_validators_lead_within_one_point_of_fair(nodes, seed):
    """Setup: n equally reliable validators, 100,000 rounds. Check: every leader share
    is within ±1 point of 1/n and proposer rewards are near equal (Gini < 0.01)."""
    result = run_leader_model(LeaderModelConfig(nodes=nodes, seed=seed, rounds=ROUNDS))
    shares = result.shares()
    assert max(abs(s - 1 / nodes) for s in shares) < 0.01, shares
    assert gini(result.committed) < 0.01
    assert sum(result.failed) == 0


@pytest.mark.parametrize("nodes", [4, 7])
def test_two_percent_lost_rounds_do_not_unbalance_honest_validators(nodes):
    """Setup: every leader's round fails with 2 % probability (the network). Check:
    shares stay within ±1 point of 1/n: rare failures stay under the threshold."""
    result = run_leader_model(LeaderModelConfig(nodes=nodes, seed=3, rounds=ROUNDS, noise_percent=2))
    assert sum(result.failed) > ROUNDS // 100, "failures happened: something was tested"
    shares = result.shares()
    assert max(abs(s - 1 / nodes) for s in shares) < 0.01, shares


@pytest.mark.parametrize("nodes", [4, 7])
def test_half_silent_validator_leads_less_then_recovers_its_share(nodes):
    """Setup: validator 1 withholds half of its proposals until round 50,000, then is
    reliable. Check: while unreliable it leads under a fifth of its fair share; from
    RECOVERY_ROUNDS after it became reliable, its share is within ±1 point of 1/n."""
    reliable_from = ROUNDS // 2
    result = run_leader_model(LeaderModelConfig(nodes=nodes, seed=4, rounds=ROUNDS, faults=(
        Fault(index=1, silent_percent=50, until_round=reliable_from),)))
    while_failing = result.share(1, WARM_UP_ROUNDS + 1, reliable_from - 1)
    assert 0 < while_failing < 0.2 / nodes, while_failing
    recovered = result.share(1, reliable_from + RECOVERY_ROUNDS, ROUNDS)
    assert abs(recovered - 1 / nodes) < 0.01, recovered
    others = [result.share(i, reliable_from + RECOVERY_ROUNDS, ROUNDS) for i in range(nodes) if i != 1]
    assert max(abs(s - 1 / nodes) for s in others) < 0.01, others


@pytest.mark.parametrize("nodes", [4, 7])
@pytest.mark.parametrize("fault", [Fault(index=2, silent_percent=100), Fault(index=2, down=True)],
                         ids=["silent", "down"])
def test_always_silent_validator_leads_under_one_percent_after_warm_up(nodes, fault):
    """Setup: validator 2 never proposes (``down``: nor collects votes), 100,000 rounds.
    Check: after WARM_UP_ROUNDS it leads under 1 % of rounds (it still gets a few
    chances each time its failures leave the window), the others share the rest evenly."""
    result = run_leader_model(LeaderModelConfig(nodes=nodes, seed=5, rounds=ROUNDS, faults=(fault,)))
    share = result.share(2, WARM_UP_ROUNDS + 1)
    assert 0 < share < 0.01, share
    others = [result.share(i, WARM_UP_ROUNDS + 1) for i in range(nodes) if i != 2]
    assert max(others) - min(others) < 0.02, others


def test_equivocator_is_excluded_for_the_exclusion_window_after_its_evidence():
    """Setup: validator 3 equivocates whenever it leads, until round 20,000. Check: it
    leads under 1 % of the rounds up to then (excluded exclusion_rounds after each
    committed evidence) and its fair share once exclusion has run out."""
    stop = 20_000
    result = run_leader_model(LeaderModelConfig(nodes=4, seed=6, rounds=40_000, faults=(
        Fault(index=3, equivocate=True, until_round=stop),)))
    assert result.share(3, 1, stop) < 0.01
    assert abs(result.share(3, stop + CREDIT.exclusion_rounds + 20) - 0.25) < 0.02


def test_full_simulation_of_equal_validators_reports_fair_shares():
    """Setup: the full simulator, 4 honest validators, 1,500 rounds. Check: the
    reported fairness is what equal weights give (binomial spread only: max deviation
    under 3 σ ≈ 0.034, Gini of proposer rewards under 0.05), every credit is full."""
    result = Simulation(SimConfig(nodes=4, seed=5, rounds=1_500)).run()
    assert result.ok, explain(result)
    assert result.fairness.leader_share_max_deviation < 0.034, result.fairness
    assert result.fairness.proposer_reward_gini < 0.05, result.fairness
    assert result.credit == [CREDIT.full_credit] * 4


def test_full_simulation_silent_validator_leads_under_one_percent_after_warm_up():
    """Setup: the full simulator, validator 1 never sends its proposals, 1,500 rounds.
    Check: after its first failures it leads under 1 % of rounds; the honest fairness
    figure ignores it."""
    config = SimConfig(nodes=4, seed=5, rounds=1_500, byzantine=1, behaviour="silent")
    sim = Simulation(config, plan=plan(byzantine=(1,), fault_end_round=1_500))
    result = sim.run()
    assert result.ok, explain(result)
    warm_up = CREDIT.window_bucket_rounds
    late = [r for r, leader in sim.leaders.items() if leader == 1 and r > warm_up]
    assert len(late) < 0.01 * (result.rounds - warm_up), late
    assert result.fairness.leader_share_max_deviation < 0.05, result.fairness


def test_fairness_figures():
    assert gini([5, 5, 5, 5]) == 0.0
    assert gini([0, 0, 0, 8]) == pytest.approx(0.75)
    f = fairness([0.2, 0.3, 0.5, 0.0], proposed=[20, 30, 50, 0], honest=[0, 1, 3])
    assert f.leader_share_max_deviation == pytest.approx(0.1667, abs=1e-4)
    assert f.proposer_reward_gini == pytest.approx(gini([20, 30, 0]), abs=1e-4)


def test_leader_model_replays_exactly_from_its_seed():
    config = LeaderModelConfig(nodes=4, seed=9, rounds=3_000, noise_percent=5,
                               faults=(Fault(index=0, silent_percent=30),))
    first, again = run_leader_model(config), run_leader_model(config)
    assert first.leaders == again.leaders and first.credit == again.credit
    other = run_leader_model(msgspec.structs.replace(config, seed=10))
    assert other.leaders != first.leaders
