"""A fast model of leader rotation over many rounds: the real ``consensus.leader`` and
``consensus.credit`` code, driven with round outcomes instead of a network.

The full simulator (``node.sim.runner``) runs every message of every validator and
needs minutes for 10,000 rounds; fairness claims need 100,000 rounds and several
seeds. This model keeps exactly the parts that decide who leads and replaces the
rest by the outcome each round has in C-LBFT:

* the leader of round ``r`` is ``LeaderHistory.leader(r)``: credit snapshots after
  each committed block, ``lag_rounds`` behind, seeded by the committed block's id
  (here a digest of the model seed, the round and the proposer);
* a leader that acts proposes a block on the highest certified block, naming the
  leaders of the rounds in between as failed authors (at most ``MAX_FAILED_AUTHORS``,
  as ``consensus.core`` does); the block is certified in the next round unless that
  round's leader is *down* (its votes go to a validator that does not aggregate), and
  a certified block whose parent is the certified block of the round before it
  commits its chain (the 2-chain rule); every commit goes through
  ``consensus.credit.apply_committed_block`` and ``LeaderHistory.append_credit``;
* equivocation evidence against a leader that equivocated is carried by the next
  block proposed.

What a validator does each round comes from a ``Fault`` plan and, for every leader,
``noise_percent`` (rounds lost to the network). The model assumes the commits a round's
election needs are known by then (the core waits for them); with ``lag_rounds`` of 10
and a commit two rounds after its block, that holds except in failure streaks longer
than the lag.
"""

from __future__ import annotations

import hashlib
import random

import msgspec

from consensus.config import ConsensusParams, CreditParams
from consensus.credit import apply_committed_block, initial_credit
from consensus.leader import CreditSnapshot, LeaderHistory
from consensus.validation import MAX_FAILED_AUTHORS

PRUNE_EVERY_ROUNDS = 64
"""How often the model lets the leader history drop snapshots no round needs any more."""


class Fault(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How one validator misbehaves in rounds ``[from_round, until_round)``."""

    index: int
    silent_percent: int = 0
    """Chance that it withholds its proposal in a round it leads (100: always)."""
    down: bool = False
    """It is down: never proposes and does not aggregate the votes sent to it, so the
    round before each of its rounds fails as well (``silent_percent`` is ignored)."""
    equivocate: bool = False
    """It signs two proposals in each round it leads (the round itself succeeds)."""
    from_round: int = 0
    until_round: int | None = None

    def active(self, round: int) -> bool:
        return self.from_round <= round and (self.until_round is None or round < self.until_round)


class LeaderModelConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    nodes: int = 4
    seed: int = 0
    rounds: int = 100_000
    faults: tuple[Fault, ...] = ()
    noise_percent: int = 0
    """Chance that any leader's round fails anyway (a proposal lost to the network)."""
    credit: CreditParams = CreditParams()
    lag_rounds: int = ConsensusParams().leader_history_lag_rounds


class LeaderModelResult(msgspec.Struct, kw_only=True):
    leaders: list[int]
    """The leader of each round, from round 1 (``leaders[r - 1]`` led round ``r``)."""
    committed: list[int]
    """Per validator: committed blocks it proposed (each pays it the proposer reward)."""
    failed: list[int]
    """Per validator: rounds it led that ended without a certified block of its own."""
    credit: list[int]
    """Per validator: credit after the last committed block."""

    def share(self, index: int, first_round: int = 1, last_round: int | None = None) -> float:
        """Share of rounds ``first_round..last_round`` (inclusive) that ``index`` led."""
        rounds = self.leaders[first_round - 1: last_round]
        return sum(1 for leader in rounds if leader == index) / max(1, len(rounds))

    def shares(self, first_round: int = 1, last_round: int | None = None) -> list[float]:
        n = len(self.committed)
        return [self.share(i, first_round, last_round) for i in range(n)]


class _Block(msgspec.Struct):
    round: int
    proposer: int
    parent_round: int
    failed_authors: tuple[int, ...]
    equivocations: tuple[tuple[int, int], ...]
    block_id: bytes


def run_leader_model(config: LeaderModelConfig) -> LeaderModelResult:
    """Run ``config.rounds`` rounds of the model (see the module docstring)."""
    n = config.nodes
    rng = random.Random(f"leader-model:{config.seed}")
    seed = config.seed.to_bytes(8, "big")
    genesis_id = hashlib.sha256(b"genesis" + seed).digest()
    history = LeaderHistory(params=config.credit, lag_rounds=config.lag_rounds, snapshots=(
        CreditSnapshot(round=0, block_id=genesis_id, credit=initial_credit(n, config.credit)),))
    faults: dict[int, list[Fault]] = {}
    for fault in config.faults:
        assert 0 <= fault.index < n, "fault for a validator outside the committee"
        faults.setdefault(fault.index, []).append(fault)

    leaders: list[int] = []
    committed = [0] * n
    failed = [0] * n
    certified: list[_Block] = [_Block(round=0, proposer=0, parent_round=0, failed_authors=(),
                                      equivocations=(), block_id=genesis_id)]
    committed_upto = 0
    """Index in ``certified`` of the latest committed block."""
    pending: _Block | None = None
    evidence: list[tuple[int, int]] = []
    for round in range(1, config.rounds + 1):
        leader = history.leader(round)
        leaders.append(leader)
        plan = [f for f in faults.get(leader, ()) if f.active(round)]
        down = any(f.down for f in plan)
        if pending is not None:
            if down:
                failed[pending.proposer] += 1  # its votes went to a validator that is not there
            else:
                certified.append(pending)
                if pending.parent_round == pending.round - 1:
                    parent_index = len(certified) - 2
                    for block in certified[committed_upto + 1: parent_index + 1]:
                        _commit(history, config.credit, block)
                        committed[block.proposer] += 1
                    committed_upto = max(committed_upto, parent_index)
            pending = None
        silent = down or any(rng.randrange(100) < f.silent_percent for f in plan)
        if silent or (config.noise_percent and rng.randrange(100) < config.noise_percent):
            failed[leader] += 1
            continue
        parent = certified[-1]
        first = max(parent.round + 1, round - MAX_FAILED_AUTHORS)
        pending = _Block(
            round=round, proposer=leader, parent_round=parent.round,
            failed_authors=tuple(leaders[r - 1] for r in range(first, round)),
            equivocations=tuple(evidence),
            block_id=hashlib.sha256(seed + round.to_bytes(8, "big") + leader.to_bytes(2, "big")).digest(),
        )
        evidence = [(leader, round)] if any(f.equivocate for f in plan) else []
        if len(certified) > 2 * MAX_FAILED_AUTHORS + committed_upto:
            del certified[: committed_upto]
            committed_upto = 0
        if round % PRUNE_EVERY_ROUNDS == 0:
            history.prune(round)
    return LeaderModelResult(leaders=leaders, committed=committed, failed=failed,
                             credit=list(history.latest.credit.credits))


def _commit(history: LeaderHistory, params: CreditParams, block: _Block) -> None:
    credit = apply_committed_block(
        history.latest.credit, params, round=block.round, proposer=block.proposer,
        failed_authors=block.failed_authors, equivocations=block.equivocations)
    history.append_credit(block.round, block.block_id, credit)

