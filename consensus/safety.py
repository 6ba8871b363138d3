"""Safety rules: the only code that signs consensus messages (proposals, votes,
timeouts), and the rules that make two honest signatures never conflict.

The rules are those of DiemBFT v4 / Jolteon as in Aptos' ``safety_rules_2chain``:

* vote for a block of round ``r`` only if ``r > last_voted_round`` and
  ``safe_to_vote`` holds; a repeated request for the round already voted returns
  the stored vote (never a second, different one);
* time out in round ``r`` only if ``safe_to_timeout`` holds and
  ``r >= last_voted_round``; a repeated timeout for the same round returns the
  stored timeout;
* propose only in a round above ``last_voted_round``.

Every signing call returns the new ``SafetyData``; the core emits it as a
``PersistSafety`` action *before* the signed message, so after a crash the node
restarts with a state that forbids any conflicting signature.

The double-sign guard covers a node that restarts with NO safety data (a wiped
disk): it may have signed in rounds it no longer remembers. It refuses to sign
until it has seen the network's current round in sync info from ``f + 1``
distinct validators (so at least one honest), and then only in rounds above both
that round and the highest round in which it sees its own key signing in the
certificates and blocks it learns about. The network's round is taken from
certified rounds only (a QC's or TC's round + 1, proven by 2f + 1 signatures),
never from a number a single sender claims (a proposal's or a timeout's round):
a Byzantine peer can then raise the floor no higher than the round the network
really reached, so it cannot mute a recovering node.
"""

from __future__ import annotations

import msgspec

from consensus import codec, crypto
from consensus.committee import Committee
from consensus.types import (
    Block,
    BlockHeader,
    Digest,
    NodeId,
    QuorumCert,
    Round,
    SafetyData,
    Timeout,
    TimeoutCert,
    TimeoutData,
    Vote,
    VoteData,
)


class SafetyError(Exception):
    """Signing was refused; ``code`` is stable (metrics, logs, tests)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def safe_to_vote(block_round: Round, qc_round: Round, tc: TimeoutCert | None) -> bool:
    """Vote iff (1) ``block_round == qc_round + 1``, or
    (2) ``block_round == tc.round + 1`` and ``qc_round >= tc.high_qc_round``."""
    if block_round == qc_round + 1:
        return True
    return tc is not None and block_round == tc.round + 1 and qc_round >= tc.high_qc_round


def safe_to_timeout(round: Round, qc_round: Round, tc_round: Round, one_chain_round: Round) -> bool:
    """Time out iff (``round == qc_round + 1`` or ``round == tc_round + 1``) and
    ``qc_round >= one_chain_round`` (the timeout does not hide a QC we voted on)."""
    return (round == qc_round + 1 or round == tc_round + 1) and qc_round >= one_chain_round


class DoubleSignGuard:
    """Blocks signing on a node that lost its safety data (see the module docstring)."""

    __slots__ = ("_floor_round", "_needed", "_own_round", "_peak_round", "_senders")

    def __init__(self, *, f: int) -> None:
        self._needed = f + 1
        self._senders: set[NodeId] = set()
        self._peak_round: Round = 0
        self._floor_round: Round | None = None
        self._own_round: Round = 0

    @property
    def armed(self) -> bool:
        """True once the network's round is known (signing may resume above it)."""
        return self._floor_round is not None

    def observe_network_round(self, sender: NodeId, round: Round) -> None:
        """``sender``'s sync info shows the network in ``round``: one above a certified
        (QC or TC) round, never an uncertified claim."""
        if self._floor_round is not None:
            return
        self._senders.add(sender)
        self._peak_round = max(self._peak_round, round)
        if len(self._senders) >= self._needed:
            self._floor_round = self._peak_round

    def observe_own_signature(self, round: Round) -> None:
        """Our key signed something in ``round`` (seen in a QC, TC or block)."""
        self._own_round = max(self._own_round, round)

    def allows(self, round: Round) -> bool:
        return self._floor_round is not None and round > max(self._floor_round, self._own_round)

    def describe(self) -> str:
        return (f"floor={self._floor_round} own={self._own_round} "
                f"senders={len(self._senders)}/{self._needed}")


class SafetyRules:
    """Holds the signer and the current ``SafetyData``; see the module docstring."""

    def __init__(self, *, committee: Committee, me: NodeId, signer: crypto.Signer,
                 data: SafetyData | None) -> None:
        if committee.public_key(me) != signer.public_key:
            raise ValueError("the signer's key is not this validator's key in the committee")
        self._committee = committee
        self._me = me
        self._signer = signer
        self._data = data if data is not None else SafetyData(epoch=committee.epoch)
        self.guard: DoubleSignGuard | None = DoubleSignGuard(f=committee.f) if data is None else None

    @property
    def data(self) -> SafetyData:
        return self._data

    def observe_own_signature(self, round: Round) -> None:
        if self.guard is not None:
            self.guard.observe_own_signature(round)

    def observe_network_round(self, sender: NodeId, round: Round) -> None:
        if self.guard is not None and sender != self._me:
            self.guard.observe_network_round(sender, round)

    def _check_guard(self, round: Round) -> None:
        if self.guard is not None and not self.guard.allows(round):
            raise SafetyError("double_sign_guard",
                              f"no safety data: not signing round {round} ({self.guard.describe()})")

    def _check_epoch(self, epoch: int) -> None:
        if epoch != self._data.epoch:
            raise SafetyError("wrong_epoch", f"epoch {epoch}, safety data is for {self._data.epoch}")

    # --- proposals ---------------------------------------------------------------------

    def sign_proposal(self, header: BlockHeader) -> bytes:
        """Signature over the block id. Proposing changes no safety data: the leader
        votes for its own proposal before broadcasting it, and that vote is persisted."""
        self._check_epoch(header.epoch)
        if header.author != self._me:
            raise SafetyError("not_author", f"block author {header.author} is not this validator")
        self._check_guard(header.round)
        if header.round <= self._data.last_voted_round:
            raise SafetyError("already_voted_round",
                              f"proposal round {header.round} <= last voted round {self._data.last_voted_round}")
        if header.parent_qc.round < self._data.one_chain_round:
            raise SafetyError("stale_qc", f"proposal QC round {header.parent_qc.round} "
                              f"< one-chain round {self._data.one_chain_round}")
        return self._signer.sign(chain_id=self._committee.chain_id, kind=crypto.KIND_PROPOSAL,
                                 message=codec.digest_of(header))

    # --- votes -------------------------------------------------------------------------

    def sign_vote(self, block: Block, *, block_id: Digest, tc: TimeoutCert | None,
                  high_qc: QuorumCert | None = None,
                  high_tc: TimeoutCert | None = None) -> tuple[Vote, SafetyData | None]:
        """Vote for ``block`` (whose id is ``block_id``); ``tc`` is the TC of the round before
        it, if the node has one. Returns the vote and the safety data to persist first
        (None when nothing changed: the stored vote of this round is returned again).
        ``high_qc``/``high_tc`` are the node's highest certificates, stored alongside."""
        header = block.header
        round = header.round
        self._check_epoch(header.epoch)
        last_vote = self._data.last_vote
        if last_vote is not None and last_vote.vote_data.round == round:
            return last_vote, None
        self._check_guard(round)
        if round <= self._data.last_voted_round:
            raise SafetyError("already_voted_round",
                              f"round {round} <= last voted round {self._data.last_voted_round}")
        qc_round = header.parent_qc.round
        if not safe_to_vote(round, qc_round, tc):
            raise SafetyError("not_safe_to_vote", f"round {round}, QC round {qc_round}, "
                              f"TC round {tc.round if tc else None}")
        vote_data = VoteData(
            epoch=header.epoch, round=round, height=header.height, block_id=block_id,
            parent_id=header.parent_qc.block_id, parent_round=qc_round,
        )
        signature = self._signer.sign(chain_id=self._committee.chain_id, kind=crypto.KIND_VOTE,
                                      message=codec.encode(vote_data))
        vote = Vote(vote_data=vote_data, author=self._me, signature=signature)
        self._data = msgspec.structs.replace(
            self._data,
            last_voted_round=round,
            one_chain_round=max(self._data.one_chain_round, qc_round),
            last_vote=vote,
            high_qc=high_qc,
            high_tc=high_tc,
        )
        return vote, self._data

    # --- timeouts ----------------------------------------------------------------------

    def sign_timeout(self, *, round: Round, high_qc: QuorumCert,
                     tc: TimeoutCert | None) -> tuple[Timeout, SafetyData | None]:
        """Time out in ``round`` with our highest QC (its round is signed, the QC travels
        with the timeout); ``tc`` is our highest TC. Returns the timeout and the safety
        data to persist first (None when the stored timeout of this round is returned
        again)."""
        high_qc_round = high_qc.round
        last_timeout = self._data.last_timeout
        if last_timeout is not None and last_timeout.data.round == round:
            return last_timeout, None
        if high_qc_round >= round:
            raise SafetyError("invalid_timeout", f"QC round {high_qc_round} >= timeout round {round}")
        self._check_guard(round)
        tc_round = tc.round if tc is not None else 0
        if not safe_to_timeout(round, high_qc_round, tc_round, self._data.one_chain_round):
            raise SafetyError("not_safe_to_timeout", f"round {round}, QC round {high_qc_round}, "
                              f"TC round {tc_round}, one-chain round {self._data.one_chain_round}")
        if round < self._data.last_voted_round:
            raise SafetyError("already_voted_round",
                              f"timeout round {round} < last voted round {self._data.last_voted_round}")
        if round <= self._data.highest_timeout_round:
            raise SafetyError("already_timed_out",
                              f"timeout round {round} <= highest timeout round {self._data.highest_timeout_round}")
        data = TimeoutData(epoch=self._data.epoch, round=round, high_qc_round=high_qc_round)
        signature = self._signer.sign(chain_id=self._committee.chain_id, kind=crypto.KIND_TIMEOUT,
                                      message=codec.encode(data))
        timeout = Timeout(data=data, author=self._me, signature=signature, high_qc=high_qc)
        self._data = msgspec.structs.replace(
            self._data,
            last_voted_round=max(self._data.last_voted_round, round),
            highest_timeout_round=round,
            last_timeout=timeout,
            high_qc=high_qc,
            high_tc=tc,
        )
        return timeout, self._data
