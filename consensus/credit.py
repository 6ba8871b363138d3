"""C-LBFT credit: the "C" in C-LBFT.

Every validator has an integer credit that changes only through committed
evidence, so every honest node computes the same numbers and a replay from
genesis reproduces them exactly. Per committed block, in this order:

1. the proposer gains ``reward_propose``;
2. each signer of the QC the block carries gains ``reward_vote``;
3. each failed author the block names (a leader whose round ended in a TC)
   loses ``penalty_fail``;
4. each validator with committed equivocation evidence loses
   ``penalty_equivocate`` once per (validator, round) and is excluded from
   leadership until ``round + exclusion_rounds``;
5. every ``decay_every_blocks`` committed blocks each credit moves
   ``(baseline - credit) // decay_divisor`` towards the baseline (rounded towards
   the baseline, so it always converges);

and every credit is clamped to ``[minimum, maximum]`` after each step.

Credit decides who may lead (``consensus.leader``); it never changes the weight
of a vote: one validator, one vote.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from consensus.config import CreditParams


class CreditState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Credit of every validator, indexed like the committee."""

    credits: tuple[int, ...]
    """Current credit per validator."""
    excluded_until_round: tuple[int, ...]
    """Leadership exclusion per validator: not elected for rounds below this."""
    punished: tuple[tuple[int, int], ...] = ()
    """(validator, round) equivocations already penalised, kept while within the exclusion window."""
    blocks_since_decay: int = 0
    """Committed blocks since the last decay step."""


def initial_credit(validator_count: int, params: CreditParams) -> CreditState:
    return CreditState(
        credits=(params.initial,) * validator_count,
        excluded_until_round=(0,) * validator_count,
    )


def _clamp(value: int, params: CreditParams) -> int:
    return max(params.minimum, min(params.maximum, value))


def _decayed(credit: int, params: CreditParams) -> int:
    gap = params.baseline - credit
    step = gap // params.decay_divisor if gap >= 0 else -((-gap) // params.decay_divisor)
    return credit + step


def apply_committed_block(
    state: CreditState,
    params: CreditParams,
    *,
    round: int,
    proposer: int,
    voters: Iterable[int],
    failed_authors: Iterable[int],
    equivocations: Iterable[tuple[int, int]] = (),
) -> CreditState:
    """Credit after one committed block of ``round`` (see the module docstring).

    ``equivocations`` are (validator, round) pairs proven by evidence the block
    carries; a pair already penalised is ignored, so evidence repeated in a later
    block is not punished twice.
    """
    credits = list(state.credits)
    excluded = list(state.excluded_until_round)
    n = len(credits)
    assert 0 <= proposer < n, "proposer index outside the committee"

    credits[proposer] = _clamp(credits[proposer] + params.reward_propose, params)
    for voter in set(voters):
        assert 0 <= voter < n, "voter index outside the committee"
        credits[voter] = _clamp(credits[voter] + params.reward_vote, params)
    for author in failed_authors:
        assert 0 <= author < n, "failed author outside the committee"
        credits[author] = _clamp(credits[author] - params.penalty_fail, params)

    punished = set(state.punished)
    for culprit, culprit_round in sorted(set(equivocations)):
        assert 0 <= culprit < n, "equivocator outside the committee"
        if (culprit, culprit_round) in punished:
            continue
        punished.add((culprit, culprit_round))
        credits[culprit] = _clamp(credits[culprit] - params.penalty_equivocate, params)
        excluded[culprit] = max(excluded[culprit], round + params.exclusion_rounds)

    blocks_since_decay = state.blocks_since_decay + 1
    if blocks_since_decay >= params.decay_every_blocks:
        credits = [_clamp(_decayed(c, params), params) for c in credits]
        blocks_since_decay = 0

    # Bound the memory of punished pairs to the exclusion window.
    horizon = round - params.exclusion_rounds
    kept = tuple(sorted(p for p in punished if p[1] >= horizon))
    return CreditState(
        credits=tuple(credits),
        excluded_until_round=tuple(excluded),
        punished=kept,
        blocks_since_decay=blocks_since_decay,
    )


def eligible_leaders(state: CreditState, params: CreditParams, round: int) -> list[int]:
    """Validators that may lead ``round``: not excluded, credit at or above the threshold.

    If that leaves nobody (every validator punished at once), everyone not excluded
    is eligible, and if still nobody, everyone: liveness must not depend on credit.
    """
    not_excluded = [i for i, until in enumerate(state.excluded_until_round) if until <= round]
    eligible = [i for i in not_excluded if state.credits[i] >= params.leader_threshold]
    return eligible or not_excluded or list(range(len(state.credits)))
