"""The invariants the simulator checks after every step.

Safety (must hold whatever the network and the Byzantine validators do, as long
as at most f validators are faulty):

* **agreement** — no two honest instances commit different blocks at one height,
  and every instance commits heights contiguously;
* **no honest double vote** — every vote that leaves an honest instance is
  inspected on the wire; one key never signs two different ``VoteData`` for a
  round (a repeated, identical vote is fine); the same for timeouts and for
  proposals (``double_vote``, ``double_timeout``, ``double_proposal``);
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
from consensus.types import (
    Block,
    Digest,
    Message,
    NodeId,
    ProposalMsg,
    Round,
    TimeoutMsg,
    VoteMsg,
    block_id,
)

MAX_VIOLATIONS = 50
"""Violations kept per run; the first one is what matters, the rest are context."""
MAX_SIGNATURES_KEPT = 100_000
"""Signed (kind, author, round) entries remembered before old rounds are pruned."""
SIGNATURE_WINDOW_ROUNDS = 2_000
"""Pruning keeps this many rounds below the highest signed round (an honest core
never signs that far back, and the double-sign guard keeps a wiped one above it)."""


class Violation(msgspec.Struct, frozen=True, kw_only=True):
    """One broken invariant."""

    kind: str
    """Stable code: agreement, gap, double_vote, double_timeout, double_proposal,
    invalid_honest_message, core_exception, liveness."""
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
        self._signatures: dict[tuple[str, NodeId, Round], Digest] = {}
        """(kind, author, round) -> digest of what an honest key signed."""
        self._max_round = 0
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

    # -- signed messages -----------------------------------------------------
    def on_message_sent(self, *, sender_index: NodeId, message: Message) -> None:
        """Inspect a message as it leaves an instance of validator ``sender_index``:
        an honest key never signs two different votes, timeouts or proposals for a round."""
        if sender_index not in self.honest_indices:
            return
        if isinstance(message, VoteMsg):
            vote = message.vote
            self._signed("vote", sender_index, vote.author, vote.vote_data.round,
                         codec.digest_of(vote.vote_data))
        elif isinstance(message, TimeoutMsg):
            timeout = message.timeout
            self._signed("timeout", sender_index, timeout.author, timeout.data.round,
                         codec.digest_of(timeout.data))
        elif isinstance(message, ProposalMsg) and message.block.header.author == sender_index:
            header = message.block.header
            self._signed("proposal", sender_index, header.author, header.round, block_id(header))

    def _signed(self, kind: str, sender: NodeId, author: NodeId, round: Round, signed: Digest) -> None:
        if author != sender:
            self.violation(f"double_{kind}", f"honest validator {sender} sent a {kind} "
                                             f"authored by {author}")
            return
        key = (kind, author, round)
        known = self._signatures.setdefault(key, signed)
        if known != signed:
            self.violation(
                f"double_{kind}",
                f"honest validator {author} signed two different {kind}s for round {round}",
            )
        self._max_round = max(self._max_round, round)
        if len(self._signatures) > MAX_SIGNATURES_KEPT:
            horizon = self._max_round - SIGNATURE_WINDOW_ROUNDS
            for stale in [k for k in self._signatures if k[2] < horizon]:
                del self._signatures[stale]
