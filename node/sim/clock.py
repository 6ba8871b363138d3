"""The simulator's virtual clock: one heap of events ordered by (virtual time, sequence number).

The sequence number breaks ties in push order, so two events at the same virtual
instant are processed in the order they were scheduled: a seed replays exactly.
"""

from __future__ import annotations

import heapq
from typing import Any

START_MS = 1_000
"""Virtual time of the first tick (genesis is at 0)."""
MAX_CLOCK_OFFSET_MS = 500
"""Each validator's clock runs ahead of virtual time by a fixed 0..this ms."""

# Event kinds.
DELIVER, TICK, PAYLOAD, RESTART, HEAL_PARTITION = range(5)

Event = tuple[int, int, int, int, int, Any]
"""(at_ms, sequence number, kind, target instance id, incarnation, payload)."""


class EventQueue:
    """The pending events of one run, earliest first."""

    def __init__(self) -> None:
        self._heap: list[Event] = []
        self._seq = 0

    def __bool__(self) -> bool:
        return bool(self._heap)

    def push(self, at_ms: int, kind: int, target: int, incarnation: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at_ms, self._seq, kind, target, incarnation, payload))

    def pop(self) -> Event:
        return heapq.heappop(self._heap)
