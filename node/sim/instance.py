"""One simulated validator process: its core, its disk and its memory.

The *disk* (safety data, committed chain and blocks, restore point) survives a
crash and is cleared only by a wipe; the *memory* (uncommitted blocks it saw,
pending timers) is lost on every crash. ``incarnation`` changes on every crash
and restart so that timers and payload answers of a dead process are ignored.
"""

from __future__ import annotations

import hashlib
import random

from consensus import codec
from consensus.committee import Committee
from consensus.core import Core, RestorePoint
from consensus.crypto import Signer
from consensus.types import Block, Digest, NodeId, SafetyData, block_id
from node.sim.byzantine import Byzantine

CHAIN_ID = "gridchain-sim"
EPOCH = 1
MAX_BLOCKS_KEPT = 200_000
"""Hard bound of a block store (a run never gets near it)."""


def validator_seed(index: int) -> bytes:
    """Deterministic 32-byte key seed of validator ``index`` (simulation keys only)."""
    return hashlib.sha256(f"gridchain-sim-validator-{index}".encode()).digest()


def state_root(chain: list[Digest]) -> Digest:
    """The simulated 'executed state' after the committed prefix ``chain``."""
    return codec.digest(b"sim-state:" + (chain[-1] if chain else b"genesis"))


class Instance:
    """One running copy of a validator: its core, disk, memory and network identity."""

    def __init__(
        self, *, id: int, index: NodeId, signer: Signer, public_keys: tuple[bytes, ...],
        honest: bool, seed: int,
    ) -> None:
        self.id = id
        # Each node its own committee: it holds the node's verified-certificate cache.
        self.committee = Committee(CHAIN_ID, EPOCH, public_keys)
        self.index = index
        self.signer = signer
        self.honest = honest
        self.core: Core | None = None
        self.alive = False
        self.incarnation = 0
        self.byzantine: Byzantine | None = None
        self.clock_offset_ms = 0
        self.payload_rng = random.Random(f"{seed}:payload:{id}")
        # Disk: survives crashes, cleared by a wipe. A fresh validator starts with
        # empty safety data; only a wiped one starts with none (double-sign guard).
        self.safety: SafetyData | None = SafetyData(epoch=EPOCH)
        self.chain: list[Digest] = []
        self.committed: dict[Digest, Block] = {}
        self.restore: RestorePoint | None = None
        """What the node's storage would reload: ``core.restore_point()`` as of the
        latest PersistSafety or Commit (the driver persists both)."""
        # Memory: lost on a crash.
        self.pending: dict[Digest, Block] = {}
        self.tick_times: set[int] = set()
        self.crash_on_persist: int | None = None
        """Armed: die right after the next PersistSafety, restart this many ms later."""
        self.sign_refusals = 0
        """Signatures refused by earlier incarnations (the double-sign guard at work)."""

    def running(self) -> Core:
        """The live core (only called for an instance that is alive)."""
        assert self.core is not None, "instance is not running"
        return self.core

    def block(self, bid: Digest) -> Block | None:
        return self.committed.get(bid) or self.pending.get(bid)

    def remember(self, block: Block) -> None:
        if len(self.pending) >= MAX_BLOCKS_KEPT:
            self.pending.clear()
        self.pending.setdefault(block_id(block.header), block)
