"""The node's public REST API (versioned ``/v1``) on top of a ``NodeBackend``.

Theory of operation: the runtime (``node.service``) owns the chain; this module
only translates HTTP to calls on the small ``NodeBackend`` protocol below and
contracts' read-side queries to JSON. The API never mutates state except through
``NodeBackend.submit``. Every error is ``{"error": {"code", "message"}}`` with a
4xx/5xx status and a stable ``code``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import msgspec

from consensus.types import Block, QuorumCert


class SubmitResult(msgspec.Struct, frozen=True):
    """Admission outcome of one raw transaction."""

    tx_hash: bytes | None
    """Digest of the raw signed bytes; None only when they could not be decoded."""
    code: str | None = None
    """None when accepted; otherwise a stable rejection code (contracts.errors)."""
    message: str = ""


class Overloaded(Exception):
    """The mempool cannot take the batch now (back-pressure): HTTP 503."""

    code = "mempool_full"


class TxLookup(msgspec.Struct, frozen=True):
    status: Literal["pending", "committed", "failed"]
    height: int | None = None
    index: int | None = None
    receipt: Any = None


class CommittedBlock(msgspec.Struct, frozen=True):
    """A committed and executed block with what execution produced."""

    block: Block
    block_id: bytes
    state_root: bytes
    receipts_root: bytes
    receipts: tuple[Any, ...] = ()
    commit_qc: QuorumCert | None = None


class NodeBackend(Protocol):
    """What the API needs from the runtime; see /work/notes/node-backend.md."""

    chain_id: str
    node_name: str
    role: str
    node_id: int
    genesis: Any

    @property
    def state(self) -> Any: ...

    def status(self) -> dict[str, Any]: ...

    async def submit(self, raw_txs: Sequence[bytes]) -> list[SubmitResult]: ...

    async def tx_status(self, tx_hash: bytes) -> TxLookup | None: ...

    async def block(self, height: int | None) -> CommittedBlock | None: ...

    async def receipt_leaves(self, height: int) -> list[bytes] | None: ...

    def add_listener(self, listener: Callable[[CommittedBlock], None]) -> Callable[[], None]: ...

    def ready(self) -> bool: ...

    def healthy(self) -> bool: ...
