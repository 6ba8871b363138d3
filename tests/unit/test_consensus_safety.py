"""Safety rules: the Aptos ``safety_rules_2chain`` cases as tables, repeated requests,
the double-sign guard on empty safety data, and a crash between persist and send."""

from __future__ import annotations

import pytest

from consensus import codec
from consensus.actions import Broadcast, EquivocationDetected, PersistSafety, Send
from consensus.core import genesis_qc
from consensus.events import MessageReceived, PayloadReady, Tick
from consensus.safety import SafetyError, SafetyRules, safe_to_timeout, safe_to_vote
from consensus.types import (
    Block,
    BlockHeader,
    ProposalMsg,
    QuorumCert,
    SafetyData,
    TimeoutCert,
    VoteData,
    VoteMsg,
    block_id,
    payload_root,
)
from tests.unit.consensus_net import EPOCH, GENESIS, GENESIS_MS, Net, make_committee, make_signers

SIGNERS = make_signers(4)
COMMITTEE = make_committee(SIGNERS)
GQC = genesis_qc(GENESIS)


def make_block(round: int, qc: QuorumCert, *, tag: bytes = b"") -> Block:
    payload = (tag,) if tag else ()
    header = BlockHeader(
        epoch=EPOCH, round=round, height=qc.vote_data.height + 1, parent_qc=qc, author=0,
        timestamp_ms=GENESIS_MS + round, tx_root=payload_root(payload), executed_height=0,
        executed_state_root=bytes(32),
    )
    return Block(header=header, payload=payload)


def certify(block: Block) -> QuorumCert:
    """A QC for ``block`` (signatures are not checked by the safety rules)."""
    data = VoteData(epoch=EPOCH, round=block.round, height=block.height, block_id=block_id(block.header),
                    parent_id=block.parent_id, parent_round=block.header.parent_qc.round)
    return QuorumCert(vote_data=data, signers=(0, 1, 2), signatures=(bytes(64),) * 3)


def child(round: int, parent: Block) -> Block:
    return make_block(round, certify(parent))


def tc(round: int, qc: QuorumCert) -> TimeoutCert:
    return TimeoutCert(epoch=EPOCH, round=round, signers=(0, 1, 2), high_qc_rounds=(qc.round,) * 3,
                       signatures=(bytes(64),) * 3, high_qc=qc)


def qc_at(round: int) -> QuorumCert:
    """A QC of ``round`` (the genesis QC for 0; signatures are not checked here)."""
    if round == 0:
        return GQC
    data = VoteData(epoch=EPOCH, round=round, height=round, block_id=bytes([round % 256]) * 32,
                    parent_id=bytes(32), parent_round=round - 1)
    return QuorumCert(vote_data=data, signers=(0, 1, 2), signatures=(bytes(64),) * 3)


def rules(data: SafetyData | None = None) -> SafetyRules:
    return SafetyRules(committee=COMMITTEE, me=1, signer=SIGNERS[1],
                       data=data if data is not None else SafetyData(epoch=EPOCH))


@pytest.mark.parametrize(("block_round", "qc_round", "tc_round", "tc_hqc", "expected"), [
    (1, 0, None, None, True),     # block == qc + 1
    (3, 1, None, None, False),    # gap, no TC
    (2, 0, 3, 0, False),          # block != qc + 1 and != tc + 1
    (4, 2, 3, 2, True),           # block == tc + 1, qc == tc.hqc
    (5, 3, 4, 4, False),          # block == tc + 1, qc < tc.hqc
    (8, 6, 7, 5, True),           # block == tc + 1, qc > tc.hqc
    (9, 8, 7, 5, True),           # block == qc + 1, TC ignored
])
def test_safe_to_vote_table(block_round, qc_round, tc_round, tc_hqc, expected):
    cert = None
    if tc_round is not None:
        cert = TimeoutCert(epoch=EPOCH, round=tc_round, signers=(0,), high_qc_rounds=(tc_hqc,),
                           signatures=(bytes(64),), high_qc=qc_at(tc_hqc))
    assert safe_to_vote(block_round, qc_round, cert) is expected


@pytest.mark.parametrize(("round", "qc_round", "tc_round", "one_chain", "expected"), [
    (1, 0, 0, 0, True),
    (2, 0, 0, 0, False),   # neither qc + 1 nor tc + 1
    (2, 0, 1, 0, True),    # tc + 1
    (4, 2, 2, 2, False),
    (4, 1, 3, 2, False),   # qc below one-chain round
    (4, 3, 0, 2, True),
])
def test_safe_to_timeout_table(round, qc_round, tc_round, one_chain, expected):
    assert safe_to_timeout(round, qc_round, tc_round, one_chain) is expected


def test_aptos_2chain_vote_rules_sequence():
    """Aptos test_2chain_rules: genesis-a1 b1 b2 a2 b3 a3-a4 b4 a5-a6, voted in order."""
    a1 = make_block(1, GQC)
    b1 = make_block(2, GQC, tag=b"b1")
    b2 = child(3, a1)
    a2 = child(4, b1)
    b3 = child(5, b2)
    b4 = child(6, b3)
    a3 = child(6, a2)
    a4 = child(7, a3)
    a5 = child(8, a3)
    a6 = child(9, a5)
    sr = rules()
    cases = [  # (block, TC, vote expected, vote completes a 2-chain)
        (a1, None, True, True),
        (b1, tc(3, b1.header.parent_qc), False, False),
        (b2, None, False, False),
        (a2, tc(3, a2.header.parent_qc), True, False),
        (b3, tc(4, a3.header.parent_qc), False, False),
        (a3, None, False, False),
        (a4, tc(7, a3.header.parent_qc), True, True),
        (a5, tc(7, b4.header.parent_qc), True, False),
        (a6, tc(7, b4.header.parent_qc), True, True),
    ]
    for block, cert, vote_ok, commits in cases:
        if vote_ok:
            vote, persisted = sr.sign_vote(block, block_id=block_id(block.header), tc=cert)
            assert persisted is not None and persisted.last_voted_round == block.round
            data = vote.vote_data
            assert (data.parent_round + 1 == data.round) is commits
            assert sr.data.one_chain_round >= block.header.parent_qc.round
        else:
            with pytest.raises(SafetyError):
                sr.sign_vote(block, block_id=block_id(block.header), tc=cert)


def test_aptos_2chain_timeout_rules_sequence():
    """Aptos test_2chain_timeout."""
    a1 = make_block(1, GQC)
    a2 = child(2, a1)
    a3 = child(3, a2)
    sr = rules()
    sr.sign_timeout(round=1, high_qc=qc_at(0), tc=None)
    with pytest.raises(SafetyError) as err:
        sr.sign_timeout(round=2, high_qc=qc_at(0), tc=None)
    assert err.value.code == "not_safe_to_timeout"
    sr.sign_timeout(round=2, high_qc=qc_at(0), tc=tc(1, GQC))
    with pytest.raises(SafetyError) as err:
        sr.sign_timeout(round=1, high_qc=qc_at(0), tc=None)
    assert err.value.code == "already_voted_round"
    sr.sign_vote(a3, block_id=block_id(a3.header), tc=None)  # one-chain round -> 2
    with pytest.raises(SafetyError) as err:
        sr.sign_timeout(round=4, high_qc=qc_at(2), tc=tc(2, GQC))
    assert err.value.code == "not_safe_to_timeout"
    with pytest.raises(SafetyError) as err:
        sr.sign_timeout(round=4, high_qc=qc_at(1), tc=tc(3, GQC))
    assert err.value.code == "not_safe_to_timeout"
    with pytest.raises(SafetyError) as err:
        sr.sign_timeout(round=1, high_qc=qc_at(2), tc=tc(2, GQC))
    assert err.value.code == "invalid_timeout"
    assert a2.round == 2


def test_wrong_epoch_is_refused():
    sr = rules()
    block = make_block(1, GQC)
    other = Block(header=BlockHeader(**{**{f: getattr(block.header, f) for f in block.header.__struct_fields__},
                                        "epoch": EPOCH + 1}))
    with pytest.raises(SafetyError) as err:
        sr.sign_vote(other, block_id=block_id(other.header), tc=None)
    assert err.value.code == "wrong_epoch"


def test_repeated_vote_request_returns_the_same_vote():
    sr = rules()
    a1 = make_block(1, GQC)
    vote, persisted = sr.sign_vote(a1, block_id=block_id(a1.header), tc=None)
    assert persisted is not None and persisted.last_vote == vote
    again, nothing = sr.sign_vote(a1, block_id=block_id(a1.header), tc=None)
    assert again == vote and nothing is None
    conflicting = make_block(1, GQC, tag=b"other")
    third, _ = sr.sign_vote(conflicting, block_id=block_id(conflicting.header), tc=None)
    assert third == vote, "a conflicting proposal for a voted round never gets a second vote"


def test_repeated_timeout_returns_the_same_timeout():
    sr = rules()
    first, persisted = sr.sign_timeout(round=1, high_qc=qc_at(0), tc=None)
    again, nothing = sr.sign_timeout(round=1, high_qc=qc_at(0), tc=None)
    assert again == first and nothing is None and persisted is not None
    assert persisted.last_timeout == first


def test_no_vote_after_timing_out_in_the_round():
    sr = rules()
    sr.sign_timeout(round=1, high_qc=qc_at(0), tc=None)
    a1 = make_block(1, GQC)
    with pytest.raises(SafetyError) as err:
        sr.sign_vote(a1, block_id=block_id(a1.header), tc=None)
    assert err.value.code == "already_voted_round"


def test_double_sign_guard_waits_for_f_plus_1_peers_and_own_rounds():
    sr = SafetyRules(committee=COMMITTEE, me=1, signer=SIGNERS[1], data=None)
    a1 = make_block(1, GQC)
    with pytest.raises(SafetyError) as err:
        sr.sign_vote(a1, block_id=block_id(a1.header), tc=None)
    assert err.value.code == "double_sign_guard"
    sr.observe_network_round(0, 5)
    with pytest.raises(SafetyError):  # one peer is not enough (f + 1 = 2)
        sr.sign_timeout(round=6, high_qc=qc_at(5), tc=None)
    sr.observe_network_round(2, 6)  # the network is in round 6: we may have signed there
    sr.observe_own_signature(8)     # our key is in a certificate of round 8
    for round in (6, 7, 8):
        with pytest.raises(SafetyError) as err:
            sr.sign_timeout(round=round, high_qc=qc_at(round - 1), tc=None)
        assert err.value.code == "double_sign_guard"
    timeout, persisted = sr.sign_timeout(round=9, high_qc=qc_at(8), tc=None)
    assert timeout.data.round == 9 and persisted is not None


def test_proposal_refused_in_a_voted_round():
    sr = SafetyRules(committee=COMMITTEE, me=0, signer=SIGNERS[0], data=SafetyData(epoch=EPOCH))
    a1 = make_block(1, GQC)
    sr.sign_proposal(a1.header)
    sr.sign_vote(a1, block_id=block_id(a1.header), tc=None)
    with pytest.raises(SafetyError) as err:
        sr.sign_proposal(make_block(1, GQC, tag=b"x").header)
    assert err.value.code == "already_voted_round"


def _first_proposal(net: Net) -> tuple[int, ProposalMsg]:
    """Run the leader of round 1 until it broadcasts its proposal; return (leader, proposal)."""
    leader = net.cores[0].leader(1)
    core = net.cores[leader]
    core.handle(Tick(now_ms=GENESIS_MS))
    actions = core.handle(PayloadReady(round=1, payload=(b"tx",), executed_height=0,
                                       executed_state_root=bytes(32)))
    proposal = next(a.message for a in actions if isinstance(a, Broadcast))
    assert isinstance(proposal, ProposalMsg)
    return leader, proposal


def test_crash_between_persist_and_send_never_yields_a_conflicting_vote():
    """Setup: a voter persists its vote for round 1 and crashes before sending it.
    Check: restarted from the persisted data, a conflicting proposal for round 1 gets
    no vote for the other block (only the stored vote, if anything)."""
    net = Net(n=4)
    leader, proposal = _first_proposal(net)
    voter = (leader + 1) % 4
    core = net.cores[voter]
    core.handle(Tick(now_ms=GENESIS_MS))
    actions = core.handle(MessageReceived(sender=leader, message=proposal))
    persisted = [a.data for a in actions if isinstance(a, PersistSafety)]
    assert persisted and persisted[0].last_voted_round == 1
    original = block_id(proposal.block.header)

    restarted = net._new_core(voter, persisted[-1])  # the Send was lost with the crash
    restarted.handle(Tick(now_ms=GENESIS_MS))
    header = proposal.block.header
    payload = (b"conflicting",)
    other_header = BlockHeader(**{**{f: getattr(header, f) for f in header.__struct_fields__},
                                  "tx_root": payload_root(payload)})
    signature = net.signers[leader].sign(chain_id=COMMITTEE.chain_id, kind="PROPOSAL",
                                         message=codec.digest_of(other_header))
    other = ProposalMsg(block=Block(header=other_header, payload=payload), signature=signature,
                        sync=proposal.sync)
    votes = []
    detected = []
    for msg in (proposal, other):
        for action in restarted.handle(MessageReceived(sender=leader, message=msg)):
            if isinstance(action, Send) and isinstance(action.message, VoteMsg):
                votes.append(action.message.vote)
            if isinstance(action, EquivocationDetected):
                detected.append(action.author)
            assert not isinstance(action, PersistSafety), "nothing new to persist for round 1"
    assert votes == [persisted[-1].last_vote], "the original proposal gets the stored vote again"
    assert votes[0].vote_data.block_id == original
    assert detected == [leader], "the second proposal is equivocation, not a second vote"

    fresh = net._new_core(voter, persisted[-1])
    fresh.handle(Tick(now_ms=GENESIS_MS))
    for action in fresh.handle(MessageReceived(sender=leader, message=other)):
        assert not (isinstance(action, Send) and isinstance(action.message, VoteMsg)
                    and action.message.vote.vote_data.block_id != original)


def test_wiped_node_does_not_vote_in_the_round_it_may_have_signed():
    """Setup: 4 nodes run; node 3 is wiped (no safety data) and restarted.
    Check: it signs nothing for rounds up to the network round it first learns, no
    honest key ever signs two different votes for a round, and the chain keeps going."""
    net = Net(n=4)
    net.run_until(GENESIS_MS + 500)
    before = net.cores[3].round
    signed_before = max(r for node, r in net.persist_log if node == 3)
    mark = len(net.persist_log)
    net.restart(3, wipe=True)
    net.run_until(GENESIS_MS + 1_500)
    guard = net.cores[3]._safety.guard
    assert guard is not None and guard.armed
    signed_after = [r for node, r in net.persist_log[mark:] if node == 3]
    assert signed_after and min(signed_after) > max(signed_before, guard._floor_round or 0)
    assert net.cores[3].stats.sign_refusals > 0, "it was asked to sign and refused at first"
    assert net.cores[3].last_voted_round > before + 1
    assert net.double_voters() == []
    net.assert_agreement()
    assert min(len(c) for c in net.chains) > 50
