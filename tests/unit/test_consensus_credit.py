"""The credit rule (consensus.credit): leader weight from reliability in a sliding
window of committed rounds — equal for the reliable, 0 for the failing, back to full
once failures leave the window; equivocators excluded; rewards play no part."""

from __future__ import annotations

import msgspec
import pytest

from consensus.config import ConsensusParams, CreditParams
from consensus.credit import (
    CreditState,
    apply_committed_block,
    initial_credit,
    reliability_credit,
    window_totals,
)
from contracts.genesis import GenesisError, validate_genesis
from tests.unit.contracts.helpers import Chain

PARAMS = CreditParams()
FULL = PARAMS.full_credit
WINDOW_ROUNDS = PARAMS.window_buckets * PARAMS.window_bucket_rounds


def _commit(state: CreditState, round: int, proposer: int, failed: tuple[int, ...] = (),
            equivocations: tuple[tuple[int, int], ...] = ()) -> CreditState:
    return apply_committed_block(state, PARAMS, round=round, proposer=proposer,
                                 failed_authors=failed, equivocations=equivocations)


@pytest.mark.parametrize(("led", "failed", "credit"), [
    (0, 0, FULL),       # never seen: innocent until proven otherwise
    (0, 1, 0),          # only failed in the window
    (1, 1, FULL),       # 1 of the floor of 20 is 5 %: one early failure is not a verdict
    (17, 2, FULL),      # 2 of 20 is 10 %: not above the threshold
    (17, 3, 0),         # 3 of 20 is 15 %
    (180, 20, FULL),    # 10 % exactly
    (179, 21, 0),       # 10.5 %
])
def test_reliability_rule(led, failed, credit):
    assert reliability_credit(led, failed, PARAMS) == credit


def test_equally_reliable_validators_keep_exactly_equal_credit_however_lucky():
    """Setup: validator 0 proposes 3 of every 4 blocks in rounds 1..9,999 (luck).
    Check: every credit stays full and equal — leading earns rewards, never weight —
    and the window holds exactly the last 1,000 rounds (buckets 36..39)."""
    state = initial_credit(4, PARAMS)
    for round in range(1, 10_000):
        state = _commit(state, round, proposer=0 if round % 4 else round // 4 % 4)
        assert state.credits == (FULL,) * 4
    led, failed = window_totals(state)
    assert sum(led) == WINDOW_ROUNDS and failed == (0,) * 4


def test_only_the_last_failed_author_of_a_block_is_charged():
    """A block names rounds 7 (leader 1) and 8 (leader 2) as failed: round 7 may have
    failed only because 2 did not collect its votes, so only 2 is charged."""
    state = _commit(initial_credit(4, PARAMS), 9, proposer=3, failed=(1, 2))
    assert window_totals(state) == ((0, 0, 0, 1), (0, 0, 1, 0))
    assert state.credits == (FULL, FULL, 0, FULL)


def test_failures_leave_with_their_bucket_within_the_stated_recovery_bound():
    """Setup: validator 1 fails in round f; every later round commits with a reliable
    proposer. Check: its credit is 0 until the committed round reaches
    (f // bucket + buckets) × bucket — at most buckets × bucket rounds after f — and
    full from then on."""
    bucket = PARAMS.window_bucket_rounds
    for f in (1, 249, 250, 777):
        state = initial_credit(4, PARAMS)
        for round in range(1, f):
            state = _commit(state, round, proposer=round % 4 if round % 4 != 1 else 0)
        state = _commit(state, f + 1, proposer=0, failed=(1,))
        assert state.credits[1] == 0
        back = None
        for round in range(f + 2, f + WINDOW_ROUNDS + 2):
            state = _commit(state, round, proposer=2)
            if back is None and state.credits[1] == FULL:
                back = round
            assert (state.credits[1] == FULL) == (back is not None), "never 0 again once back"
        assert back == ((f + 1) // bucket + PARAMS.window_buckets) * bucket
        assert back - f <= WINDOW_ROUNDS + 1


def test_a_reliable_history_absorbs_rare_failures_up_to_the_threshold():
    """Setup: validator 0 leads 100 rounds successfully, then alternates a failure and
    a success. Check: full credit while failures are at most 10 % of its window
    sample, 0 as soon as they are more."""
    state = initial_credit(4, PARAMS)
    for round in range(1, 101):
        state = _commit(state, round, proposer=0)
    round = 100
    for k in range(1, 40):
        state = _commit(state, round := round + 2, proposer=1, failed=(0,))
        led, failed = window_totals(state)
        assert state.credits[0] == (FULL if failed[0] * 10 <= led[0] + failed[0] else 0), k
        if state.credits[0] == 0:
            break
        state = _commit(state, round := round + 1, proposer=0)
    assert state.credits[0] == 0 and k == 13  # 13 failed of 125 rounds is 10.4 %


def test_a_failing_streak_excludes_at_once_and_a_committed_block_ends_it():
    """Setup: validator 0 has a long good record, then fails twice in a row, leads
    once, fails three times in a row. Check: full credit until the third failure in a
    row (``max_failure_streak``), although 5 of its 206 rounds is far below 10 %."""
    state = initial_credit(4, PARAMS)
    for round in range(1, 201):
        state = _commit(state, round, proposer=0)
    state = _commit(state, 202, proposer=1, failed=(0,))
    state = _commit(state, 204, proposer=1, failed=(0,))
    assert state.credits[0] == FULL
    state = _commit(state, 205, proposer=0)
    for k, round in enumerate((207, 209, 211), start=1):
        state = _commit(state, round, proposer=1, failed=(0,))
        assert state.credits[0] == (0 if k == PARAMS.max_failure_streak else FULL)


def test_equivocator_is_excluded_once_per_round_of_evidence_and_then_readmitted():
    state = _commit(initial_credit(4, PARAMS), 10, proposer=1, equivocations=((2, 9),))
    until = 10 + PARAMS.exclusion_rounds
    assert state.excluded_until_round[2] == until and state.credits[2] == 0
    again = _commit(state, 500, proposer=1, equivocations=((2, 9),))
    assert again.excluded_until_round[2] == until, "the same evidence is not punished twice"
    later = _commit(again, until, proposer=1)
    assert later.credits[2] == FULL and later.punished == ()


def test_window_memory_is_bounded():
    state = initial_credit(7, PARAMS)
    for round in range(1, 5_000, 3):
        state = _commit(state, round, proposer=round % 7, failed=(round % 5,))
    assert len(state.window) == PARAMS.window_buckets


@pytest.mark.parametrize("bad", [
    {"window_bucket_rounds": 0}, {"window_buckets": 0}, {"failure_threshold_percent": 101},
    {"min_sample_rounds": 0}, {"leader_threshold": 0}, {"leader_threshold": 1_001},
    {"max_failure_streak": 0},
])
def test_genesis_rejects_unusable_credit_parameters(bad):
    chain = Chain()
    genesis = msgspec.structs.replace(chain.genesis, consensus=ConsensusParams(credit=CreditParams(**bad)))
    with pytest.raises(GenesisError, match="credit"):
        validate_genesis(genesis)

