"""The runtime's one wall clock (consensus and contracts never read a clock themselves)."""

from __future__ import annotations

import time


def now_ms() -> int:
    """The node's wall clock in ms: the one clock of the runtime."""
    return time.time_ns() // 1_000_000
