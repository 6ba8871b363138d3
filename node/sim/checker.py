"""The invariants the simulator checks after every step.

Safety (must hold whatever the network and the Byzantine validators do, as long
as at most f validators are faulty):

* **agreement** — no two honest instances commit different blocks at one height,
  and every instance commits heights contiguously;
* **no honest double vote** — every vote that leaves an honest instance is
  inspected on the wire; one key never signs two different ``VoteData`` for a
  round (a repeated, identical vote is fine);
* **honest messages are valid** — a message an honest core produced is accepted
  by ``check_message`` at the receiver after encoding and decoding (this is how
  codec and validation bugs surface).

Liveness (after the faults stopped): every honest instance commits again before
the highest honest round has advanced ``liveness_rounds`` past the healing round.
That check lives in the runner, which knows the phases; it reports through
``violation`` like everything else.
"""

from __future__ import annotations

import msgspec

from consensus import codec
from consensus.types import Block, Digest, NodeId, Round, Vote, block_id

MAX_VIOLATIONS = 50
"""Violations kept per run; the first one is what matters, the rest are context."""


class Violation(msgspec.Struct, frozen=True, kw_only=True):
    """One broken invariant."""

    kind: str
    """Stable code: agreement, gap, double_vote, invalid_honest_message, core_exception, liveness."""
    detail: str
    """Human-readable explanation (heights, rounds, ids)."""
    time_ms: int
    """Virtual time of detection."""
    step: int
    """Simulator step (events processed) at detection."""


class Checker:
    """Incremental safety checks over commits and signed votes."""

    def __init__(self, *, honest_indices: set[NodeId]) -> None:
        self.honest_indices = frozenset(honest_indices)
        self.violations: list[Violation] = []
        self.violation_count = 0
        self._chain: dict[int, Digest] = {}
        """height -> block id, the first honest commit at each height."""
        self._votes: dict[tuple[NodeId, Round], Digest] = {}
        """(author, round) -> digest of the VoteData an honest key signed."""
        self.time_ms = 0
        self.step = 0

    # -- reporting -----------------------------------------------------------
    def violation(self, kind: str, detail: str) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(
                Violation(kind=kind, detail=detail, time_ms=self.time_ms, step=self.step)
            )

    @property
    def ok(self) -> bool:
        return self.violation_count == 0

    # -- commits -------------------------------------------------------------
    def on_commit(
        self, *, instance: int, index: NodeId, chain: list[Digest], blocks: tuple[Block, ...]
    ) -> None:
        """Extend ``chain`` (instance's committed ids; chain[h-1] is height h) with ``blocks``."""
        honest = index in self.honest_indices
        for block in blocks:
            bid = block_id(block.header)
            height = block.height
            if height <= len(chain):
                if chain[height - 1] != bid:
                    self.violation(
                        "agreement",
                        f"instance {instance} (validator {index}) re-committed height {height} "
                        f"as {bid.hex()[:16]} after {chain[height - 1].hex()[:16]}",
                    )
                continue
            if height != len(chain) + 1:
                self.violation(
                    "gap",
                    f"instance {instance} (validator {index}) committed height {height} "
                    f"after height {len(chain)}",
                )
                return
            chain.append(bid)
            if not honest:
                continue
            known = self._chain.setdefault(height, bid)
            if known != bid:
                self.violation(
                    "agreement",
                    f"honest validator {index} (instance {instance}) committed "
                    f"{bid.hex()[:16]} at height {height}, another honest node committed "
                    f"{known.hex()[:16]}",
                )

    @property
    def agreed_height(self) -> int:
        return len(self._chain)

    # -- votes ---------------------------------------------------------------
    def on_vote_sent(self, *, sender_index: NodeId, vote: Vote) -> None:
        """Inspect a vote as it leaves an instance of validator ``sender_index``."""
        if sender_index not in self.honest_indices:
            return
        if vote.author != sender_index:
            self.violation(
                "double_vote",
                f"honest validator {sender_index} sent a vote authored by {vote.author}",
            )
            return
        key = (vote.author, vote.vote_data.round)
        signed = codec.digest_of(vote.vote_data)
        known = self._votes.setdefault(key, signed)
        if known != signed:
            self.violation(
                "double_vote",
                f"honest validator {vote.author} signed two different votes for round "
                f"{vote.vote_data.round}",
            )

    def forget_votes_below(self, round: Round) -> None:
        """Bound memory: votes far below every honest round can no longer conflict
        with anything an honest core signs (they never vote for old rounds)."""
        stale = [key for key in self._votes if key[1] < round]
        for key in stale:
            del self._votes[key]

