"""C-LBFT credit: the "C" in C-LBFT — who may lead, judged by recent reliability.

Theory of operation (the reasoning and the measured numbers are in docs/CREDIT.md).
A validator's credit is its weight in leader election. It is computed only from
committed blocks, so every honest node computes the same numbers and a replay from
genesis reproduces them exactly, and it depends only on how the validator behaved
as a leader in a recent *window* of committed rounds — never on rewards it earned:

* The window is ``window_buckets`` buckets of ``window_bucket_rounds`` committed
  rounds each (bucket ``b`` holds the blocks whose round is in
  ``[b × window_bucket_rounds, (b + 1) × window_bucket_rounds)``); a bucket leaves
  the window when the committed rounds reach ``window_buckets`` buckets past it.
* Per committed block, in its bucket: its proposer counts one round *led*, and the
  last failed author it names (the leader of the round right before the block, which
  ended in a TC) one round *failed*. The earlier failed rounds of a streak are not
  charged: a round also ends in a TC when the *next* leader is down (the votes go to
  it), so only the last one, followed by a leader that demonstrably works, is
  surely its own leader's failure.
* A validator's credit is ``full_credit`` unless, in the window, it has failed and
  never led, or its failures exceed ``failure_threshold_percent`` of
  ``max(led + failed, min_sample_rounds)``, or its last ``max_failure_streak``
  charged rounds all failed (no committed block of its own in between); then it is 0.
  The streak catches a validator with a long good record that goes down, which the
  ratio alone would let fail for a tenth of its window first. All reliable
  validators therefore carry exactly equal weight, whatever their luck so far: there
  is no loop in which leading raises the chance to lead.
* Each validator with committed equivocation evidence is excluded from leadership
  until ``round + exclusion_rounds`` (once per (validator, round) of evidence) and
  has credit 0 while excluded.

Recovery needs no rule of its own: failures leave the window with their bucket, so a
validator that stops failing has full credit again at most
``window_buckets × window_bucket_rounds`` committed rounds after the block that
charged its last failure (the streak is forgotten with it), and
one that is never heard from gets a few chances each time its failures expire.

Credit decides who may lead (``consensus.leader``); it never changes the weight of
a vote: one validator, one vote. Block and vote rewards are paid in tokens by the
contracts' executor and do not enter credit at all.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from consensus.config import CreditParams


class WindowBucket(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Leader outcomes of the committed blocks in one bucket of rounds."""

    index: int
    """Bucket number: the blocks whose ``round // window_bucket_rounds`` is this."""
    led: tuple[int, ...]
    """Per validator: committed blocks it proposed."""
    failed: tuple[int, ...]
    """Per validator: times committed blocks named it as a failed author."""


class CreditState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Credit of every validator, indexed like the committee."""

    credits: tuple[int, ...]
    """Per validator: its weight in leader election (0 or ``full_credit``)."""
    excluded_until_round: tuple[int, ...]
    """Leadership exclusion per validator: not elected for rounds below this."""
    punished: tuple[tuple[int, int], ...] = ()
    """(validator, round) equivocations already punished, kept while within the exclusion window."""
    window: tuple[WindowBucket, ...] = ()
    """The buckets of the reliability window, oldest first (at most ``window_buckets``)."""
    streak: tuple[int, ...] = ()
    """Per validator: failures charged since its last committed block, while the latest
    of them is still in the window (empty: all 0)."""
    streak_bucket: tuple[int, ...] = ()
    """Per validator: the bucket of the latest failure counted in ``streak``."""


def initial_credit(validator_count: int, params: CreditParams) -> CreditState:
    return CreditState(
        credits=(params.full_credit,) * validator_count,
        excluded_until_round=(0,) * validator_count,
    )


def reliability_credit(led: int, failed: int, params: CreditParams) -> int:
    """Credit of a validator that led ``led`` and failed ``failed`` rounds in the window:
    0 if it only failed (``failed > 0 == led``) or if
    ``failed > failure_threshold_percent % × max(led + failed, min_sample_rounds)``,
    else ``full_credit``. The sample floor keeps one early network failure from
    excluding a validator that has few rounds behind it but did lead successfully."""
    if failed == 0:
        return params.full_credit
    if led == 0:
        return 0
    sample = max(led + failed, params.min_sample_rounds)
    return 0 if failed * 100 > params.failure_threshold_percent * sample else params.full_credit


def window_totals(state: CreditState) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(led, failed) per validator, summed over the window."""
    return _totals(state.window, len(state.credits))


def _totals(window: Iterable[WindowBucket], n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    led, failed = [0] * n, [0] * n
    for bucket in window:
        led = [a + b for a, b in zip(led, bucket.led, strict=True)]
        failed = [a + b for a, b in zip(failed, bucket.failed, strict=True)]
    return tuple(led), tuple(failed)


def apply_committed_block(
    state: CreditState,
    params: CreditParams,
    *,
    round: int,
    proposer: int,
    failed_authors: Iterable[int],
    equivocations: Iterable[tuple[int, int]] = (),
) -> CreditState:
    """Credit after one committed block of ``round`` (see the module docstring).

    ``failed_authors`` are the leaders of the failed rounds the block names, in round
    order; only the last is charged a failure. ``equivocations`` are (validator,
    round) pairs proven by evidence the block carries; a pair already punished is
    ignored, so evidence repeated in a later block is not punished twice.
    """
    n = len(state.credits)
    failed_authors = list(failed_authors)
    assert 0 <= proposer < n, "proposer index outside the committee"
    assert all(0 <= a < n for a in failed_authors), "failed author outside the committee"
    charged = failed_authors[-1:]
    index = round // params.window_bucket_rounds
    assert not state.window or state.window[-1].index <= index, "committed rounds must increase"

    window = [b for b in state.window if b.index > index - params.window_buckets]
    if window and window[-1].index == index:
        current = window.pop()
        led, failed = list(current.led), list(current.failed)
    else:
        led, failed = [0] * n, [0] * n
    led[proposer] += 1
    for author in charged:
        failed[author] += 1
    window.append(WindowBucket(index=index, led=tuple(led), failed=tuple(failed)))

    streak = list(state.streak) or [0] * n
    streak_bucket = list(state.streak_bucket) or [0] * n
    streak[proposer] = 0
    for author in charged:
        streak[author] += 1
        streak_bucket[author] = index
    for i in range(n):
        if streak_bucket[i] <= index - params.window_buckets:
            streak[i] = 0  # its latest failure left the window with its bucket

    excluded = list(state.excluded_until_round)
    punished = set(state.punished)
    for culprit, culprit_round in sorted(set(equivocations)):
        assert 0 <= culprit < n, "equivocator outside the committee"
        if (culprit, culprit_round) in punished:
            continue
        punished.add((culprit, culprit_round))
        excluded[culprit] = max(excluded[culprit], round + params.exclusion_rounds)

    led_total, failed_total = _totals(window, n)
    credits = tuple(
        0 if excluded[i] > round or streak[i] >= params.max_failure_streak
        else reliability_credit(led_total[i], failed_total[i], params)
        for i in range(n)
    )
    # Bound the memory of punished pairs to the exclusion window.
    horizon = round - params.exclusion_rounds
    return CreditState(
        credits=credits,
        excluded_until_round=tuple(excluded),
        punished=tuple(sorted(p for p in punished if p[1] >= horizon)),
        window=tuple(window),
        streak=tuple(streak),
        streak_bucket=tuple(streak_bucket),
    )


def eligible_leaders(state: CreditState, params: CreditParams, round: int) -> list[int]:
    """Validators that may lead ``round``: not excluded, credit at or above the threshold.

    If that leaves nobody (every validator failing at once, e.g. after a partition),
    everyone not excluded is eligible, and if still nobody, everyone: liveness must
    not depend on credit.
    """
    not_excluded = [i for i, until in enumerate(state.excluded_until_round) if until <= round]
    eligible = [i for i in not_excluded if state.credits[i] >= params.leader_threshold]
    return eligible or not_excluded or list(range(len(state.credits)))
