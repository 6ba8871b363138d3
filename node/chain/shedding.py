"""Overload shedding: refuse a submission before the backlog means seconds of waiting.

A transaction admitted now waits behind every transaction already pending (the
mempool holds all of them until they commit, whichever validator got them). At the
recent commit rate R (tx/s) a backlog of P pending transactions takes P / R seconds
to drain, so admission refuses an API batch of B more (503 ``mempool_full`` with
Retry-After, ``node.chain.admission``) when

    P + B > max(FLOOR_TXS, R × MAX_WAIT_S)

or when transactions this node admitted recently took more than ``MAX_LATENCY_S``
from admission to execution on average (over the last one to two seconds, fed by
the execution pipeline; an average, so one transaction stuck behind a long block
does not shut the door): that catches the queues the mempool depth does not show — gossip
batches waiting for signature checks, a consensus round stalled behind them, blocks
waiting for execution. Either way the client backs off while the chain drains at full
speed, instead of queueing for ever longer (a saturated node used to accept 76,000 transactions and commit
them 10–18 s later). ``MAX_WAIT_S`` leaves room for the commit pipeline itself
(proposal, three-chain commit, execution: ~0.5 s) within a 2 s latency budget.
``FLOOR_TXS`` is always allowed, so an idle or starting chain (no commit rate yet)
takes load, and the rate it then commits sets the limit.

Both limits are node settings (``shed_backlog_ms``, ``shed_latency_ms``; 0 turns one off).
R is measured over the last ``WINDOW_S`` from ``Mempool.committed_total`` samples
taken at each submission. Gossiped transactions are never shed (another validator
accepted them already); the mempool's own capacity still bounds them.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

MAX_WAIT_S = 1.5
MAX_LATENCY_S = 1.5
FLOOR_TXS = 1_000
WINDOW_S = 5.0
MIN_SPAN_S = 1.0
"""A rate needs samples at least this far apart."""
SAMPLE_EVERY_S = 0.1


class BacklogGate:
    """The shedding rule; see the module docstring."""

    def __init__(self, *, max_wait_s: float = MAX_WAIT_S, floor_txs: int = FLOOR_TXS, window_s: float = WINDOW_S,
                 max_latency_s: float = MAX_LATENCY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_wait_s = max_wait_s
        self.max_latency_s = max_latency_s
        self.floor_txs = floor_txs
        self.window_s = window_s
        self.clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._latency_second = 0
        self._latency = [[0.0, 0], [0.0, 0]]
        """[sum, count] of admission-to-execution latencies in the previous and the current second."""

    def observe_latency(self, seconds: float) -> None:
        """An admitted transaction was executed ``seconds`` after its admission."""
        second = int(self.clock())
        if second != self._latency_second:
            previous = self._latency[1] if second == self._latency_second + 1 else [0.0, 0]
            self._latency = [previous, [0.0, 0]]
            self._latency_second = second
        current = self._latency[1]
        current[0] += seconds
        current[1] += 1

    def recent_latency(self) -> float:
        """Mean latency observed in this second and the one before (0 when older or none)."""
        second = int(self.clock())
        if second == self._latency_second:
            parts = self._latency
        elif second == self._latency_second + 1:
            parts = self._latency[1:]
        else:
            return 0.0
        count = sum(int(n) for _, n in parts)
        return sum(s for s, _ in parts) / count if count else 0.0

    def observe(self, committed_total: int) -> None:
        """Record the running count of committed transactions now."""
        now = self.clock()
        if not self._samples or now - self._samples[-1][0] >= SAMPLE_EVERY_S:
            self._samples.append((now, committed_total))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def rate(self) -> float:
        """Committed tx/s over the window (0 while unknown)."""
        if len(self._samples) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        span = t1 - t0
        return (c1 - c0) / span if span >= MIN_SPAN_S else 0.0

    def allowed(self) -> int:
        """Pending transactions worth at most ``max_wait_s`` of commits."""
        return max(self.floor_txs, int(self.rate() * self.max_wait_s))

    def refuse(self, *, pending: int, incoming: int, committed_total: int) -> float:
        """0.0 to admit ``incoming`` more; otherwise the seconds to wait before retrying (≥ 1)."""
        self.observe(committed_total)
        if self.max_latency_s > 0 and self.recent_latency() > self.max_latency_s:
            return 1.0
        if self.max_wait_s <= 0 or pending + incoming <= self.allowed():
            return 0.0
        allowed = self.allowed()
        rate = self.rate()
        excess = pending + incoming - allowed
        return float(min(5, max(1, math.ceil(excess / rate)))) if rate > 0 else 1.0
