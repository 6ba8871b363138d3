"""Execution context shared by the contract handlers of one block."""

from __future__ import annotations

from typing import Any

from consensus import codec
from contracts.state import Location, State


class BlockContext:
    """The block being executed: its time and height, and the leaves it has emitted."""

    __slots__ = ("height", "leaves", "state", "timestamp_ms", "tx_index")

    def __init__(self, state: State, *, height: int, timestamp_ms: int) -> None:
        self.state = state
        self.height = height
        self.timestamp_ms = timestamp_ms
        self.leaves: list[bytes] = []
        """Canonical bytes of each record, in leaf order."""
        self.tx_index = -1
        """Index of the transaction being applied (-1 during system steps)."""

    def emit(self, record: Any) -> Location:
        """Append ``record`` as the next leaf and return where it will be proven."""
        self.leaves.append(codec.encode(record))
        return Location(self.height, len(self.leaves) - 1)

    def mark(self) -> int:
        return len(self.leaves)

    def truncate(self, mark: int) -> None:
        del self.leaves[mark:]
