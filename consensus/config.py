"""Consensus and credit parameters, carried in genesis. Every field is documented
where it is defined; the defaults are the ones a production consortium starts from."""

from __future__ import annotations

import msgspec


class CreditParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """C-LBFT credit rules (DESIGN.md §4, docs/CREDIT.md): leader weight from reliability
    in a recent window of committed rounds. Credit changes only through committed evidence."""

    full_credit: int = 1_000
    """Credit (leader weight) of every validator that is reliable in the window, and in genesis."""
    window_bucket_rounds: int = 250
    """Committed rounds per bucket of the reliability window."""
    window_buckets: int = 4
    """Buckets in the window; failures are forgotten with their bucket, at most
    ``window_buckets × window_bucket_rounds`` committed rounds after they happened."""
    failure_threshold_percent: int = 10
    """A validator whose failed rounds exceed this share of its window sample has credit 0."""
    min_sample_rounds: int = 20
    """The sample is ``max(led + failed, this)``: so few rounds do not make one failure a verdict."""
    max_failure_streak: int = 3
    """Credit 0 after this many failures in a row (no committed block of its own in
    between), until the latest leaves the window."""
    exclusion_rounds: int = 1_000
    """After committed equivocation evidence, the culprit is not elected leader for this many rounds."""
    leader_threshold: int = 1
    """Validators with credit below this are never elected leader (unless all are)."""

    def problems(self) -> list[str]:
        """What makes these parameters unusable (empty when they are fine)."""
        found = []
        if self.full_credit < 1 or not 1 <= self.leader_threshold <= self.full_credit:
            found.append("credit: need 1 <= leader_threshold <= full_credit")
        if self.window_bucket_rounds < 1 or self.window_buckets < 1:
            found.append("credit: window_bucket_rounds and window_buckets must be >= 1")
        if not 0 <= self.failure_threshold_percent <= 100 or self.min_sample_rounds < 1:
            found.append("credit: need 0 <= failure_threshold_percent <= 100 and min_sample_rounds >= 1")
        if self.max_failure_streak < 1:
            found.append("credit: max_failure_streak must be >= 1")
        if self.exclusion_rounds < 0:
            found.append("credit: exclusion_rounds must be >= 0")
        return found


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
