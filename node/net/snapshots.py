"""State sync's wire messages and pure checks: what a snapshot offer is, and how its
bounds, its chunks, its bytes and the committed blocks that vouch for it are verified
(``node.net.statesync`` runs them; see its docstring for the whole procedure)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec

from consensus import codec
from consensus.committee import Committee
from consensus.types import Block, BlockHeader, QuorumCert, block_id, payload_root
from consensus.validation import InvalidMessage, check_qc
from contracts.state import checkpoint_root, is_checkpoint

FRAME_STATESYNC_REQUEST = 5
FRAME_STATESYNC_RESPONSE = 6

CHUNK_BYTES = 1 << 20
"""Size of every chunk but the last."""
MAX_CHUNKS = 4_096
"""Largest snapshot accepted: ``MAX_CHUNKS * CHUNK_BYTES`` (4 GiB)."""
MAX_OFFERS = 4
"""Most snapshots one peer may offer at once."""
MIN_GAP_BLOCKS = 256
"""State sync only when a snapshot is at least this many blocks above the executed height."""
OFFER_WAIT_S = 2.0
CHUNK_TIMEOUT_S = 10.0
CHUNKS_PER_PEER_PER_S = 32
"""Most chunks served to one peer per second (a restoring node asks one at a time)."""
MAX_PROOF_BATCHES = 4
"""Sync responses fetched at most to find a block that names the snapshot's height or later."""
BASE_KEY = "statesync_base"
"""``meta`` key: the header of the snapshot a state-synced node started from."""


class ListSnapshots(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="list_snapshots"):
    """Ask a peer which snapshots it serves."""


class GetChunk(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="get_chunk"):
    height: int
    index: int


class SnapshotInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    height: int
    state_root: bytes
    size: int
    chunk_hashes: tuple[bytes, ...]
    """SHA-256 of each ``CHUNK_BYTES`` slice of the snapshot bytes, in order."""
    header: BlockHeader
    """The header of the block of ``height``: the proof blocks link to it."""


class SnapshotList(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="snapshot_list"):
    snapshots: tuple[SnapshotInfo, ...]


class Chunk(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="chunk"):
    height: int
    index: int
    data: bytes
    """Empty when the peer does not have it."""


StateSyncRequest = ListSnapshots | GetChunk
StateSyncResponse = SnapshotList | Chunk


class SnapshotRefused(Exception):
    """A snapshot offer (or its proof or chunks) failed verification; nothing was stored."""


class TooRecent(Exception):
    """Too few committed blocks above the snapshot yet to vouch for it (try an older one)."""


# ---------------------------------------------------------------------- checks (pure)
def chunk_hashes(data: bytes) -> tuple[bytes, ...]:
    return tuple(hashlib.sha256(data[i : i + CHUNK_BYTES]).digest() for i in range(0, len(data), CHUNK_BYTES))


def check_offer(info: SnapshotInfo) -> None:
    if not is_checkpoint(info.height):
        raise SnapshotRefused(f"height {info.height} is not a checkpoint")
    if info.header.height != info.height or len(info.state_root) != codec.DIGEST_SIZE:
        raise SnapshotRefused("header or state root does not fit the offer")
    if not 0 < info.size <= MAX_CHUNKS * CHUNK_BYTES:
        raise SnapshotRefused(f"oversized: {info.size} bytes (at most {MAX_CHUNKS * CHUNK_BYTES})")
    if len(info.chunk_hashes) != -(-info.size // CHUNK_BYTES):
        raise SnapshotRefused(f"{len(info.chunk_hashes)} chunk hashes for {info.size} bytes")
    if any(len(h) != codec.DIGEST_SIZE for h in info.chunk_hashes):
        raise SnapshotRefused("a chunk hash is not 32 bytes")


def check_chunk(info: SnapshotInfo, index: int, data: bytes) -> None:
    expected = min(CHUNK_BYTES, info.size - index * CHUNK_BYTES)
    if len(data) != expected:
        raise SnapshotRefused(f"chunk {index}: {len(data)} bytes, expected {expected}")
    if hashlib.sha256(data).digest() != info.chunk_hashes[index]:
        raise SnapshotRefused(f"chunk {index} does not match its advertised hash")


def check_snapshot(info: SnapshotInfo, data: bytes) -> None:
    if checkpoint_root(info.height, data) != info.state_root:
        raise SnapshotRefused("the snapshot bytes do not hash to the advertised state root")


def check_proof(header: BlockHeader, blocks: Sequence[Block], commit_qc: QuorumCert | None,
                committee: Committee) -> None:
    """``blocks`` extend ``header`` by hash, carry their payloads, and ``commit_qc`` (a QC of
    the next round) commits the last one, verified against ``committee``."""
    if not blocks or commit_qc is None:
        raise SnapshotRefused("the peer sent no committed blocks above its snapshot")
    parent_id, parent_height = block_id(header), header.height
    for block in blocks:
        if block.height != parent_height + 1 or block.parent_id != parent_id:
            raise SnapshotRefused(f"block {block.height} does not extend the snapshot's chain")
        if block.header.tx_root != payload_root(block.payload):
            raise SnapshotRefused(f"payload of height {block.height} does not match its tx_root")
        parent_id, parent_height = block_id(block.header), block.height
    last, data = blocks[-1], commit_qc.vote_data
    if data.parent_id != parent_id or data.parent_round != last.round or data.round != last.round + 1:
        raise SnapshotRefused("the commit QC does not commit the last block")
    try:
        check_qc(commit_qc, committee=committee)
    except InvalidMessage as exc:
        raise SnapshotRefused(f"bad commit QC: {exc}") from exc


Claim = tuple[int, int, bytes]
"""(author, executed_height, executed_state_root) of one committed block above the snapshot."""


def certified_claims(height: int, blocks: Sequence[Block]) -> list[Claim]:
    """What the committed proof blocks' authors say they executed, at or above ``height``."""
    return [(b.header.author, b.header.executed_height, b.header.executed_state_root) for b in blocks
            if b.header.executed_height >= height]


def vouched(claims: Sequence[Claim], f: int) -> bool:
    """At least f+1 distinct proposers make claims: one of them is honest, and an honest
    proposer names only a root it executed itself."""
    return len({author for author, _, _ in claims}) >= f + 1


def check_roots(claims: Sequence[Claim], roots: dict[int, bytes]) -> None:
    for author, height, root in claims:
        if roots.get(height) != root:
            raise SnapshotRefused(f"the state root of height {height} is not the certified one "
                                  f"(named by validator {author})")
