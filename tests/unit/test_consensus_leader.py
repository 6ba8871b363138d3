"""Credit-weighted leader election: frequencies follow credit, thresholds and
exclusions are respected, election is deterministic and lags committed history."""

from __future__ import annotations

import pytest

from consensus.config import CreditParams
from consensus.credit import CreditState
from consensus.leader import CreditSnapshot, LeaderHistory, elect

PARAMS = CreditParams()
ROUNDS = 10_000


def _state(credits: tuple[int, ...], excluded: tuple[int, ...] | None = None) -> CreditState:
    return CreditState(credits=credits, excluded_until_round=excluded or (0,) * len(credits))


@pytest.mark.parametrize("credits", [
    (1_000, 1_000, 1_000, 1_000),
    (1_000, 2_000, 3_000, 4_000),
    (500, 1_000, 1_000, 1_500, 2_000, 2_000, 2_000),
])
def test_leader_share_matches_credit_share_within_5_percent(credits):
    state = _state(credits)
    counts = [0] * len(credits)
    for round in range(1, ROUNDS + 1):
        counts[elect(state, PARAMS, round, b"committed-block-id")] += 1
    total = sum(credits)
    for i, credit in enumerate(credits):
        expected = ROUNDS * credit / total
        assert abs(counts[i] - expected) <= 0.05 * expected, (i, counts[i], expected)


def test_validators_below_threshold_or_excluded_never_lead():
    state = _state((1_000, PARAMS.leader_threshold - 1, 1_000, 1_000), excluded=(0, 0, 5_000, 0))
    leaders = {elect(state, PARAMS, r, b"seed") for r in range(1, 2_000)}
    assert leaders == {0, 3}
    after = {elect(state, PARAMS, r, b"seed") for r in range(5_000, 7_000)}
    assert after == {0, 2, 3}


def test_when_nobody_qualifies_someone_still_leads():
    state = _state((0, 0, 0, 0))
    assert {elect(state, PARAMS, r, b"s") for r in range(1, 500)} == {0, 1, 2, 3}


def test_election_is_deterministic_and_depends_on_the_seed():
    state = _state((1_000, 2_000, 3_000, 4_000))
    first = [elect(state, PARAMS, r, b"a") for r in range(1, 200)]
    assert first == [elect(state, PARAMS, r, b"a") for r in range(1, 200)]
    assert first != [elect(state, PARAMS, r, b"b") for r in range(1, 200)]


def test_history_elects_from_the_snapshot_lag_rounds_back():
    genesis = CreditSnapshot(round=0, block_id=b"g" * 32, credit=_state((1_000,) * 4))
    later = CreditSnapshot(round=100, block_id=b"x" * 32, credit=_state((1_000, 0, 0, 0)))
    history = LeaderHistory(params=PARAMS, lag_rounds=10, snapshots=[genesis, later])
    assert history.snapshot_for(109) == genesis
    assert history.snapshot_for(110) == later
    assert {history.leader(r) for r in range(110, 400)} == {0}, "only 0 qualifies after round 100"
    assert len({history.leader(r) for r in range(50, 110)}) > 1
