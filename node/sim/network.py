"""The simulated network: seeded delays, loss, duplication, reordering, partitions.

Endpoints are simulator *instances* (a validator index can have two instances
when it is twinned). ``plan(src, dst)`` answers, for one message, after how many
milliseconds each copy arrives: an empty list means the message is lost, two
entries mean it was duplicated. Reordering is a consequence of independent
delays. A partition is a list of groups; a message crosses only inside a group,
checked both when it is sent and when it would arrive, so a message in flight
when the network splits is lost too.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

TAIL_PERCENT = 3
"""Share of messages that take a long-tail delay (between max and 10 x max)."""


class NetworkModel:
    """Seeded per-message fate. One instance per run; never touches a real socket."""

    def __init__(
        self,
        rng: random.Random,
        *,
        min_delay_ms: int,
        max_delay_ms: int,
        loss_percent: int,
        duplicate_percent: int,
        extra_delay_ms: int = 0,
    ) -> None:
        assert 0 <= min_delay_ms <= max_delay_ms
        self._rng = rng
        self.min_delay_ms = min_delay_ms
        self.max_delay_ms = max_delay_ms
        self.loss_percent = loss_percent
        self.duplicate_percent = duplicate_percent
        self.extra_delay_ms = extra_delay_ms
        """Up to this much more delay per message (asynchrony); set to 0 when faults stop."""
        self._group_of: dict[int, int] | None = None
        self.sent = 0
        """Messages handed to the network (one per destination instance)."""
        self.lost = 0
        """Messages dropped by loss or by a partition."""
        self.duplicated = 0
        """Extra copies delivered."""

    # -- partitions ---------------------------------------------------------
    def split(self, groups: Sequence[Iterable[int]]) -> None:
        """Partition the instances into ``groups``; instances in no group are isolated."""
        group_of: dict[int, int] = {}
        for number, group in enumerate(groups):
            for instance in group:
                assert instance not in group_of, "an instance is in two groups"
                group_of[instance] = number
        self._group_of = group_of

    def heal(self) -> None:
        """Remove the partition: everyone reaches everyone again."""
        self._group_of = None

    @property
    def partitioned(self) -> bool:
        return self._group_of is not None

    def connected(self, src: int, dst: int) -> bool:
        if self._group_of is None or src == dst:
            return True
        a = self._group_of.get(src)
        return a is not None and a == self._group_of.get(dst)

    # -- one message --------------------------------------------------------
    def _delay_ms(self) -> int:
        delay = self._rng.randint(self.min_delay_ms, self.max_delay_ms)
        if self._rng.randrange(100) < TAIL_PERCENT:
            delay += self._rng.randint(self.max_delay_ms, 10 * self.max_delay_ms)
        if self.extra_delay_ms:
            delay += self._rng.randint(0, self.extra_delay_ms)
        return delay

    def plan(self, src: int, dst: int) -> list[int]:
        """Delays (ms) of the copies of one message from ``src`` to ``dst`` that arrive."""
        self.sent += 1
        # Draw every random number whatever the outcome, so one message's fate
        # never shifts the random stream of the next (schedules stay comparable).
        lost = self._rng.randrange(100) < self.loss_percent
        duplicated = self._rng.randrange(100) < self.duplicate_percent
        delays = [self._delay_ms(), self._delay_ms()]
        if lost or not self.connected(src, dst):
            self.lost += 1
            return []
        if duplicated:
            self.duplicated += 1
            return delays
        return delays[:1]
