"""Turns validated votes into QCs and timeouts into TCs, and notices equivocation.

Votes for round ``r`` are collected by the leader of ``r + 1``; ``2f + 1`` votes
for the same ``VoteData`` form a QC (once). Timeouts are collected by everyone;
``2f + 1`` timeouts for one round form a TC (once), carrying the QC of the highest
``high_qc_round`` among them (each timeout carries its own), and the count of distinct
timeouts lets the pacemaker join after ``f + 1``.

Each (author, round, kind) keeps the first signed message seen. A second,
different one signed by the same key is equivocation: both signed messages become
``EquivocationEvidence``, kept (bounded) until a block this node proposes carries
it, or until credit shows it already punished. Inputs are already validated (all
signatures checked at the edge), so the aggregator only counts.

Memory is bounded: only rounds in ``[current - KEEP_ROUNDS_BEHIND, current +
KEEP_ROUNDS_AHEAD]`` are accepted, and ``cleanup(round)`` drops older rounds.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from consensus import codec
from consensus.types import (
    BlockHeader,
    Digest,
    EquivocationEvidence,
    NodeId,
    QuorumCert,
    Round,
    Timeout,
    TimeoutCert,
    Vote,
)

KEEP_ROUNDS_BEHIND = 2
"""Rounds below the current one still accepted (late votes for the previous round)."""
KEEP_ROUNDS_AHEAD = 64
"""Rounds above the current one accepted (a lagging node catching up)."""
MAX_PENDING_EVIDENCE = 64
"""Most unreported equivocation proofs kept for future proposals."""


@dataclass(slots=True)
class _Signed:
    payload: bytes
    signature: bytes


@dataclass(slots=True)
class _VoteRound:
    first: dict[NodeId, _Signed] = field(default_factory=dict)
    by_data: dict[Digest, dict[NodeId, bytes]] = field(default_factory=dict)
    formed: bool = False


@dataclass(slots=True)
class _TimeoutRound:
    first: dict[NodeId, Timeout] = field(default_factory=dict)
    formed: bool = False


@dataclass(frozen=True, slots=True)
class VoteOutcome:
    qc: QuorumCert | None = None
    evidence: EquivocationEvidence | None = None


@dataclass(frozen=True, slots=True)
class TimeoutOutcome:
    count: int = 0
    """Distinct authors that timed out in this round so far."""
    tc: TimeoutCert | None = None
    evidence: EquivocationEvidence | None = None


class Aggregator:
    """See the module docstring. ``quorum`` is ``2f + 1`` signatures."""

    def __init__(self, *, epoch: int, quorum: int) -> None:
        self._epoch = epoch
        self._quorum = quorum
        self._round = 1
        self._votes: dict[Round, _VoteRound] = {}
        self._timeouts: dict[Round, _TimeoutRound] = {}
        self._proposals: dict[Round, dict[NodeId, _Signed]] = {}
        self._evidence: OrderedDict[tuple[NodeId, Round, str], EquivocationEvidence] = OrderedDict()

    def _in_window(self, round: Round) -> bool:
        return self._round - KEEP_ROUNDS_BEHIND <= round <= self._round + KEEP_ROUNDS_AHEAD

    # --- votes -------------------------------------------------------------------------

    def add_vote(self, vote: Vote) -> VoteOutcome:
        data = vote.vote_data
        if not self._in_window(data.round):
            return VoteOutcome()
        state = self._votes.setdefault(data.round, _VoteRound())
        encoded = codec.encode(data)
        first = state.first.get(vote.author)
        if first is not None:
            if first.payload == encoded:
                return VoteOutcome()  # a duplicate
            return VoteOutcome(evidence=self._record("vote", vote.author, data.round, first,
                                                     _Signed(encoded, vote.signature)))
        state.first[vote.author] = _Signed(encoded, vote.signature)
        key = codec.digest(encoded)
        signatures = state.by_data.setdefault(key, {})
        signatures[vote.author] = vote.signature
        if state.formed or len(signatures) < self._quorum:
            return VoteOutcome()
        state.formed = True
        signers = tuple(sorted(signatures))
        qc = QuorumCert(vote_data=data, signers=signers,
                        signatures=tuple(signatures[s] for s in signers))
        return VoteOutcome(qc=qc)

    # --- timeouts ----------------------------------------------------------------------

    def add_timeout(self, timeout: Timeout) -> TimeoutOutcome:
        data = timeout.data
        if not self._in_window(data.round):
            return TimeoutOutcome()
        state = self._timeouts.setdefault(data.round, _TimeoutRound())
        first = state.first.get(timeout.author)
        if first is not None:
            if first.data == data:
                # A duplicate (possibly re-sent with another valid QC of the same round,
                # or a different signature of the same data): never evidence.
                return TimeoutOutcome(count=len(state.first))
            evidence = self._record("timeout", timeout.author, data.round,
                                    _Signed(codec.encode(first.data), first.signature),
                                    _Signed(codec.encode(data), timeout.signature))
            return TimeoutOutcome(count=len(state.first), evidence=evidence)
        state.first[timeout.author] = timeout
        count = len(state.first)
        if state.formed or count < self._quorum:
            return TimeoutOutcome(count=count)
        state.formed = True
        signers = tuple(sorted(state.first))
        highest = max(state.first.values(), key=lambda t: t.data.high_qc_round)
        tc = TimeoutCert(
            epoch=self._epoch, round=data.round, signers=signers,
            high_qc_rounds=tuple(state.first[s].data.high_qc_round for s in signers),
            signatures=tuple(state.first[s].signature for s in signers),
            high_qc=highest.high_qc,
        )
        return TimeoutOutcome(count=count, tc=tc)

    def timeout_count(self, round: Round) -> int:
        state = self._timeouts.get(round)
        return len(state.first) if state else 0

    # --- proposals ---------------------------------------------------------------------

    def add_proposal(self, header: BlockHeader, *, encoded_header: bytes,
                     signature: bytes) -> EquivocationEvidence | None:
        """Remember the first proposal per (author, round); a different second one is evidence."""
        if not self._in_window(header.round):
            return None
        seen = self._proposals.setdefault(header.round, {})
        first = seen.get(header.author)
        if first is None:
            seen[header.author] = _Signed(encoded_header, signature)
            return None
        if first.payload == encoded_header:
            return None
        return self._record("proposal", header.author, header.round, first,
                            _Signed(encoded_header, signature))

    # --- evidence ----------------------------------------------------------------------

    def _record(self, kind: str, author: NodeId, round: Round, first: _Signed,
                second: _Signed) -> EquivocationEvidence | None:
        key = (author, round, kind)
        if key in self._evidence:
            return None
        evidence = EquivocationEvidence(
            kind=kind,  # type: ignore[arg-type]
            author=author, round=round,
            first=first.payload, first_signature=first.signature,
            second=second.payload, second_signature=second.signature,
        )
        self._evidence[key] = evidence
        while len(self._evidence) > MAX_PENDING_EVIDENCE:
            self._evidence.popitem(last=False)
        return evidence

    def add_evidence(self, evidence: EquivocationEvidence) -> None:
        """Evidence learnt from elsewhere (a block that was not committed) to re-report."""
        key = (evidence.author, evidence.round, evidence.kind)
        if key not in self._evidence:
            self._evidence[key] = evidence
            while len(self._evidence) > MAX_PENDING_EVIDENCE:
                self._evidence.popitem(last=False)

    def pending_evidence(self, *, exclude: set[tuple[NodeId, Round]], min_round: Round,
                         limit: int) -> tuple[EquivocationEvidence, ...]:
        """Evidence for a new proposal: not yet punished (``exclude``), not too old."""
        chosen: list[EquivocationEvidence] = []
        taken: set[tuple[NodeId, Round]] = set()
        for (author, round, _kind), evidence in self._evidence.items():
            pair = (author, round)
            if round < min_round or pair in exclude or pair in taken:
                continue
            chosen.append(evidence)
            taken.add(pair)
            if len(chosen) >= limit:
                break
        return tuple(chosen)

    def forget_evidence(self, pairs: set[tuple[NodeId, Round]], *, min_round: Round) -> None:
        """Drop evidence already punished by committed blocks, or too old to include."""
        for key in [k for k in self._evidence if (k[0], k[1]) in pairs or k[1] < min_round]:
            del self._evidence[key]

    @property
    def evidence_count(self) -> int:
        return len(self._evidence)

    # --- cleanup -----------------------------------------------------------------------

    def cleanup(self, round: Round) -> None:
        """The node is now in ``round``: forget votes, timeouts and proposals of older rounds."""
        self._round = max(self._round, round)
        horizon = self._round - KEEP_ROUNDS_BEHIND
        for table in (self._votes, self._timeouts, self._proposals):
            for old in [r for r in table if r < horizon]:
                del table[old]  # type: ignore[attr-defined]
