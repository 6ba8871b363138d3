"""The pacemaker: which round this node is in and when it gives up on it.

A round ends when the node learns a QC or a TC for it (``advance``). The round's
timeout is ``base × 1.2^min(6, rounds_since_commit)`` computed in integers
(``timeout_backoff_percent``), so a network that keeps failing slows down
geometrically, but never by more than 1.2^6 ≈ 3×, and snaps back after a commit.
The core learns the time only from ``Tick``: on entering a round it asks for an
immediate Tick (``ScheduleTick`` at the last known time) and counts the round's
deadline from that fresh time.
When the deadline passes the core signs and broadcasts a timeout; if it is still
in the same round at the next deadline it re-broadcasts the same timeout (lost
messages must not stall the network). Time only arrives as ``Tick`` events.

Timeouts are broadcast to everyone and carry sync info, so a node that sees a
timeout for a round above its own first jumps there on the certificate the sync
info carries; ``f + 1`` timeouts for its current round (at least one from an honest
node) make it time out too without waiting for its own deadline, and ``2f + 1``
form a TC (``consensus.aggregator``) that moves everyone to the next round.
"""

from __future__ import annotations

from consensus.config import ConsensusParams
from consensus.types import Round


def round_timeout_ms(params: ConsensusParams, rounds_since_commit: int) -> int:
    """``round_timeout_ms × (percent/100)^min(max_exponent, rounds_since_commit)``, in integers."""
    exponent = max(0, min(params.max_backoff_exponent, rounds_since_commit))
    return params.round_timeout_ms * params.timeout_backoff_percent**exponent // 100**exponent


class Pacemaker:
    """Current round and its deadline."""

    __slots__ = ("_params", "clock_stale", "deadline_ms", "now_ms", "round", "started",
                 "timeouts_sent_round")

    def __init__(self, *, params: ConsensusParams, round: Round) -> None:
        self._params = params
        self.round: Round = round
        self.now_ms = 0
        self.deadline_ms = 0
        self.started = False
        """False until the first Tick tells the time."""
        self.timeouts_sent_round: Round = 0
        """The round this node last timed out in (it re-sends, never re-signs)."""
        self.clock_stale = False
        """True when the round changed since the last Tick: the core only knows the time
        of that Tick, so it asks for a fresh one and sets the deadline from it."""

    def timeout_ms(self, committed_round: Round) -> int:
        # In the happy path round r is entered when block r-2 commits: that is no backoff.
        return round_timeout_ms(self._params, self.round - committed_round - 2)

    def start(self, now_ms: int, committed_round: Round) -> None:
        self.started = True
        self.now_ms = max(self.now_ms, now_ms)
        self.deadline_ms = self.now_ms + self.timeout_ms(committed_round)

    def tick(self, now_ms: int) -> bool:
        """Advance the clock; True if the current round's deadline has passed."""
        self.now_ms = max(self.now_ms, now_ms)
        return self.started and self.now_ms >= self.deadline_ms

    def advance(self, round: Round, committed_round: Round) -> bool:
        """Enter ``round`` if it is higher than the current one; returns whether it did."""
        if round <= self.round:
            return False
        self.round = round
        # Provisional (the clock is stale); ``refresh`` sets the real deadline on the next Tick.
        self.deadline_ms = self.now_ms + self.timeout_ms(committed_round)
        self.clock_stale = True
        return True

    def refresh(self, committed_round: Round) -> None:
        """The first Tick after a round change: count the round's timeout from now."""
        self.clock_stale = False
        self.deadline_ms = self.now_ms + self.timeout_ms(committed_round)

    def restart_deadline(self, committed_round: Round) -> None:
        """After a local timeout: wait one more timeout before re-sending it."""
        self.deadline_ms = self.now_ms + self.timeout_ms(committed_round)
