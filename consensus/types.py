"""Consensus data types. Frozen msgspec Structs; their canonical encoding
(``consensus.codec``) is what is hashed, signed and sent.

Validators are identified by their index in the committee (``NodeId``), which is
the order of the validator list in genesis. Rounds start at 1; round 0 is the
genesis block, certified by the empty genesis QC.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import msgspec

from consensus import codec

NodeId = int
Round = int
Digest = bytes

MAX_ROUND: Round = 2**62
"""Largest round (and height) a valid message may carry. Far beyond any real chain's
life, so rounds and heights never approach the codec's 64-bit limit, and a message
claiming an absurd round is rejected at the edge (``bad_round``)."""


class _Frozen(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class VoteData(_Frozen, frozen=True):
    """What a vote signs: the block it certifies and that block's parent, so a
    QC alone tells whether it completes a 2-chain (parent_round == round - 1)."""

    epoch: int
    round: Round
    """Round of the certified block."""
    height: int
    """Height of the certified block (genesis is 0)."""
    block_id: Digest
    parent_id: Digest
    parent_round: Round


class QuorumCert(_Frozen, frozen=True):
    """2f+1 votes for one block. ``signers[i]`` signed ``vote_data`` with ``signatures[i]``."""

    vote_data: VoteData
    signers: tuple[NodeId, ...] = ()
    signatures: tuple[bytes, ...] = ()

    @property
    def round(self) -> Round:
        return self.vote_data.round

    @property
    def block_id(self) -> Digest:
        return self.vote_data.block_id


class TimeoutData(_Frozen, frozen=True):
    """What a timeout signs: the round given up on and the signer's highest QC round
    (as in Aptos' ``TwoChainTimeout``, the QC itself travels with the timeout, unsigned:
    it proves itself)."""

    epoch: int
    round: Round
    high_qc_round: Round


class TimeoutCert(_Frozen, frozen=True):
    """2f+1 timeouts for one round; ``high_qc_rounds[i]`` is what ``signers[i]`` signed.

    ``high_qc`` is the QC of the largest signed ``high_qc_round`` (Aptos'
    ``TwoChainTimeoutCertificate``): the certificate proves the round it makes every
    honest voter wait for, and a leader that processes it can always extend that QC.
    """

    epoch: int
    round: Round
    signers: tuple[NodeId, ...]
    high_qc_rounds: tuple[Round, ...]
    signatures: tuple[bytes, ...]
    high_qc: QuorumCert

    @property
    def high_qc_round(self) -> Round:
        return max(self.high_qc_rounds)


class EquivocationEvidence(_Frozen, frozen=True):
    """Two different messages of one ``kind`` for one round, both signed by ``author``.

    ``first``/``second`` are the canonical bytes that were signed (a block header
    for proposals, ``VoteData`` for votes, ``TimeoutData`` for timeouts).
    """

    kind: Literal["proposal", "vote", "timeout"]
    author: NodeId
    round: Round
    first: bytes
    first_signature: bytes
    second: bytes
    second_signature: bytes


class BlockHeader(_Frozen, frozen=True):
    """Everything about a block except its transactions; the block id is its digest."""

    epoch: int
    round: Round
    height: int
    """parent height + 1; genesis is 0."""
    parent_qc: QuorumCert
    author: NodeId
    timestamp_ms: int
    """Proposer's clock; strictly greater than the parent's. The only time contracts see."""
    tx_root: Digest
    """Digest over the payload (``payload_root``)."""
    executed_height: int
    """Latest height the author had executed when proposing."""
    executed_state_root: Digest
    """State digest after ``executed_height``; voters that executed it compare."""
    failed_authors: tuple[tuple[Round, NodeId], ...] = ()
    """(round, leader) of rounds between parent_qc.round and round that ended in a TC."""
    evidence: tuple[EquivocationEvidence, ...] = ()


class Block(_Frozen, frozen=True):
    header: BlockHeader
    payload: tuple[bytes, ...] = ()
    """Raw signed transactions; opaque to consensus."""

    @property
    def round(self) -> Round:
        return self.header.round

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def parent_id(self) -> Digest:
        return self.header.parent_qc.block_id


def block_id(header: BlockHeader) -> Digest:
    return codec.digest_of(header)


def payload_root(payload: tuple[bytes, ...]) -> Digest:
    """Commitment to the payload: digest of the concatenated transaction digests
    (SHA-256, as ``codec.digest``; computed without per-call overhead: it runs once per
    transaction on every proposal)."""
    sha256 = hashlib.sha256
    return sha256(b"".join([sha256(tx).digest() for tx in payload])).digest()


class SyncInfo(_Frozen, frozen=True):
    """Carried on every message so a lagging node learns the highest certificates."""

    high_qc: QuorumCert
    high_commit_qc: QuorumCert
    """The QC that committed the sender's latest committed block (its 2-chain head)."""
    high_tc: TimeoutCert | None = None


class ProposalMsg(_Frozen, frozen=True, tag="proposal"):
    block: Block
    signature: bytes
    """Author's signature of ``block_id(block.header)`` (domain PROPOSAL)."""
    sync: SyncInfo


class Vote(_Frozen, frozen=True):
    vote_data: VoteData
    author: NodeId
    signature: bytes
    """Author's signature of ``encode(vote_data)`` (domain VOTE)."""


class VoteMsg(_Frozen, frozen=True, tag="vote"):
    vote: Vote
    sync: SyncInfo


class Timeout(_Frozen, frozen=True):
    data: TimeoutData
    author: NodeId
    signature: bytes
    """Author's signature of ``encode(data)`` (domain TIMEOUT)."""
    high_qc: QuorumCert
    """The QC of round ``data.high_qc_round`` (not signed: its own signatures prove it)."""


class TimeoutMsg(_Frozen, frozen=True, tag="timeout"):
    timeout: Timeout
    sync: SyncInfo
    """``sync.high_qc.round`` is at least ``timeout.data.high_qc_round`` (a re-sent
    timeout keeps the round it was first signed with; the sender's QC may have grown)."""


class BlockRequest(_Frozen, frozen=True, tag="block_request"):
    """Ask for the block ``block_id`` and up to ``count - 1`` of its ancestors."""

    block_id: Digest
    count: int


class BlockResponse(_Frozen, frozen=True, tag="block_response"):
    """Blocks newest first, each the parent of the one before."""

    blocks: tuple[Block, ...]


Message = ProposalMsg | VoteMsg | TimeoutMsg | BlockRequest | BlockResponse
"""Everything one validator sends another; decode with ``codec.decode(data, Message)``."""


class SafetyData(_Frozen, frozen=True):
    """What the safety rules persist before any vote or timeout leaves the process."""

    epoch: int
    last_voted_round: Round = 0
    one_chain_round: Round = 0
    """Highest QC round seen (preferred round in 2-chain)."""
    highest_timeout_round: Round = 0
    last_vote: Vote | None = None
    """The vote of ``last_voted_round``; a repeated request for that round returns it."""
    last_timeout: Timeout | None = None
    """The timeout of ``highest_timeout_round``; re-sent instead of signing a second,
    different timeout for one round (which would be equivocation)."""
    high_qc: QuorumCert | None = None
    """The node's highest QC when this was written: a restart (even of the whole
    network at once) resumes from the round it justifies instead of stalling below
    ``last_voted_round``."""
    high_tc: TimeoutCert | None = None
    """The node's highest TC when this was written (same purpose)."""
