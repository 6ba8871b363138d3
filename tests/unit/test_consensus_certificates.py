"""Certificates prove what they claim (Aptos ``TwoChainTimeout``): a timeout carries
the QC of the round it claims, a TC carries the QC of its largest signed
``high_qc_round``, a leader adopts that QC; the wiped-node guard counts certified
rounds only; absurd rounds are rejected at the edge.

The forged-TC attack replayed here: a Byzantine validator signs a timeout claiming
a QC round for which no QC exists and combines it with f + 1 honest timeouts
(which every validator broadcasts) into a TC. Under the old rule (signatures and
``high_qc_round < round`` only) that TC was valid, and ``safe_to_vote`` then needed
a QC nobody has: every honest proposal of the next round was refused."""

from __future__ import annotations

import msgspec
import pytest

from consensus import codec, crypto
from consensus.core import RestorePoint, genesis_qc
from consensus.events import MessageReceived
from consensus.safety import SafetyRules, safe_to_vote
from consensus.types import (
    MAX_ROUND,
    Block,
    BlockHeader,
    BlockResponse,
    ProposalMsg,
    QuorumCert,
    SafetyData,
    SyncInfo,
    Timeout,
    TimeoutCert,
    TimeoutData,
    TimeoutMsg,
    VoteData,
)
from consensus.validation import InvalidMessage, check_message, check_tc
from tests.unit.consensus_net import EPOCH, GENESIS, GENESIS_MS, Net, make_committee

GQC = genesis_qc(GENESIS)
BYZANTINE = 3


@pytest.fixture(scope="module")
def chain() -> tuple[Net, QuorumCert, QuorumCert]:
    """A short honest run: its highest QC (round R) and the QC below it (round R - 1)."""
    net = Net(n=4)
    net.run_until(GENESIS_MS + 2_000)
    high = net.cores[0].high_qc
    lower = net.blocks[high.block_id].header.parent_qc
    assert high.round >= 3 and lower.round == high.round - 1
    return net, high, lower


def _sign(net: Net, author: int, round: int, high_qc_round: int) -> bytes:
    data = TimeoutData(epoch=EPOCH, round=round, high_qc_round=high_qc_round)
    return net.signers[author].sign(chain_id=make_committee(net.signers).chain_id,
                                    kind=crypto.KIND_TIMEOUT, message=codec.encode(data))


def _old_check_tc(tc: TimeoutCert, net: Net) -> None:
    """The rule before certificates carried their QC: a quorum of valid timeout
    signatures, each claimed QC round below the TC's round. Nothing else."""
    committee = make_committee(net.signers)
    assert len(set(tc.signers)) >= committee.quorum
    for signer, qc_round, signature in zip(tc.signers, tc.high_qc_rounds, tc.signatures, strict=True):
        assert 0 <= qc_round < tc.round
        data = TimeoutData(epoch=tc.epoch, round=tc.round, high_qc_round=qc_round)
        assert crypto.verify(committee.public_key(signer), signature, chain_id=committee.chain_id,
                             kind=crypto.KIND_TIMEOUT, message=codec.encode(data))


def _forged_tc(net: Net, high: QuorumCert, *, carried: QuorumCert) -> TimeoutCert:
    """Honest 0 and 1 time out in round T with their real high QC round R; the
    Byzantine validator claims T - 1, for which no QC exists."""
    round = high.round + 5
    rounds = {0: high.round, 1: high.round, BYZANTINE: round - 1}
    signers = tuple(sorted(rounds))
    return TimeoutCert(epoch=EPOCH, round=round, signers=signers,
                       high_qc_rounds=tuple(rounds[s] for s in signers),
                       signatures=tuple(_sign(net, s, round, rounds[s]) for s in signers),
                       high_qc=carried)


def test_forged_tc_stalled_the_chain_under_the_old_rule(chain):
    net, high, _ = chain
    tc = _forged_tc(net, high, carried=high)
    _old_check_tc(tc, net)  # the old rule accepted it ...
    # ... and then no honest leader could be voted for in the next round: the best QC
    # anyone holds is R, the TC demands T - 1 > R.
    assert tc.high_qc_round > high.round
    assert not any(safe_to_vote(tc.round + 1, qc_round, tc) for qc_round in range(high.round + 1))


def test_forged_tc_is_rejected_now(chain):
    net, high, _ = chain
    committee = make_committee(net.signers)
    # Carrying the best real QC: its round is not the largest signed one.
    with pytest.raises(InvalidMessage) as err:
        check_tc(_forged_tc(net, high, carried=high), committee=committee)
    assert err.value.code == "bad_tc"
    # Carrying a made-up QC of the claimed round: it has no quorum of signatures.
    fake = QuorumCert(vote_data=msgspec.structs.replace(high.vote_data, round=high.round + 4),
                      signers=high.signers, signatures=high.signatures)
    with pytest.raises(InvalidMessage) as err:
        check_tc(_forged_tc(net, high, carried=fake), committee=committee)
    assert err.value.code == "bad_signature"
    # The Byzantine timeout itself cannot show the QC it claims: with the real QC ...
    round = high.round + 5
    timeout = Timeout(data=TimeoutData(epoch=EPOCH, round=round, high_qc_round=round - 1), author=BYZANTINE,
                      signature=_sign(net, BYZANTINE, round, round - 1), high_qc=high)
    sync = SyncInfo(high_qc=high, high_commit_qc=GQC)
    with pytest.raises(InvalidMessage) as err:
        check_message(TimeoutMsg(timeout=timeout, sync=sync), sender=BYZANTINE, committee=committee)
    assert err.value.code == "bad_timeout"
    # ... or with the made-up one.
    timeout = msgspec.structs.replace(timeout, high_qc=fake)
    with pytest.raises(InvalidMessage) as err:
        check_message(TimeoutMsg(timeout=timeout, sync=msgspec.structs.replace(sync, high_qc=fake)),
                      sender=BYZANTINE, committee=committee)
    assert err.value.code == "bad_signature"


def test_leader_adopts_the_qc_a_tc_carries(chain):
    """A node that only knows QC R - 1 receives a valid TC whose largest claim is R:
    it adopts the TC's QC, so as leader of the next round it proposes on R, which
    every honest voter accepts."""
    net, high, lower = chain
    committee = make_committee(net.signers)
    round = high.round + 1
    rounds = {0: high.round, 1: lower.round, 2: lower.round}
    signers = tuple(sorted(rounds))
    tc = TimeoutCert(epoch=EPOCH, round=round, signers=signers,
                     high_qc_rounds=tuple(rounds[s] for s in signers),
                     signatures=tuple(_sign(net, s, round, rounds[s]) for s in signers), high_qc=high)
    check_tc(tc, committee=committee)
    timeout = Timeout(data=TimeoutData(epoch=EPOCH, round=round, high_qc_round=lower.round), author=1,
                      signature=_sign(net, 1, round, lower.round), high_qc=lower)
    msg = TimeoutMsg(timeout=timeout, sync=SyncInfo(high_qc=lower, high_commit_qc=GQC, high_tc=tc))
    check_message(msg, sender=1, committee=committee)
    fresh = net._new_core(2, SafetyData(epoch=EPOCH))
    assert fresh.high_qc.round == 0
    fresh.handle(MessageReceived(sender=1, message=msg))
    assert fresh.high_qc == high
    assert fresh.round == round + 1
    assert safe_to_vote(round + 1, fresh.high_qc.round, tc)


def test_wiped_node_guard_ignores_uncertified_round_claims(chain):
    """One Byzantine proposal or timeout claiming a huge round no longer sets the
    wiped node's floor: only the certificates in sync info count."""
    net, high, _ = chain
    committee = make_committee(net.signers)
    wiped = net._new_core(0, None)
    huge = 10**12
    data = TimeoutData(epoch=EPOCH, round=huge, high_qc_round=high.round)
    signature = net.signers[BYZANTINE].sign(chain_id=committee.chain_id, kind=crypto.KIND_TIMEOUT,
                                            message=codec.encode(data))
    claim = TimeoutMsg(timeout=Timeout(data=data, author=BYZANTINE, signature=signature, high_qc=high),
                       sync=SyncInfo(high_qc=high, high_commit_qc=GQC))
    check_message(claim, sender=BYZANTINE, committee=committee)  # a valid message ...
    wiped.handle(MessageReceived(sender=BYZANTINE, message=claim))
    honest = TimeoutMsg(timeout=rules_timeout(net, 1, high), sync=SyncInfo(high_qc=high, high_commit_qc=GQC))
    wiped.handle(MessageReceived(sender=1, message=honest))
    guard = wiped._safety.guard
    assert guard is not None and guard.armed
    assert guard.allows(high.round + 2), guard.describe()  # ... that does not mute the node
    assert not guard.allows(high.round + 1)


def rules_timeout(net: Net, author: int, high: QuorumCert) -> Timeout:
    rules = SafetyRules(committee=make_committee(net.signers), me=author, signer=net.signers[author],
                        data=SafetyData(epoch=EPOCH))
    timeout, _ = rules.sign_timeout(round=high.round + 1, high_qc=high, tc=None)
    return timeout


def test_absurd_rounds_are_rejected_at_the_edge(chain):
    net, high, _ = chain
    committee = make_committee(net.signers)
    round = MAX_ROUND + 1
    data = TimeoutData(epoch=EPOCH, round=round, high_qc_round=high.round)
    signature = net.signers[BYZANTINE].sign(chain_id=committee.chain_id, kind=crypto.KIND_TIMEOUT,
                                            message=codec.encode(data))
    msg = TimeoutMsg(timeout=Timeout(data=data, author=BYZANTINE, signature=signature, high_qc=high),
                     sync=SyncInfo(high_qc=high, high_commit_qc=GQC))
    with pytest.raises(InvalidMessage) as err:
        check_message(msg, sender=BYZANTINE, committee=committee)
    assert err.value.code == "bad_round"
    inflated = QuorumCert(vote_data=msgspec.structs.replace(high.vote_data, round=round),
                          signers=high.signers, signatures=high.signatures)
    with pytest.raises(InvalidMessage) as err:
        check_message(msgspec.structs.replace(msg, sync=SyncInfo(high_qc=inflated, high_commit_qc=GQC)),
                      sender=BYZANTINE, committee=committee)
    assert err.value.code == "bad_round"


def _false_blame(net: Net, culprit: int, blamed: int):
    """``culprit`` leads with blocks naming ``blamed`` for every skipped round."""
    def hook(sender: int, action):
        msg = action.message
        if sender != culprit or not isinstance(msg, ProposalMsg) or not msg.block.header.failed_authors:
            return None
        header = msg.block.header
        lie = msgspec.structs.replace(header, failed_authors=tuple((r, blamed) for r, _ in header.failed_authors))
        signature = net.signers[culprit].sign(chain_id=make_committee(net.signers).chain_id,
                                              kind=crypto.KIND_PROPOSAL, message=codec.digest_of(lie))
        forged.append((lie.round, codec.digest_of(lie)))
        evil = ProposalMsg(block=Block(header=lie, payload=msg.block.payload), signature=signature, sync=msg.sync)
        return [(j, evil) for j in range(net.n) if j != culprit]
    forged: list[tuple[int, bytes]] = []
    return hook, forged


def test_false_blame_is_refused_from_the_first_round():
    """Setup: the leader of round 1 is down, so round 2's leader names it as failed
    author — but lies, naming an honest validator instead. Check: already in round 2
    (the old rule checked only from round 16 on) every honest voter refuses it, and
    the lie is never committed."""
    probe = Net(n=4)
    dead = probe.cores[0].leader(1)
    liar = probe.cores[0].leader(2)
    assert dead != liar
    blamed = next(i for i in range(4) if i not in (dead, liar))
    net = Net(n=4, down={dead})
    net.send_hook, forged = _false_blame(net, liar, blamed)
    net.run_until(GENESIS_MS + 40_000)  # two of four faulty: slow (timeouts back off), never unsafe
    assert forged and forged[0][0] == 2, forged
    net.assert_agreement()
    voters = [net.cores[i] for i in range(4) if i not in (dead, liar)]
    assert all(core.stats.invalid_proposals > 0 for core in voters)
    assert net.chains[blamed]
    lies = {bid for _, bid in forged}
    voted = {vote_data_of(encoded).block_id for (author, _), datas in net.votes_seen.items()
             if author not in (dead, liar) for encoded in datas}
    assert not lies & voted, "an honest validator voted for a false blame"
    assert not lies & {bid for chain in net.chains for bid in chain}


def vote_data_of(encoded: bytes) -> VoteData:
    return codec.decode_canonical(encoded, VoteData)


def test_failed_authors_after_a_restore_without_history():
    """A core restored from committed state with only the credit after it cannot
    compute the leaders of the next ``lag`` rounds: there it checks the rounds named,
    not their authors; from ``_leaders_exact_from`` on it checks both."""
    net = Net(n=4)
    net.run_until(GENESIS_MS + 300)
    point = net.cores[1].restore_point()
    core = net._new_core(1, SafetyData(epoch=EPOCH),
                         RestorePoint(block=point.block, commit_qc=point.commit_qc, credit=net.cores[1].credit))
    exact = core._leaders_exact_from
    assert exact > point.block.round + 1
    base = point.block.header

    def header(qc_round: int, round: int, named: tuple[tuple[int, int], ...]) -> BlockHeader:
        qc = msgspec.structs.replace(base.parent_qc, vote_data=msgspec.structs.replace(
            base.parent_qc.vote_data, round=qc_round))
        return msgspec.structs.replace(base, round=round, parent_qc=qc, failed_authors=named)

    unknown = exact - 3
    assert core._failed_authors_ok(header(unknown - 1, unknown + 1, ((unknown, 0),)))
    assert core._failed_authors_ok(header(unknown - 1, unknown + 1, ((unknown, 3),)))
    assert not core._failed_authors_ok(header(unknown - 1, unknown + 1, ()))  # a skipped round hidden
    assert not core._failed_authors_ok(header(unknown - 2, unknown + 1, ((unknown, 0),)))
    known = exact + 2
    right = core.leader(known)
    assert core._failed_authors_ok(header(known - 1, known + 1, ((known, right),)))
    assert not core._failed_authors_ok(header(known - 1, known + 1, ((known, (right + 1) % 4),)))


def test_fetched_blocks_must_match_their_tx_root(chain):
    net, high, _ = chain
    committee = make_committee(net.signers)
    block = net.blocks[high.block_id]
    check_message(BlockResponse(blocks=(block,)), sender=0, committee=committee)
    garbage = Block(header=block.header, payload=(b"not what the leader proposed",))
    with pytest.raises(InvalidMessage) as err:
        check_message(BlockResponse(blocks=(garbage,)), sender=0, committee=committee)
    assert err.value.code == "bad_payload"
