"""Pacemaker and message handling of a single core driven by hand: deadlines, the
f + 1 timeout join, TC formation, block requests, and input that must change nothing."""

from __future__ import annotations

from consensus import codec
from consensus.actions import Broadcast, RequestPayload, RoundEntered, ScheduleTick, Send
from consensus.core import Core, genesis_qc
from consensus.events import BlocksFetched, MessageReceived, PayloadReady, Tick
from consensus.safety import SafetyRules
from consensus.types import (
    Block,
    BlockHeader,
    BlockRequest,
    BlockResponse,
    ProposalMsg,
    SafetyData,
    SyncInfo,
    TimeoutMsg,
    block_id,
    payload_root,
)
from tests.unit.consensus_net import EPOCH, GENESIS, GENESIS_MS, Net, make_committee

GQC = genesis_qc(GENESIS)
SYNC = SyncInfo(high_qc=GQC, high_commit_qc=GQC)


def _core(net: Net, me: int) -> Core:
    core = net._new_core(me, SafetyData(epoch=EPOCH))
    core.handle(Tick(now_ms=GENESIS_MS))
    return core


def _timeout(net: Net, author: int, round: int = 1) -> TimeoutMsg:
    rules = SafetyRules(committee=make_committee(net.signers), me=author, signer=net.signers[author],
                        data=SafetyData(epoch=EPOCH))
    timeout, _ = rules.sign_timeout(round=round, high_qc=GQC, tc=None)
    return TimeoutMsg(timeout=timeout, sync=SYNC)


def test_first_tick_starts_round_one_with_a_deadline_last():
    net = Net(n=4)
    core = net._new_core(0, SafetyData(epoch=EPOCH))
    actions = core.handle(Tick(now_ms=GENESIS_MS))
    assert isinstance(actions[-1], ScheduleTick)
    assert actions[-1].at_ms == GENESIS_MS + net.params.round_timeout_ms
    assert any(isinstance(a, RoundEntered) and a.round == 1 for a in actions)
    assert any(isinstance(a, RequestPayload) for a in actions) == (core.leader(1) == 0)
    assert [a for a in core.handle(Tick(now_ms=GENESIS_MS + 10)) if not isinstance(a, ScheduleTick)] == []


def test_deadline_broadcasts_a_timeout_and_resends_the_same_one():
    net = Net(n=4)
    core = _core(net, 0)
    first = core.handle(Tick(now_ms=GENESIS_MS + net.params.round_timeout_ms))
    sent = [a.message for a in first if isinstance(a, Broadcast)]
    assert len(sent) == 1 and isinstance(sent[0], TimeoutMsg) and sent[0].timeout.data.round == 1
    assert core.stats.timeouts == 1
    again = core.handle(Tick(now_ms=GENESIS_MS + 3 * net.params.round_timeout_ms))
    resent = [a.message for a in again if isinstance(a, Broadcast)]
    assert resent == sent, "the same signed timeout, never a second one"
    assert core.stats.timeouts == 1


def test_f_plus_1_timeouts_make_a_node_join_and_2f_plus_1_form_a_tc():
    net = Net(n=4)
    core = _core(net, 0)
    assert [a for a in core.handle(MessageReceived(sender=1, message=_timeout(net, 1)))
            if isinstance(a, Broadcast)] == []
    joined = core.handle(MessageReceived(sender=2, message=_timeout(net, 2)))
    own = [a.message for a in joined if isinstance(a, Broadcast)]
    assert len(own) == 1 and own[0].timeout.author == 0, "f + 1 = 2 timeouts: join before the deadline"
    # Our own timeout was the third: 2f + 1 = 3 form a TC and round 2 starts.
    entered = [a for a in joined if isinstance(a, RoundEntered)]
    assert entered and entered[0].round == 2 and entered[0].via_timeout
    assert core.high_tc is not None and core.high_tc.round == 1 and core.stats.tcs == 1


def test_block_request_is_answered_from_the_tree():
    net = Net(n=4)
    net.run_until(GENESIS_MS + 200)
    core = net.cores[0]
    tip = core.high_qc.block_id
    actions = core.handle(MessageReceived(sender=1, message=BlockRequest(block_id=tip, count=3)))
    responses = [a for a in actions if isinstance(a, Send) and isinstance(a.message, BlockResponse)]
    assert len(responses) == 1 and responses[0].to == 1
    blocks = responses[0].message.blocks
    assert block_id(blocks[0].header) == tip and 1 <= len(blocks) <= 3
    assert all(blocks[i].parent_id == block_id(blocks[i + 1].header) for i in range(len(blocks) - 1))


def test_unsolicited_blocks_and_wrong_leader_proposals_change_nothing():
    net = Net(n=4)
    core = _core(net, 0)
    leader = core.leader(1)
    impostor = next(i for i in range(1, 4) if i != leader)
    header = BlockHeader(epoch=EPOCH, round=1, height=1, parent_qc=GQC, author=impostor,
                         timestamp_ms=GENESIS_MS + 1, tx_root=payload_root(()), executed_height=0,
                         executed_state_root=bytes(32))
    block = Block(header=header)
    before = (core.round, core.last_voted_round, len(core._tree), core.committed_height)
    core.handle(BlocksFetched(blocks=(block,)))
    signature = net.signers[impostor].sign(chain_id=make_committee(net.signers).chain_id,
                                           kind="PROPOSAL", message=codec.digest_of(header))
    actions = core.handle(MessageReceived(sender=impostor, message=ProposalMsg(
        block=block, signature=signature, sync=SYNC)))
    assert [a for a in actions if not isinstance(a, ScheduleTick)] == []
    assert (core.round, core.last_voted_round, len(core._tree), core.committed_height) == before
    assert core.stats.invalid_proposals == 1


def test_stale_payload_is_ignored():
    net = Net(n=4)
    leader = net.cores[0].leader(1)
    core = _core(net, leader)
    stale = core.handle(PayloadReady(round=7, payload=(b"x",), executed_height=0,
                                     executed_state_root=bytes(32)))
    assert [a for a in stale if not isinstance(a, ScheduleTick)] == []
    fresh = core.handle(PayloadReady(round=1, payload=(b"x",), executed_height=0,
                                     executed_state_root=bytes(32)))
    assert any(isinstance(a, Broadcast) and isinstance(a.message, ProposalMsg) for a in fresh)
    again = core.handle(PayloadReady(round=1, payload=(b"y",), executed_height=0,
                                     executed_state_root=bytes(32)))
    assert not any(isinstance(a, Broadcast) for a in again), "one proposal per round"



def test_two_different_timeouts_for_one_round_are_equivocation():
    from consensus.aggregator import Aggregator
    from consensus.types import Timeout, TimeoutData
    from consensus.validation import check_evidence

    net = Net(n=4)
    chain_id = make_committee(net.signers).chain_id

    def signed(high_qc_round: int) -> Timeout:
        data = TimeoutData(epoch=EPOCH, round=2, high_qc_round=high_qc_round)
        return Timeout(data=data, author=1, signature=net.signers[1].sign(
            chain_id=chain_id, kind="TIMEOUT", message=codec.encode(data)), high_qc=GQC)

    aggregator = Aggregator(epoch=EPOCH, quorum=3)
    assert aggregator.add_timeout(signed(0)).evidence is None
    assert aggregator.add_timeout(signed(0)).evidence is None, "a duplicate is not evidence"
    evidence = aggregator.add_timeout(signed(1)).evidence
    assert evidence is not None and evidence.kind == "timeout" and evidence.author == 1
    check_evidence(evidence, committee=make_committee(net.signers))
    assert aggregator.timeout_count(2) == 1, "the second timeout does not count twice"


def test_proposal_from_the_future_waits_for_a_fresh_clock_then_is_judged():
    """The core knows the time only from Ticks: a proposal stamped beyond now + drift
    makes it ask for a Tick; with the fresh time it votes, or refuses if still too early."""
    from consensus.actions import PersistSafety

    net = Net(n=4)
    leader = net.cores[0].leader(1)
    voter = (leader + 1) % 4
    drift = net.params.max_clock_drift_ms

    def proposal(timestamp_ms: int) -> ProposalMsg:
        header = BlockHeader(epoch=EPOCH, round=1, height=1, parent_qc=GQC, author=leader,
                             timestamp_ms=timestamp_ms, tx_root=payload_root(()), executed_height=0,
                             executed_state_root=bytes(32))
        signature = net.signers[leader].sign(chain_id=make_committee(net.signers).chain_id,
                                             kind="PROPOSAL", message=codec.digest_of(header))
        return ProposalMsg(block=Block(header=header), signature=signature, sync=SYNC)

    core = _core(net, voter)
    early = GENESIS_MS + drift + 500
    actions = core.handle(MessageReceived(sender=leader, message=proposal(early)))
    assert not any(isinstance(a, PersistSafety) for a in actions)
    assert isinstance(actions[-1], ScheduleTick) and actions[-1].at_ms <= GENESIS_MS, "tick me now"
    voted = core.handle(Tick(now_ms=GENESIS_MS + 600))   # the real time had moved on
    assert any(isinstance(a, PersistSafety) for a in voted)

    other = _core(net, voter)
    too_early = GENESIS_MS + drift + 5_000
    other.handle(MessageReceived(sender=leader, message=proposal(too_early)))
    refused = other.handle(Tick(now_ms=GENESIS_MS + 600))
    assert not any(isinstance(a, PersistSafety) for a in refused)
    assert other.stats.invalid_proposals == 1
