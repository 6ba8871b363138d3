"""The simulator's own parts, without a consensus core: network model, checker,
fault schedule and configuration. If these are wrong the sweep proves nothing."""

from __future__ import annotations

import random

import msgspec
import pytest

from consensus import codec
from consensus.types import (
    Block,
    BlockHeader,
    ProposalMsg,
    QuorumCert,
    SyncInfo,
    Timeout,
    TimeoutData,
    TimeoutMsg,
    Vote,
    VoteData,
    VoteMsg,
    block_id,
)
from node.cli import build_parser
from node.cli.sim import config_from_args
from node.sim.checker import Checker
from node.sim.config import SimConfig
from node.sim.network import NetworkModel
from node.sim.schedule import instance_count, make_plan

GENESIS_QC = QuorumCert(
    vote_data=VoteData(epoch=1, round=0, height=0, block_id=b"\0" * 32, parent_id=b"\0" * 32,
                       parent_round=0)
)


def block(height: int, salt: bytes = b"") -> Block:
    header = BlockHeader(
        epoch=1, round=height, height=height, parent_qc=GENESIS_QC, author=0,
        timestamp_ms=height, tx_root=codec.digest(salt), executed_height=0,
        executed_state_root=b"\0" * 32,
    )
    return Block(header=header)


SYNC = SyncInfo(high_qc=GENESIS_QC, high_commit_qc=GENESIS_QC)


def vote(author: int, round: int, target: bytes) -> VoteMsg:
    data = VoteData(epoch=1, round=round, height=round, block_id=target, parent_id=b"\0" * 32,
                    parent_round=round - 1)
    return VoteMsg(vote=Vote(vote_data=data, author=author, signature=b"\0" * 64), sync=SYNC)


def timeout(author: int, round: int, high_qc_round: int) -> TimeoutMsg:
    data = TimeoutData(epoch=1, round=round, high_qc_round=high_qc_round)
    return TimeoutMsg(timeout=Timeout(data=data, author=author, signature=b"\0" * 64, high_qc=GENESIS_QC),
                      sync=SYNC)


def proposal(author: int, round: int, salt: bytes) -> ProposalMsg:
    b = block(round, salt)
    header = msgspec.structs.replace(b.header, author=author)
    return ProposalMsg(block=Block(header=header), signature=b"\0" * 64, sync=SYNC)


def network(**kw: int) -> NetworkModel:
    args = dict(min_delay_ms=5, max_delay_ms=50, loss_percent=0, duplicate_percent=0)
    args.update(kw)
    return NetworkModel(random.Random(7), **args)


def test_network_loses_about_the_configured_share() -> None:
    net = network(loss_percent=20)
    delivered = sum(1 for _ in range(10_000) if net.plan(0, 1))
    assert 7_600 <= delivered <= 8_400
    assert net.lost == 10_000 - delivered


def test_network_duplicates_and_delays_within_bounds() -> None:
    net = network(duplicate_percent=10)
    plans = [net.plan(0, 1) for _ in range(5_000)]
    copies = [len(p) for p in plans]
    assert set(copies) == {1, 2}
    assert 350 <= copies.count(2) <= 650
    delays = [d for p in plans for d in p]
    assert min(delays) >= 5 and max(delays) <= 50 + 10 * 50
    assert sum(1 for d in delays if d > 50) > 0, "the long tail never happens"


def test_partition_blocks_across_groups_until_healed() -> None:
    net = network()
    net.split([(0, 1), (2, 3)])
    assert net.plan(0, 1) and net.plan(2, 3)
    assert net.plan(0, 2) == [] and net.plan(3, 1) == []
    assert not net.connected(0, 3)
    net.heal()
    assert net.plan(0, 2) and net.connected(0, 3)


def test_network_fate_is_a_function_of_the_seed() -> None:
    a, b = network(loss_percent=10, duplicate_percent=10), network(loss_percent=10, duplicate_percent=10)
    assert [a.plan(0, 1) for _ in range(500)] == [b.plan(0, 1) for _ in range(500)]


def test_checker_accepts_identical_commits_and_flags_conflicting_ones() -> None:
    checker = Checker(honest_indices={0, 1, 2})
    chains: list[list[bytes]] = [[], [], []]
    checker.on_commit(instance=0, index=0, chain=chains[0], blocks=(block(1), block(2)))
    checker.on_commit(instance=1, index=1, chain=chains[1], blocks=(block(1),))
    checker.on_commit(instance=1, index=1, chain=chains[1], blocks=(block(1), block(2)))
    assert checker.ok and checker.agreed_height == 2
    checker.on_commit(instance=2, index=2, chain=chains[2], blocks=(block(1, b"other"),))
    assert [v.kind for v in checker.violations] == ["agreement"]


def test_checker_ignores_byzantine_commits_but_flags_gaps() -> None:
    checker = Checker(honest_indices={0})
    checker.on_commit(instance=3, index=3, chain=[], blocks=(block(1, b"evil"),))
    assert checker.ok
    checker.on_commit(instance=0, index=0, chain=[], blocks=(block(2),))
    assert [v.kind for v in checker.violations] == ["gap"]


def test_checker_flags_an_honest_double_vote_only() -> None:
    checker = Checker(honest_indices={0, 1})
    checker.on_message_sent(sender_index=0, message=vote(0, 5, b"a" * 32))
    checker.on_message_sent(sender_index=0, message=vote(0, 5, b"a" * 32))  # repeated: same vote
    checker.on_message_sent(sender_index=0, message=vote(0, 6, b"b" * 32))
    checker.on_message_sent(sender_index=2, message=vote(2, 5, b"a" * 32))
    checker.on_message_sent(sender_index=2, message=vote(2, 5, b"c" * 32))  # Byzantine: allowed
    assert checker.ok
    checker.on_message_sent(sender_index=0, message=vote(0, 5, b"c" * 32))
    assert [v.kind for v in checker.violations] == ["double_vote"]


def test_checker_flags_honest_double_timeouts_and_proposals() -> None:
    checker = Checker(honest_indices={0, 1})
    checker.on_message_sent(sender_index=1, message=timeout(1, 7, 5))
    checker.on_message_sent(sender_index=1, message=timeout(1, 7, 5))
    checker.on_message_sent(sender_index=0, message=proposal(0, 7, b"x"))
    checker.on_message_sent(sender_index=0, message=proposal(0, 7, b"x"))
    assert checker.ok
    checker.on_message_sent(sender_index=1, message=timeout(1, 7, 6))
    checker.on_message_sent(sender_index=0, message=proposal(0, 7, b"y"))
    assert [v.kind for v in checker.violations] == ["double_timeout", "double_proposal"]


def test_checker_flags_an_honest_sender_forwarding_someone_elses_vote() -> None:
    checker = Checker(honest_indices={0, 1})
    checker.on_message_sent(sender_index=0, message=vote(1, 5, b"a" * 32))
    assert [v.kind for v in checker.violations] == ["double_vote"]


def test_block_helper_ids_differ() -> None:
    assert block_id(block(1).header) != block_id(block(1, b"x").header)


@pytest.mark.parametrize("seed", range(30))
def test_fault_plan_is_deterministic_and_within_budget(seed: int) -> None:
    config = SimConfig(nodes=7, seed=seed, rounds=80, byzantine=seed % 3, crash=2,
                       partition=True, behaviour="twins")
    plan = make_plan(config)
    assert plan == make_plan(config)
    f = 2
    assert len(plan.byzantine) == seed % 3
    assert len(plan.byzantine) + plan.wiped <= f
    assert not set(plan.byzantine) & {c.index for c in plan.crashes}
    assert all(1 <= c.at_round < plan.fault_end_round for c in plan.crashes)
    instances = set(range(instance_count(config)))
    for p in plan.partitions:
        assert set(p.groups[0]) | set(p.groups[1]) == instances
        assert p.groups[0] and p.groups[1]


def test_reproduce_command_parses_back_to_the_same_config() -> None:
    config = SimConfig(nodes=7, seed=42, rounds=77, byzantine=2, behaviour="double-vote",
                       crash=1, partition=True, loss_percent=15, max_delay_ms=90,
                       fault_delay_ms=700)
    argv = config.reproduce_command().split()[1:]
    assert config_from_args(build_parser().parse_args(argv)) == config


def test_bad_configs_are_refused() -> None:
    for bad in (SimConfig(nodes=0), SimConfig(byzantine=5), SimConfig(loss_percent=101),
                SimConfig(min_delay_ms=10, max_delay_ms=5), SimConfig(rounds=0)):
        with pytest.raises(ValueError):
            bad.check()
