"""What the API needs from the runtime: the ``NodeBackend`` protocol and the types it answers with.

``node.chain.backend.Backend`` implements it for a running node; the API tests use an
in-memory one. The API reaches the chain only through this protocol.
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
    """Human-readable reason when rejected."""


class Overloaded(Exception):
    """The mempool cannot take the batch now (back-pressure): HTTP 503."""

    code = "mempool_full"


class TxLookup(msgspec.Struct, frozen=True):
    """Where a transaction is."""

    status: Literal["pending", "committed", "failed"]
    height: int | None = None
    """Height of the block that included it (committed or failed)."""
    index: int | None = None
    """Index of the transaction in that block's payload."""
    receipt: Any = None
    """The ``contracts.executor.Receipt`` once executed."""


class CommittedBlock(msgspec.Struct, frozen=True):
    """A committed and executed block with what execution produced."""

    block: Block
    block_id: bytes
    state_root: bytes
    """Contracts state root after executing this block."""
    receipts_root: bytes
    """Merkle root over this block's receipt/event leaves (contracts.traceability)."""
    receipts: tuple[Any, ...] = ()
    """``contracts.executor.Receipt`` per transaction, payload order; filled in listener events."""
    leaves: tuple[bytes, ...] = ()
    """``BlockResult.leaves`` (canonical record bytes); filled in listener events."""
    commit_qc: QuorumCert | None = None
    """The QC certifying this block, when known."""


class NodeBackend(Protocol):
    """What the API needs from the runtime (node/chain/backend.py; tests/unit/api_memory_backend.py)."""

    chain_id: str
    node_name: str
    role: str
    node_id: int
    genesis: Any
    """contracts.genesis.Genesis of the chain."""

    @property
    def state(self) -> Any:
        """Latest executed contracts state (read-only for the API)."""
        ...

    async def read_state(self) -> Any:
        """``state`` at a block boundary: waits while a block is being applied. Use the
        result without awaiting in between, so no later block can start under it."""
        ...

    def status(self) -> dict[str, Any]: ...

    async def submit(self, raw_txs: Sequence[bytes]) -> list[SubmitResult]: ...

    async def tx_status(self, tx_hash: bytes) -> TxLookup | None: ...

    async def block(self, height: int | None) -> CommittedBlock | None: ...

    async def receipt_leaves(self, height: int) -> list[bytes] | None: ...

    def add_listener(self, listener: Callable[[CommittedBlock], None]) -> Callable[[], None]: ...

    def ready(self) -> bool: ...

    def healthy(self) -> bool: ...

