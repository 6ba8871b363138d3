"""Consensus and credit parameters, carried in genesis. Every field is documented
where it is defined; the defaults are the ones a production consortium starts from."""

from __future__ import annotations

import msgspec


class CreditParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """C-LBFT credit rules (DESIGN.md §4). Credit changes only through committed evidence."""

    initial: int = 1_000
    """Credit every validator starts with in genesis."""
    baseline: int = 1_000
    """The value decay pulls credit towards."""
    minimum: int = 0
    """Lower bound; credit never goes below it."""
    maximum: int = 10_000
    """Upper bound; credit never goes above it."""
    reward_propose: int = 10
    """Added to the proposer of every committed block."""
    reward_vote: int = 2
    """Added to each signer of the QC a committed block carries."""
    penalty_fail: int = 100
    """Taken from each failed author (a leader whose round ended in a TC) named by a committed block."""
    penalty_equivocate: int = 2_000
    """Taken from a validator once per proven equivocation (two signed messages for one round)."""
    exclusion_rounds: int = 1_000
    """After committed equivocation evidence, the culprit is not elected leader for this many rounds."""
    decay_every_blocks: int = 100
    """Every this many committed blocks, each credit moves part of the way back to ``baseline``."""
    decay_divisor: int = 10
    """That part is ``(baseline - credit) // decay_divisor`` (integer, towards the baseline)."""
    leader_threshold: int = 200
    """Validators with credit below this are never elected leader (unless all are below)."""


class ConsensusParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Protocol parameters (DESIGN.md §4)."""

    round_timeout_ms: int = 1_000
    """Base round timeout; the pacemaker waits ``base × 1.2^min(6, rounds_since_commit)``."""
    timeout_backoff_percent: int = 120
    """The backoff factor in percent (120 = 1.2)."""
    max_backoff_exponent: int = 6
    """Cap on the backoff exponent."""
    max_block_txs: int = 5_000
    """Most transactions a proposal may carry."""
    max_block_bytes: int = 4 * 1024 * 1024
    """Most payload bytes a proposal may carry."""
    max_clock_drift_ms: int = 2_000
    """A proposal whose timestamp is further than this ahead of the voter's clock is not voted for."""
    leader_history_lag_rounds: int = 10
    """Leader of round r is elected from credit as of committed blocks up to round r - this lag."""
    max_fetch_blocks: int = 256
    """Most blocks one fetch request or response carries."""
    evidence_window_rounds: int = 1_000
    """Equivocation evidence older than this many rounds is no longer accepted into a block."""
    credit: CreditParams = CreditParams()
    """The credit and incentive rules."""
