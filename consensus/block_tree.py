"""The tree of blocks above the committed root, the highest certificates, and the
2-chain commit rule.

Theory of operation: the root is the latest committed block. Every block above it
that this node accepted (voted, or fetched as an ancestor of a certified block)
sits in ``blocks`` by id. A QC whose certified block's parent is exactly one round
older (``parent_round + 1 == round``) completes a 2-chain and commits that parent
together with all its uncommitted ancestors (oldest first). After a commit every
block that does not descend from the new root is pruned, so the tree holds only
the live fork region and stays bounded.

A commit may be known (from a QC) before the blocks are: ``commit_target`` keeps
the highest such QC until the missing blocks arrive; ``missing_for_commit`` says
which block to fetch.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.types import Block, Digest, QuorumCert, Round, block_id

MAX_PENDING_BLOCKS = 2_048
"""Most uncommitted blocks held. Above it new blocks are refused until a commit prunes."""
MAX_ORPHAN_BLOCKS = 1_024
"""Most fetched blocks held whose parent is not known yet (catch-up buffer)."""


@dataclass(frozen=True, slots=True)
class Committed:
    """Result of the commit rule: ``blocks`` oldest first, committed by ``proof``."""

    blocks: tuple[Block, ...]
    proof: QuorumCert


class BlockTree:
    """Pending blocks by id above the committed root; see the module docstring."""

    def __init__(self, *, root: Block, root_qc: QuorumCert, commit_qc: QuorumCert) -> None:
        root_id = block_id(root.header)
        self.root = root
        self.root_id: Digest = root_id
        self.blocks: dict[Digest, Block] = {root_id: root}
        self.orphans: dict[Digest, Block] = {}
        self.high_qc: QuorumCert = root_qc
        """Highest QC known (by round)."""
        self.high_commit_qc: QuorumCert = commit_qc
        """The QC that committed the root (the genesis QC at genesis)."""
        self.commit_target: QuorumCert | None = None
        """Highest 2-chain QC whose committed block is above the root but not yet linked."""

    # --- queries -----------------------------------------------------------------------

    @property
    def committed_round(self) -> Round:
        return self.root.round

    @property
    def committed_height(self) -> int:
        return self.root.height

    def get(self, id_: Digest) -> Block | None:
        return self.blocks.get(id_)

    def __contains__(self, id_: Digest) -> bool:
        return id_ in self.blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def chain_from(self, id_: Digest, count: int) -> list[Block]:
        """Up to ``count`` blocks: ``id_`` and its ancestors, newest first, from the
        tree (down to and including the root)."""
        out: list[Block] = []
        block = self.blocks.get(id_)
        while block is not None and len(out) < count:
            out.append(block)
            if block.height <= self.root.height:
                break
            block = self.blocks.get(block.parent_id)
        return out

    def path_to_root(self, id_: Digest) -> list[Block] | None:
        """Blocks from just above the root up to ``id_``, oldest first; None if a link is missing."""
        path: list[Block] = []
        current = id_
        while current != self.root_id:
            block = self.blocks.get(current)
            if block is None or block.height <= self.root.height:
                return None
            path.append(block)
            current = block.parent_id
        path.reverse()
        return path

    def extends_root(self, block: Block) -> bool:
        return block.height > self.root.height and block.parent_id in self.blocks

    # --- updates -----------------------------------------------------------------------

    def insert(self, block: Block, id_: Digest) -> bool:
        """Add a block whose parent is in the tree. False if it is not (or the tree is full)."""
        if id_ in self.blocks:
            return True
        if not self.extends_root(block) or len(self.blocks) >= MAX_PENDING_BLOCKS:
            return False
        self.blocks[id_] = block
        return True

    def add_orphan(self, block: Block, id_: Digest) -> None:
        """Buffer a fetched, hash-linked block whose parent is not known yet."""
        if id_ in self.blocks or block.height <= self.root.height:
            return
        self.orphans[id_] = block
        if len(self.orphans) > MAX_ORPHAN_BLOCKS:
            # Keep the oldest: they link to the tree first; newer ones are fetched again.
            for drop in sorted(self.orphans, key=lambda k: self.orphans[k].height)[MAX_ORPHAN_BLOCKS:]:
                del self.orphans[drop]

    def adopt_orphans(self) -> list[tuple[Digest, Block]]:
        """Move buffered blocks whose parents are now known into the tree (oldest first)."""
        adopted: list[tuple[Digest, Block]] = []
        for id_ in sorted(self.orphans, key=lambda k: self.orphans[k].height):
            block = self.orphans[id_]
            if block.height <= self.root.height:
                del self.orphans[id_]
            elif self.extends_root(block):
                del self.orphans[id_]
                if self.insert(block, id_):
                    adopted.append((id_, block))
        return adopted

    def observe_qc(self, qc: QuorumCert) -> bool:
        """Record a verified QC: raise the high QC, and note a 2-chain commit. True if
        the high QC changed."""
        raised = qc.round > self.high_qc.round
        if raised:
            self.high_qc = qc
        data = qc.vote_data
        if data.parent_round + 1 == data.round and data.height - 1 > self.root.height:
            target = self.commit_target
            if target is None or data.height > target.vote_data.height:
                self.commit_target = qc
        return raised

    def missing_for_commit(self) -> tuple[Digest, int] | None:
        """(id, height) of the highest block the commit target still needs, or None."""
        target = self.commit_target
        if target is None:
            return None
        current = target.vote_data.parent_id
        height = target.vote_data.height - 1
        while current != self.root_id and height > self.root.height:
            block = self.blocks.get(current) or self.orphans.get(current)
            if block is None:
                return current, height
            current = block.parent_id
            height -= 1
        return None

    def try_commit(self) -> Committed | None:
        """Apply the 2-chain rule to the commit target if all its blocks are linked."""
        target = self.commit_target
        if target is None:
            return None
        committed_id = target.vote_data.parent_id
        if target.vote_data.height - 1 <= self.root.height:
            self.commit_target = None
            return None
        path = self.path_to_root(committed_id)
        if path is None:
            return None
        self.commit_target = None
        self._set_root(path[-1], committed_id, target)
        return Committed(blocks=tuple(path), proof=target)

    def _set_root(self, block: Block, id_: Digest, proof: QuorumCert) -> None:
        self.root = block
        self.root_id = id_
        self.high_commit_qc = proof
        kept: dict[Digest, Block] = {id_: block}
        for other_id, other in sorted(self.blocks.items(), key=lambda kv: kv[1].height):
            if other.height > block.height and other.parent_id in kept:
                kept[other_id] = other
        self.blocks = kept
        self.orphans = {k: b for k, b in self.orphans.items() if b.height > block.height}
