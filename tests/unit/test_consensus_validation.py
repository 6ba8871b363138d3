"""Edge validation: real messages pass; bad signatures, non-members, wrong senders,
sub-quorum or duplicate-signer certificates and forged evidence are rejected with
stable codes."""

from __future__ import annotations

import pytest

from consensus import codec
from consensus.aggregator import Aggregator
from consensus.types import (
    EquivocationEvidence,
    Message,
    ProposalMsg,
    QuorumCert,
    SyncInfo,
    TimeoutCert,
    TimeoutMsg,
    VoteMsg,
)
from consensus.validation import InvalidMessage, check_evidence, check_message, check_qc, check_tc
from tests.unit.consensus_net import GENESIS_MS, Net, make_committee


@pytest.fixture(scope="module")
def captured() -> dict[str, tuple[int, Message]]:
    """One real proposal (with a non-genesis QC), vote and timeout (with a TC) from a small run."""
    found: dict[str, tuple[int, Message]] = {}
    net = Net(n=4, down={3})

    def hook(sender, action):
        msg = action.message
        if isinstance(msg, ProposalMsg) and msg.block.header.parent_qc.round > 0:
            found.setdefault("proposal", (sender, msg))
        elif isinstance(msg, VoteMsg):
            found.setdefault("vote", (sender, msg))
        elif isinstance(msg, TimeoutMsg) and msg.sync.high_tc is not None:
            found.setdefault("timeout", (sender, msg))
        return None

    net.send_hook = hook
    net.run_until(GENESIS_MS + 8_000)
    assert set(found) == {"proposal", "vote", "timeout"}
    return found


def _committee(net_n: int = 4):
    return make_committee(Net(n=net_n).signers)


def _code(msg: Message, *, sender: int) -> str:
    with pytest.raises(InvalidMessage) as err:
        check_message(msg, sender=sender, committee=_committee())
    return err.value.code


def test_real_messages_pass(captured):
    for sender, msg in captured.values():
        check_message(msg, sender=sender, committee=_committee())


def test_non_member_and_wrong_sender_are_rejected(captured):
    sender, proposal = captured["proposal"]
    assert _code(proposal, sender=9) == "not_member"
    assert _code(proposal, sender=(sender + 1) % 4) == "sender_mismatch"
    vote_sender, vote = captured["vote"]
    assert _code(vote, sender=(vote_sender + 1) % 4) == "sender_mismatch"


def test_bad_signatures_are_rejected(captured):
    sender, proposal = captured["proposal"]
    forged = ProposalMsg(block=proposal.block, signature=bytes(64), sync=proposal.sync)
    assert _code(forged, sender=sender) == "bad_signature"
    vote_sender, vote = captured["vote"]
    bad_vote = VoteMsg(vote=type(vote.vote)(vote_data=vote.vote.vote_data, author=vote.vote.author,
                                            signature=bytes(64)), sync=vote.sync)
    assert _code(bad_vote, sender=vote_sender) == "bad_signature"
    t_sender, timeout = captured["timeout"]
    t = timeout.timeout
    bad_timeout = TimeoutMsg(timeout=type(t)(data=t.data, author=t.author, signature=t.signature[::-1],
                                             high_qc=t.high_qc), sync=timeout.sync)
    assert _code(bad_timeout, sender=t_sender) == "bad_signature"


def _with_qc(qc: QuorumCert, **changes) -> QuorumCert:
    fields = {"vote_data": qc.vote_data, "signers": qc.signers, "signatures": qc.signatures}
    fields.update(changes)
    return QuorumCert(**fields)


def test_quorum_certificates_need_a_quorum_of_distinct_valid_members(captured):
    _, proposal = captured["proposal"]
    qc = proposal.block.header.parent_qc
    committee = _committee()
    check_qc(qc, committee=committee)
    cases = {
        "sub_quorum": _with_qc(qc, signers=qc.signers[:2], signatures=qc.signatures[:2]),
        "duplicate_signer": _with_qc(qc, signers=(qc.signers[0],) * 3, signatures=(qc.signatures[0],) * 3),
        "not_member": _with_qc(qc, signers=(*qc.signers[:2], 7), signatures=qc.signatures[:3]),
        "bad_signature": _with_qc(qc, signatures=(*qc.signatures[:2], bytes(64))),
        "malformed": _with_qc(qc, signers=tuple(reversed(qc.signers))),
    }
    for code, bad in cases.items():
        with pytest.raises(InvalidMessage) as err:
            check_qc(bad, committee=_committee())
        assert err.value.code == code, code
    # A proposal carrying a sub-quorum QC in its sync info is dropped as a whole.
    sender, _ = captured["proposal"]
    sync = SyncInfo(high_qc=cases["sub_quorum"], high_commit_qc=proposal.sync.high_commit_qc)
    assert _code(ProposalMsg(block=proposal.block, signature=proposal.signature, sync=sync),
                 sender=sender) == "sub_quorum"


def test_timeout_certificates_are_checked(captured):
    _, timeout = captured["timeout"]
    tc = timeout.sync.high_tc
    assert tc is not None
    check_tc(tc, committee=_committee())
    short = TimeoutCert(epoch=tc.epoch, round=tc.round, signers=tc.signers[:2],
                        high_qc_rounds=tc.high_qc_rounds[:2], signatures=tc.signatures[:2], high_qc=tc.high_qc)
    swapped = TimeoutCert(epoch=tc.epoch, round=tc.round, signers=tc.signers,
                          high_qc_rounds=tc.high_qc_rounds,
                          signatures=(tc.signatures[1], tc.signatures[0], *tc.signatures[2:]),
                          high_qc=tc.high_qc)
    for bad, code in ((short, "sub_quorum"), (swapped, "bad_signature")):
        with pytest.raises(InvalidMessage) as err:
            check_tc(bad, committee=_committee())
        assert err.value.code == code


def test_equivocation_evidence_is_verified(captured):
    net = Net(n=4)
    sender, proposal = captured["proposal"]
    vote = captured["vote"][1].vote
    aggregator = Aggregator(epoch=vote.vote_data.epoch, quorum=3)
    aggregator.cleanup(vote.vote_data.round)
    aggregator.add_vote(vote)
    other_data = type(vote.vote_data)(**{**{f: getattr(vote.vote_data, f) for f in vote.vote_data.__struct_fields__},
                                         "block_id": b"\x01" * 32})
    other_sig = net.signers[vote.author].sign(chain_id=net.cores[0]._committee.chain_id, kind="VOTE",
                                              message=codec.encode(other_data))
    outcome = aggregator.add_vote(type(vote)(vote_data=other_data, author=vote.author, signature=other_sig))
    evidence = outcome.evidence
    assert evidence is not None and evidence.author == vote.author
    check_evidence(evidence, committee=_committee())
    fields = {f: getattr(evidence, f) for f in evidence.__struct_fields__}
    forged = [
        EquivocationEvidence(**{**fields, "second_signature": bytes(64)}),
        EquivocationEvidence(**{**fields, "second": evidence.first, "second_signature": evidence.first_signature}),
        EquivocationEvidence(**{**fields, "author": (vote.author + 1) % 4}),
        EquivocationEvidence(**{**fields, "round": evidence.round + 1}),
        EquivocationEvidence(**{**fields, "first": b"\xc1garbage"}),
    ]
    for bad in forged:
        with pytest.raises(InvalidMessage) as err:
            check_evidence(bad, committee=_committee())
        assert err.value.code == "bad_evidence"
    assert sender is not None and proposal is not None


def test_garbage_bytes_do_not_decode():
    with pytest.raises(codec.CodecError):
        codec.decode(b"\x93\x01\x02garbage", Message)  # type: ignore[arg-type]


def test_fetched_chains_must_link_and_may_end_at_genesis():
    from consensus.types import BlockResponse, block_id

    net = Net(n=4)
    net.run_until(GENESIS_MS + 100)
    chain = tuple(net.blocks[bid] for bid in reversed(net.chains[0][-5:]))  # newest first
    assert len(chain) == 5
    check_message(BlockResponse(blocks=chain), sender=1, committee=_committee())
    first = net.blocks[net.chains[0][0]]  # height 1: its parent is genesis
    from tests.unit.consensus_net import GENESIS
    assert first.parent_id == block_id(GENESIS.header)
    check_message(BlockResponse(blocks=(first, GENESIS)), sender=1, committee=_committee())
    broken = (chain[0], *chain[2:])
    with pytest.raises(InvalidMessage) as err:
        check_message(BlockResponse(blocks=broken), sender=1, committee=_committee())
    assert err.value.code == "malformed"
