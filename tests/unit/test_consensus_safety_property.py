"""Property: whatever sequence of vote/timeout requests and crash-restarts (from the
last persisted safety data) the safety rules see, one key never signs two different
votes for a round, never votes in a round after timing out in it, and never signs two
different timeouts for a round."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.safety import SafetyError, SafetyRules
from consensus.types import (
    Block,
    BlockHeader,
    QuorumCert,
    SafetyData,
    TimeoutCert,
    VoteData,
    block_id,
    payload_root,
)
from tests.unit.consensus_net import EPOCH, make_committee, make_signers

SIGNERS = make_signers(4)
COMMITTEE = make_committee(SIGNERS)


def _qc(round: int) -> QuorumCert:
    data = VoteData(epoch=EPOCH, round=round, height=round, block_id=bytes([round % 256]) * 32,
                    parent_id=bytes(32), parent_round=max(0, round - 1))
    return QuorumCert(vote_data=data, signers=(0, 1, 2) if round else (), signatures=(bytes(64),) * 3 if round else ())


def _block(round: int, qc_round: int, tag: int) -> Block:
    payload = (bytes([tag]),)
    header = BlockHeader(epoch=EPOCH, round=round, height=qc_round + 1, parent_qc=_qc(qc_round), author=0,
                         timestamp_ms=round, tx_root=payload_root(payload), executed_height=0,
                         executed_state_root=bytes(32))
    return Block(header=header, payload=payload)


operation = st.one_of(
    st.tuples(st.just("vote"), st.integers(1, 12), st.integers(0, 11), st.integers(0, 2),
              st.one_of(st.none(), st.tuples(st.integers(1, 11), st.integers(0, 10)))),
    st.tuples(st.just("timeout"), st.integers(1, 12), st.integers(0, 11),
              st.one_of(st.none(), st.integers(1, 11))),
    st.tuples(st.just("crash")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, min_size=1, max_size=40))
def test_no_conflicting_signatures_across_crashes(ops):
    disk = SafetyData(epoch=EPOCH)
    rules = SafetyRules(committee=COMMITTEE, me=1, signer=SIGNERS[1], data=disk)
    votes: dict[int, set[bytes]] = {}
    timeouts: dict[int, set[bytes]] = {}
    for op in ops:
        if op[0] == "crash":
            rules = SafetyRules(committee=COMMITTEE, me=1, signer=SIGNERS[1], data=disk)
            continue
        try:
            if op[0] == "vote":
                _, round, qc_round, tag, tc_spec = op
                if qc_round >= round:
                    continue
                tc = None
                if tc_spec is not None:
                    tc = TimeoutCert(epoch=EPOCH, round=tc_spec[0], signers=(0, 1, 2),
                                     high_qc_rounds=(min(tc_spec[1], tc_spec[0] - 1),) * 3,
                                     signatures=(bytes(64),) * 3,
                                     high_qc=_qc(min(tc_spec[1], tc_spec[0] - 1)))
                block = _block(round, qc_round, tag)
                vote, new = rules.sign_vote(block, block_id=block_id(block.header), tc=tc)
                if new is not None:
                    disk = new
                    assert round not in timeouts, "a new vote in a round already timed out"
                votes.setdefault(vote.vote_data.round, set()).add(vote.signature)
            else:
                _, round, qc_round, tc_round = op
                tc = None if tc_round is None else TimeoutCert(
                    epoch=EPOCH, round=tc_round, signers=(0, 1, 2), high_qc_rounds=(0, 0, 0),
                    signatures=(bytes(64),) * 3, high_qc=_qc(0))
                timeout, new = rules.sign_timeout(round=round, high_qc=_qc(qc_round), tc=tc)
                if new is not None:
                    disk = new
                timeouts.setdefault(timeout.data.round, set()).add(timeout.signature)
        except SafetyError:
            continue
    assert all(len(sigs) == 1 for sigs in votes.values()), "two different votes for one round"
    assert all(len(sigs) == 1 for sigs in timeouts.values()), "two different timeouts for one round"
