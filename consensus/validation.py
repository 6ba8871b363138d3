"""Edge validation of consensus messages: the node (and the simulator) calls
``check_message`` on every decoded message before handing it to the core, so the
core never sees a forged or malformed message.

What is checked here is everything that can be decided from the message and the
committee alone: structure, that the sender is the author, committee membership,
epoch, every signature (proposal, vote, timeout), certificate signature sets
(distinct signers in ascending order, at least a quorum, each signature valid)
and equivocation evidence. What needs the node's state (is this the right leader,
is the parent known, is it safe to vote) is the core's business.

Certificates are verified once per node: a verified QC or TC is remembered by its
digest in the committee's bounded cache, so the QC carried by a proposal, every
vote's sync info and every timeout costs one digest after the first time.
Invalid input raises ``InvalidMessage`` with a stable ``code`` and changes nothing
(except that valid certificates may be cached).
"""

from __future__ import annotations

from consensus import codec, crypto
from consensus.committee import Committee
from consensus.types import (
    MAX_ROUND,
    Block,
    BlockHeader,
    BlockRequest,
    BlockResponse,
    EquivocationEvidence,
    Message,
    NodeId,
    ProposalMsg,
    QuorumCert,
    SyncInfo,
    TimeoutCert,
    TimeoutData,
    TimeoutMsg,
    VoteData,
    VoteMsg,
    block_id,
    payload_root,
)

MAX_FAILED_AUTHORS = 16
"""Most (round, leader) pairs a block may name as failed authors."""
MAX_EVIDENCE_PER_BLOCK = 8
"""Most equivocation proofs one block may carry."""
MAX_REQUEST_BLOCKS = 1_024
"""Largest ``count`` a block request may ask for (the responder caps further)."""


class InvalidMessage(ValueError):
    """A message that must be dropped. ``code`` is stable (metrics, logs, tests)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def check_message(msg: Message, *, sender: NodeId, committee: Committee) -> None:
    """Raise ``InvalidMessage`` unless ``msg`` from validator ``sender`` is well formed and
    carries only valid signatures and certificates."""
    if not committee.contains(sender):
        raise InvalidMessage("not_member", f"sender {sender!r} is not in the committee")
    if isinstance(msg, ProposalMsg):
        _check_proposal(msg, sender=sender, committee=committee)
    elif isinstance(msg, VoteMsg):
        _check_vote(msg, sender=sender, committee=committee)
    elif isinstance(msg, TimeoutMsg):
        _check_timeout(msg, sender=sender, committee=committee)
    elif isinstance(msg, BlockRequest):
        _check_block_request(msg)
    elif isinstance(msg, BlockResponse):
        check_block_chain(msg.blocks, committee=committee)
    else:
        raise InvalidMessage("malformed", f"unknown message type {type(msg).__name__}")


# --- messages --------------------------------------------------------------------------


def _check_proposal(msg: ProposalMsg, *, sender: NodeId, committee: Committee) -> None:
    header = msg.block.header
    if header.author != sender:
        raise InvalidMessage("sender_mismatch", f"proposal by {header.author} sent by {sender}")
    check_block_structure(msg.block, committee=committee)
    message = block_id(header)
    if not crypto.verify(
        committee.public_key(header.author), msg.signature,
        chain_id=committee.chain_id, kind=crypto.KIND_PROPOSAL, message=message,
    ):
        raise InvalidMessage("bad_signature", f"proposal signature of round {header.round} is invalid")
    check_qc(header.parent_qc, committee=committee)
    for evidence in header.evidence:
        check_evidence(evidence, committee=committee)
    check_sync(msg.sync, committee=committee)


def _check_vote(msg: VoteMsg, *, sender: NodeId, committee: Committee) -> None:
    vote = msg.vote
    if vote.author != sender:
        raise InvalidMessage("sender_mismatch", f"vote by {vote.author} sent by {sender}")
    _check_vote_data(vote.vote_data, committee=committee)
    if not crypto.verify(
        committee.public_key(vote.author), vote.signature,
        chain_id=committee.chain_id, kind=crypto.KIND_VOTE, message=codec.encode(vote.vote_data),
    ):
        raise InvalidMessage("bad_signature", f"vote signature of round {vote.vote_data.round} is invalid")
    check_sync(msg.sync, committee=committee)


def _check_timeout(msg: TimeoutMsg, *, sender: NodeId, committee: Committee) -> None:
    timeout = msg.timeout
    data = timeout.data
    if timeout.author != sender:
        raise InvalidMessage("sender_mismatch", f"timeout by {timeout.author} sent by {sender}")
    if data.epoch != committee.epoch:
        raise InvalidMessage("wrong_epoch", f"timeout for epoch {data.epoch}")
    if data.round > MAX_ROUND:
        raise InvalidMessage("bad_round", f"timeout round {data.round} above {MAX_ROUND}")
    if not 0 <= data.high_qc_round < data.round:
        raise InvalidMessage("malformed", f"timeout of round {data.round} claims QC round {data.high_qc_round}")
    if timeout.high_qc.round != data.high_qc_round:
        raise InvalidMessage("bad_timeout", f"timeout claims QC round {data.high_qc_round} "
                             f"but carries a QC of round {timeout.high_qc.round}")
    if msg.sync.high_qc.round < data.high_qc_round:
        raise InvalidMessage("malformed", "timeout claims a higher QC than its sync info carries")
    if not crypto.verify(
        committee.public_key(timeout.author), timeout.signature,
        chain_id=committee.chain_id, kind=crypto.KIND_TIMEOUT, message=codec.encode(data),
    ):
        raise InvalidMessage("bad_signature", f"timeout signature of round {data.round} is invalid")
    check_qc(timeout.high_qc, committee=committee)
    check_sync(msg.sync, committee=committee)


def _check_block_request(msg: BlockRequest) -> None:
    if len(msg.block_id) != codec.DIGEST_SIZE:
        raise InvalidMessage("malformed", "block id must be 32 bytes")
    if not 1 <= msg.count <= MAX_REQUEST_BLOCKS:
        raise InvalidMessage("malformed", f"block request count {msg.count} outside [1, {MAX_REQUEST_BLOCKS}]")


# --- pieces ----------------------------------------------------------------------------


def check_sync(sync: SyncInfo, *, committee: Committee) -> None:
    check_qc(sync.high_qc, committee=committee)
    check_qc(sync.high_commit_qc, committee=committee)
    if sync.high_tc is not None:
        check_tc(sync.high_tc, committee=committee)


def check_block_structure(block: Block, *, committee: Committee) -> None:
    """Checks of one block that need no signatures and no node state."""
    header = block.header
    parent = header.parent_qc.vote_data
    if header.epoch != committee.epoch:
        raise InvalidMessage("wrong_epoch", f"block for epoch {header.epoch}")
    if not committee.contains(header.author):
        raise InvalidMessage("not_member", f"block author {header.author} is not in the committee")
    if header.round > MAX_ROUND or header.height > MAX_ROUND:
        raise InvalidMessage("bad_round", f"block round {header.round} or height {header.height} above {MAX_ROUND}")
    if header.round <= parent.round:
        raise InvalidMessage("malformed", f"block round {header.round} not above its QC round {parent.round}")
    if header.height != parent.height + 1:
        raise InvalidMessage("malformed", f"block height {header.height} is not parent height + 1")
    if len(header.tx_root) != codec.DIGEST_SIZE or len(header.executed_state_root) != codec.DIGEST_SIZE:
        raise InvalidMessage("malformed", "tx_root and executed_state_root are 32-byte digests")
    if header.executed_height < 0 or header.executed_height >= header.height:
        raise InvalidMessage("malformed", "executed_height must be below the block height")
    if len(header.failed_authors) > MAX_FAILED_AUTHORS:
        raise InvalidMessage("malformed", f"more than {MAX_FAILED_AUTHORS} failed authors")
    last = parent.round
    for failed_round, failed_author in header.failed_authors:
        if not last < failed_round < header.round:
            raise InvalidMessage("malformed", "failed author rounds must ascend between the QC and the block")
        if not committee.contains(failed_author):
            raise InvalidMessage("not_member", f"failed author {failed_author} is not in the committee")
        last = failed_round
    if len(header.evidence) > MAX_EVIDENCE_PER_BLOCK:
        raise InvalidMessage("malformed", f"more than {MAX_EVIDENCE_PER_BLOCK} evidence items")


def check_block_chain(blocks: tuple[Block, ...], *, committee: Committee) -> None:
    """A fetched chain: newest first, each block the parent of the one before, each
    structurally valid with a valid parent QC and a payload that matches its header's
    ``tx_root``. (Whether the newest one is the block that was asked for is checked by
    the core.)"""
    previous_parent: bytes | None = None
    for index, block in enumerate(blocks):
        if previous_parent is not None and block_id(block.header) != previous_parent:
            raise InvalidMessage("malformed", "fetched blocks do not form a parent chain")
        if block.height == 0 and index == len(blocks) - 1 and block.round == 0:
            break  # the chain reached genesis: it is not certified by a QC, the core knows it
        check_block_structure(block, committee=committee)
        if block.header.tx_root != payload_root(block.payload):
            raise InvalidMessage("bad_payload", f"fetched block of height {block.height}: payload does not "
                                 "match its tx_root")
        check_qc(block.header.parent_qc, committee=committee)
        previous_parent = block.parent_id


def _check_vote_data(data: VoteData, *, committee: Committee) -> None:
    if data.epoch != committee.epoch:
        raise InvalidMessage("wrong_epoch", f"vote data for epoch {data.epoch}")
    if data.round > MAX_ROUND or data.height > MAX_ROUND:
        raise InvalidMessage("bad_round", f"vote data of round {data.round}, height {data.height} above {MAX_ROUND}")
    if data.round < 1 or data.height < 1 or data.parent_round >= data.round:
        raise InvalidMessage("malformed", f"vote data of round {data.round} is inconsistent")
    if len(data.block_id) != codec.DIGEST_SIZE or len(data.parent_id) != codec.DIGEST_SIZE:
        raise InvalidMessage("malformed", "block ids are 32-byte digests")


def _check_signers(signers: tuple[NodeId, ...], signatures: tuple[bytes, ...], *,
                   what: str, committee: Committee) -> None:
    if len(signers) != len(signatures):
        raise InvalidMessage("malformed", f"{what}: {len(signers)} signers but {len(signatures)} signatures")
    if len(set(signers)) != len(signers):
        raise InvalidMessage("duplicate_signer", f"{what}: a signer appears twice")
    if list(signers) != sorted(signers):
        raise InvalidMessage("malformed", f"{what}: signers must be in ascending order")
    for signer in signers:
        if not committee.contains(signer):
            raise InvalidMessage("not_member", f"{what}: signer {signer} is not in the committee")
    if len(signers) < committee.quorum:
        raise InvalidMessage("sub_quorum", f"{what}: {len(signers)} signatures, quorum is {committee.quorum}")


def check_qc(qc: QuorumCert, *, committee: Committee) -> None:
    """A QC is the empty genesis certificate (round 0, no signers) or a quorum of
    distinct members' valid vote signatures over ``vote_data``."""
    data = qc.vote_data
    if data.round == 0:
        if qc.signers or qc.signatures or data.height != 0 or data.epoch != committee.epoch:
            raise InvalidMessage("bad_qc", "a round-0 QC must be the empty genesis certificate")
        return
    cert_digest = codec.digest_of(qc)
    if committee.is_verified(cert_digest):
        return
    _check_vote_data(data, committee=committee)
    _check_signers(qc.signers, qc.signatures, what=f"QC of round {data.round}", committee=committee)
    message = codec.encode(data)
    for signer, signature in zip(qc.signers, qc.signatures, strict=True):
        if not crypto.verify(
            committee.public_key(signer), signature,
            chain_id=committee.chain_id, kind=crypto.KIND_VOTE, message=message,
        ):
            raise InvalidMessage("bad_signature", f"QC of round {data.round}: signature of {signer} is invalid")
    committee.remember_verified(cert_digest)


def check_tc(tc: TimeoutCert, *, committee: Committee) -> None:
    """A TC is a quorum of distinct members' valid timeout signatures for ``tc.round``
    that carries a valid QC of exactly the largest signed ``high_qc_round`` (as Aptos
    checks a ``TwoChainTimeoutCertificate``): a TC cannot make voters wait for a QC
    round nobody can show."""
    cert_digest = codec.digest_of(tc)
    if committee.is_verified(cert_digest):
        return
    if tc.epoch != committee.epoch:
        raise InvalidMessage("wrong_epoch", f"TC for epoch {tc.epoch}")
    if not 1 <= tc.round <= MAX_ROUND:
        raise InvalidMessage("bad_tc", f"TC round {tc.round} outside [1, {MAX_ROUND}]")
    if len(tc.high_qc_rounds) != len(tc.signers) or not tc.signers:
        raise InvalidMessage("malformed", "TC: one high QC round per signer")
    if tc.high_qc.round != max(tc.high_qc_rounds):
        raise InvalidMessage("bad_tc", f"TC of round {tc.round}: largest signed QC round "
                             f"{max(tc.high_qc_rounds)} but it carries a QC of round {tc.high_qc.round}")
    _check_signers(tc.signers, tc.signatures, what=f"TC of round {tc.round}", committee=committee)
    for signer, qc_round, signature in zip(tc.signers, tc.high_qc_rounds, tc.signatures, strict=True):
        if not 0 <= qc_round < tc.round:
            raise InvalidMessage("bad_tc", f"TC of round {tc.round}: QC round {qc_round} of {signer}")
        message = codec.encode(TimeoutData(epoch=tc.epoch, round=tc.round, high_qc_round=qc_round))
        if not crypto.verify(
            committee.public_key(signer), signature,
            chain_id=committee.chain_id, kind=crypto.KIND_TIMEOUT, message=message,
        ):
            raise InvalidMessage("bad_signature", f"TC of round {tc.round}: signature of {signer} is invalid")
    check_qc(tc.high_qc, committee=committee)
    committee.remember_verified(cert_digest)


def check_evidence(evidence: EquivocationEvidence, *, committee: Committee) -> None:
    """Evidence proves that ``author`` signed two different messages of one kind for one round."""
    if not committee.contains(evidence.author):
        raise InvalidMessage("bad_evidence", f"evidence against non-member {evidence.author}")
    if evidence.first == evidence.second:
        raise InvalidMessage("bad_evidence", "evidence needs two different messages")
    for signed, signature in ((evidence.first, evidence.first_signature),
                              (evidence.second, evidence.second_signature)):
        kind, message = _evidence_message(evidence, signed, committee=committee)
        if not crypto.verify(
            committee.public_key(evidence.author), signature,
            chain_id=committee.chain_id, kind=kind, message=message,
        ):
            raise InvalidMessage("bad_evidence", f"evidence signature of {evidence.author} is invalid")


def _evidence_message(evidence: EquivocationEvidence, signed: bytes, *,
                      committee: Committee) -> tuple[str, bytes]:
    """Decode one half of the evidence, check it belongs to (author, round, epoch), and
    return the signature domain and the exact bytes that were signed."""
    try:
        if evidence.kind == "proposal":
            header = codec.decode_canonical(signed, BlockHeader)
            matches = header.author == evidence.author and header.round == evidence.round
            epoch, kind, message = header.epoch, crypto.KIND_PROPOSAL, codec.digest(signed)
        elif evidence.kind == "vote":
            vote_data = codec.decode_canonical(signed, VoteData)
            matches = vote_data.round == evidence.round
            epoch, kind, message = vote_data.epoch, crypto.KIND_VOTE, signed
        else:
            timeout_data = codec.decode_canonical(signed, TimeoutData)
            matches = timeout_data.round == evidence.round
            epoch, kind, message = timeout_data.epoch, crypto.KIND_TIMEOUT, signed
    except codec.CodecError as exc:
        raise InvalidMessage("bad_evidence", f"evidence does not decode: {exc}") from exc
    if not matches or epoch != committee.epoch:
        raise InvalidMessage("bad_evidence", "evidence is not about its author, round and epoch")
    return kind, message
