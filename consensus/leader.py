"""Credit-weighted leader election, deterministic from committed history.

``elect`` is Aptos' ``choose_index``: the eligible validators (credit at or above
the threshold, not excluded for equivocation; see ``credit.eligible_leaders``) are
weighted by their credit, and ``sha256(seed ‖ round)`` picks one in proportion to
its weight — one hash and one bisection, no loops over rounds. Credit is full for
every validator that is reliable in the recent window and 0 otherwise
(``consensus.credit``), so reliable validators are drawn with equal probability.

``LeaderHistory`` keeps a bounded list of snapshots (committed round, credit after
that block, block id). The leader of round ``r`` is elected from the latest snapshot
whose committed round is at most ``r - lag``, with that block's id as the seed, so
every node that has committed the same history elects the same leader, and the
leader of a round is fixed ``lag`` rounds before it. Credit only decides who leads;
it never weighs a vote.
"""

from __future__ import annotations

import bisect
import hashlib
from itertools import accumulate

import msgspec

from consensus.config import CreditParams
from consensus.credit import CreditState, apply_committed_block, eligible_leaders
from consensus.types import Block, Digest, NodeId, Round

MAX_HISTORY = 1_024
"""Most credit snapshots kept; older ones are pruned once no round can still need them."""
LEADER_CACHE_SIZE = 256
"""Most memoised leader elections (cleared wholesale when full or when history changes)."""
HISTORY_SLACK_ROUNDS = 64
"""Snapshots stay available for rounds this far below the current round (failed-author checks)."""


def elect(credit: CreditState, params: CreditParams, round: Round, seed: bytes) -> NodeId:
    """The leader of ``round``: an eligible validator chosen with probability proportional
    to its credit, by ``sha256(seed ‖ round)``."""
    candidates = eligible_leaders(credit, params, round)
    weights = [max(1, credit.credits[i]) for i in candidates]
    cumulative = list(accumulate(weights))
    digest = hashlib.sha256(seed + round.to_bytes(8, "big")).digest()
    # 128 bits modulo a total below 2**40: the bias is far below anything measurable.
    point = int.from_bytes(digest[:16], "big") % cumulative[-1]
    return candidates[bisect.bisect_right(cumulative, point)]


def credit_after_block(credit: CreditState, params: CreditParams, block: Block) -> CreditState:
    """Credit after committing ``block``: its proposer, the failed authors it names and
    the equivocations it proves (see ``consensus.credit``)."""
    header = block.header
    return apply_committed_block(
        credit, params,
        round=header.round,
        proposer=header.author,
        failed_authors=[author for _, author in header.failed_authors],
        equivocations=[(e.author, e.round) for e in header.evidence],
    )


class CreditSnapshot(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Credit after the committed block ``block_id`` of ``round``."""

    round: Round
    block_id: Digest
    credit: CreditState


class LeaderHistory:
    """Bounded snapshots of committed credit; elects leaders (see the module docstring)."""

    def __init__(self, *, params: CreditParams, lag_rounds: int,
                 snapshots: tuple[CreditSnapshot, ...] | list[CreditSnapshot]) -> None:
        if not snapshots:
            raise ValueError("leader history needs at least the genesis snapshot")
        self._params = params
        self._lag = lag_rounds
        self._snapshots: list[CreditSnapshot] = sorted(snapshots, key=lambda s: s.round)
        self._rounds: list[Round] = [s.round for s in self._snapshots]
        self._cache: dict[Round, NodeId] = {}
        """Elected leaders by round; cleared whenever the history changes."""

    @property
    def latest(self) -> CreditSnapshot:
        return self._snapshots[-1]

    @property
    def snapshots(self) -> tuple[CreditSnapshot, ...]:
        return tuple(self._snapshots)

    def snapshot_for(self, round: Round) -> CreditSnapshot:
        """The latest snapshot with committed round <= ``round - lag`` (the oldest kept if none)."""
        index = bisect.bisect_right(self._rounds, round - self._lag) - 1
        return self._snapshots[max(0, index)]

    def leader(self, round: Round) -> NodeId:
        leader = self._cache.get(round)
        if leader is None:
            snapshot = self.snapshot_for(round)
            leader = elect(snapshot.credit, self._params, round, snapshot.block_id)
            if len(self._cache) >= LEADER_CACHE_SIZE:
                self._cache.clear()
            self._cache[round] = leader
        return leader

    def append(self, block: Block, block_id: Digest) -> CreditSnapshot:
        """Record the credit after committing ``block`` (blocks arrive in commit order)."""
        return self.append_credit(
            block.round, block_id, credit_after_block(self._snapshots[-1].credit, self._params, block))

    def append_credit(self, round: Round, block_id: Digest, credit: CreditState) -> CreditSnapshot:
        """Record ``credit`` as the credit after the committed block ``block_id`` of ``round``
        (``append`` computes it from the block; a model of the chain may compute it itself)."""
        assert round > self._snapshots[-1].round, "committed rounds must increase"
        snapshot = CreditSnapshot(round=round, block_id=block_id, credit=credit)
        self._snapshots.append(snapshot)
        self._rounds.append(snapshot.round)
        # Only rounds that now elect from this snapshot change leader.
        first_affected = snapshot.round + self._lag
        for round in [r for r in self._cache if r >= first_affected]:
            del self._cache[round]
        return snapshot

    def prune(self, current_round: Round) -> None:
        """Forget snapshots no round at or after ``current_round - slack`` can need."""
        keep_from = bisect.bisect_right(
            self._rounds, current_round - self._lag - HISTORY_SLACK_ROUNDS) - 1
        keep_from = max(keep_from, len(self._snapshots) - MAX_HISTORY, 0)
        if keep_from > 0:
            del self._snapshots[:keep_from]
            del self._rounds[:keep_from]
            # Rounds that elected from a dropped snapshot would now fall back to the oldest kept.
            first_exact = self._rounds[0] + self._lag
            for round in [r for r in self._cache if r < first_exact]:
                del self._cache[round]
