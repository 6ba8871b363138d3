"""A minimal in-memory ``NodeBackend`` over the real contracts, for API tests.

No consensus and no disk: ``submit`` does the admission the runtime does
(decode, verify the signature once, ``contracts.executor.check_tx``, bounded
pool), and ``commit_block`` executes the pool with ``apply_block`` as one
committed block with a given timestamp, then tells listeners. Tests drive time
explicitly through ``commit_block(timestamp_ms=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from consensus import codec, crypto
from consensus.types import Block, BlockHeader, QuorumCert, VoteData, payload_root
from contracts import errors, executor
from contracts import transactions as txs
from contracts.genesis import AccountEntry, Genesis, ValidatorEntry, default_market_params
from contracts.initial import initial_state as make_initial_state
from node.api.app import CommittedBlock, Overloaded, SubmitResult, TxLookup

T0_MS = 1_700_000_000_000
SLOT_MS = 10_000


def seed(name: str) -> bytes:
    return codec.digest(name.encode())


SIGNERS = {name: crypto.Signer(seed(name)) for name in (
    "grid", "gen", "cons", "pros", "ret", "val0", "val1", "val2", "val3", "stranger",
)}


def addr(name: str) -> str:
    return crypto.address(SIGNERS[name].public_key)


def make_genesis(chain_id: str = "test-chain", *, t0_ms: int = T0_MS, slot_ms: int = SLOT_MS) -> Genesis:
    validators = tuple(
        ValidatorEntry(name=f"val{i}", role="user", public_key=SIGNERS[f"val{i}"].public_key,
                       address=addr(f"val{i}"))
        for i in range(4)
    )
    accounts = tuple(
        AccountEntry(name=n, address=addr(n), public_key=SIGNERS[n].public_key, role=role,
                     balance_u=10**12)
        for n, role in (("grid", "grid"), ("gen", "generator"), ("cons", "consumer"), ("pros", "prosumer"),
                        ("ret", "retailer"))
    )
    return Genesis(
        chain_id=chain_id, genesis_time_ms=t0_ms, grid_operator=addr("grid"), validators=validators,
        accounts=accounts,
        market=default_market_params(slot_ms=slot_ms, gate_lead_ms=slot_ms // 5, meter_window_ms=slot_ms,
                                     p_min=0, p_max=1_000, grid_fee=0, p_short=1_000, p_long=0),
    )


_GENESIS_QC = QuorumCert(vote_data=VoteData(epoch=0, round=0, height=0, block_id=b"\0" * 32,
                                            parent_id=b"\0" * 32, parent_round=0))


class MemoryBackend:
    """``NodeBackend`` for tests: real admission and execution, no consensus."""

    node_name = "test-node"
    role = "user"
    node_id = 0

    def __init__(self, genesis: Genesis | None = None, *, capacity: int = 10_000) -> None:
        self.genesis = genesis or make_genesis()
        self.chain_id = self.genesis.chain_id
        self._state = make_initial_state(self.genesis)
        self.capacity = capacity
        self.pool: dict[bytes, bytes] = {}
        self.verified: set[bytes] = set()
        self.blocks: list[CommittedBlock] = []
        self.tx_index: dict[bytes, tuple[int, int, Any]] = {}
        self.listeners: list[Callable[[CommittedBlock], None]] = []
        self.now_ms = self.genesis.genesis_time_ms
        self.is_ready = True
        self.submit_calls = 0

    @property
    def state(self) -> Any:
        return self._state

    async def read_state(self) -> Any:
        return self._state

    def status(self) -> dict[str, Any]:
        return {"height": self._state.meta.height, "round": len(self.blocks), "leader": 0,
                "state_root": self._state.root.hex(), "peers": 3, "peer_validators": [1, 2, 3], "syncing": False,
                "mempool_size": len(self.pool)}

    async def submit(self, raw_txs: Sequence[bytes]) -> list[SubmitResult]:
        self.submit_calls += 1
        if len(self.pool) + len(raw_txs) > self.capacity:
            raise Overloaded("mempool is full")
        out = []
        for raw in raw_txs:
            try:
                stx = txs.decode_signed_tx(raw)
            except errors.TxError as exc:
                out.append(SubmitResult(None, exc.code, exc.message))
                continue
            if stx.tx_hash in self.pool or stx.tx_hash in self.tx_index:  # idempotent, as the runtime
                out.append(SubmitResult(stx.tx_hash))
                continue
            try:
                executor.check_tx(self._state, stx, now_ms=self.now_ms, check_signature=True)
            except errors.TxError as exc:
                out.append(SubmitResult(stx.tx_hash, exc.code, exc.message))
                continue
            self.verified.add(stx.tx_hash)
            self.pool[stx.tx_hash] = raw
            out.append(SubmitResult(stx.tx_hash))
        return out

    async def tx_status(self, tx_hash: bytes) -> TxLookup | None:
        if tx_hash in self.pool:
            return TxLookup(status="pending")
        found = self.tx_index.get(tx_hash)
        if found is None:
            return None
        height, index, receipt = found
        return TxLookup(status="committed" if receipt.ok else "failed", height=height, index=index,
                        receipt=receipt)

    async def block(self, height: int | None) -> CommittedBlock | None:
        if height is None:
            return self.blocks[-1] if self.blocks else None
        return self.blocks[height - 1] if 1 <= height <= len(self.blocks) else None

    async def receipt_leaves(self, height: int) -> list[bytes] | None:
        return list(self.blocks[height - 1].leaves) if 1 <= height <= len(self.blocks) else None

    def add_listener(self, listener: Callable[[CommittedBlock], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def ready(self) -> bool:
        return self.is_ready

    def healthy(self) -> bool:
        return True

    # --- test driver ---------------------------------------------------------------------

    def commit_block(self, *, timestamp_ms: int | None = None) -> CommittedBlock:
        """Execute everything pending as the next block at ``timestamp_ms``."""
        ts = max(self.now_ms, self._state.meta.timestamp_ms + 1) if timestamp_ms is None else timestamp_ms
        self.now_ms = ts
        payload = tuple(self.pool.values())
        self.pool.clear()
        height = self._state.meta.height + 1
        _, receipts, result = executor.apply_block(
            self._state,
            executor.BlockInput(height=height, round=height, timestamp_ms=ts, proposer=0,
                                voters=(0, 1, 2), txs=list(payload)),
            verified=self.verified,
        )
        header = BlockHeader(epoch=0, round=height, height=height, parent_qc=_GENESIS_QC, author=0,
                             timestamp_ms=ts, tx_root=payload_root(payload), executed_height=height - 1,
                             executed_state_root=b"\0" * 32)
        block = Block(header=header, payload=payload)
        committed = CommittedBlock(block=block, block_id=codec.digest_of(header),
                                   state_root=result.state_root, receipts_root=result.receipts_root,
                                   receipts=tuple(receipts), leaves=result.leaves)
        self.blocks.append(committed)
        for receipt in receipts:
            self.tx_index[receipt.tx_hash] = (height, receipt.index, receipt)
        for listener in list(self.listeners):
            listener(committed)
        return committed


async def autocommit(backend: MemoryBackend, *, interval_s: float = 0.02, empty_every_ms: int = 100) -> None:
    """Commit a block with wall-clock time whenever transactions are pending, and an
    empty one every ``empty_every_ms`` (so system steps run, as on a live chain)."""
    import asyncio
    import time

    while True:
        await asyncio.sleep(interval_s)
        backend.now_ms = time.time_ns() // 1_000_000
        if backend.pool or backend.now_ms - backend.state.meta.timestamp_ms >= empty_every_ms:
            backend.commit_block(timestamp_ms=max(backend.now_ms, backend.state.meta.timestamp_ms + 1))


def signed(name: str, body: Any, *, nonce: int, chain_id: str = "test-chain",
           expires_at_ms: int = T0_MS + 10**9, sender: str | None = None) -> bytes:
    """Raw signed tx of ``body`` by the test key ``name``."""
    signer = SIGNERS[name]
    tx = txs.Tx(chain_id=chain_id, sender=sender or crypto.address(signer.public_key),
                public_key=signer.public_key, nonce=nonce, expires_at_ms=expires_at_ms, body=body)
    return txs.sign_tx(tx, signer)
