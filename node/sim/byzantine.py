"""Byzantine behaviours, as rewrites of what an otherwise real core wants to do.

A Byzantine validator in the simulator runs the real ``consensus.core.Core``;
the behaviour intercepts the core's action list before the runner executes it
and turns correct behaviour into an attack, signing with the validator's own
key (so every forged message passes validation, as a real attacker's would):

* ``equivocate`` — as leader, sends two different signed blocks for its round to
  two halves of the committee; one random validator gets both (so the
  equivocation can be proven and punished);
* ``double-vote`` — every vote is followed by a second, conflicting vote for the
  same round: for the other block of an equivocating leader when one was seen,
  else for a block that does not exist; both go to the next leader, in random order;
* ``silent`` — never sends its own proposals (its rounds end in timeouts);
* ``twins`` — no rewrite: the runner starts two instances of the validator that
  share its key and index (see ``node.sim.runner``);
* ``forge-tc`` — withholds its proposals (so rounds end in timeouts; the QC of
  the round before one it leads stays with it), its timeouts claim a QC round for
  which no QC exists (round - 1), and as soon as it holds ``2f`` other timeouts of
  a round that claim less, it combines them with such a forged one into a TC and
  broadcasts it (what stalled the chain before TCs carried their QC);
* ``inflate-round`` — its proposals claim absurd rounds (and sometimes heights),
  every timeout and vote is followed by one for an absurd round, every vote by a
  timeout broadcast claiming an absurd round (valid: signed, with a real QC), and
  its answers to block requests carry inflated blocks;
* ``withhold-sync`` — never answers a block request;
* ``garbage-sync`` — answers block requests with invalid, forged or conflicting
  blocks (payloads that do not match ``tx_root``, altered headers, unrelated
  chains, broken links, corrupted certificates);
* ``false-blame`` — as leader, names honest validators as failed authors: after a
  TC it swaps the elected leaders of the skipped rounds for other honest ones,
  otherwise it skips its parent (extends the grandparent's QC) and blames the
  honest leader of the skipped round.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import msgspec

from consensus import codec, crypto
from consensus.actions import Action, Broadcast, Send
from consensus.types import (
    MAX_ROUND,
    Block,
    BlockRequest,
    Digest,
    NodeId,
    ProposalMsg,
    QuorumCert,
    Round,
    SyncInfo,
    Timeout,
    TimeoutCert,
    TimeoutData,
    TimeoutMsg,
    Vote,
    VoteData,
    VoteMsg,
    block_id,
    payload_root,
)
from consensus.validation import MAX_FAILED_AUTHORS
from node.sim.config import Behaviour

SEEN_ROUNDS_KEPT = 64
"""Rounds of received proposals (double-vote) or timeouts (forge-tc) remembered (bounded)."""
ABSURD_ROUNDS: tuple[int, ...] = (10**12, MAX_ROUND, MAX_ROUND + 1, 2**63 - 1)
"""What ``inflate-round`` claims: huge but valid, the largest valid, and beyond it."""


class Byzantine:
    """Rewrites the action lists of one Byzantine instance."""

    def __init__(
        self,
        *,
        behaviour: Behaviour,
        me: NodeId,
        nodes: int,
        chain_id: str,
        signer: crypto.Signer,
        rng: random.Random,
    ) -> None:
        self.behaviour = behaviour
        self.me = me
        self.nodes = nodes
        self.chain_id = chain_id
        self.signer = signer
        self.rng = rng
        self.forged = 0
        """Conflicting messages signed (second proposals, second votes)."""
        self.dropped = 0
        """Own proposals withheld (silent) and block requests left unanswered (withhold-sync)."""
        self.forged_tcs = 0
        """TCs built around a forged high QC round (forge-tc)."""
        self.quorum = nodes - (nodes - 1) // 3
        self.lookup: Callable[[Digest], Block | None] = lambda _id: None
        """Blocks this instance holds (set by the runner; false-blame reads parents)."""
        self._seen: dict[Round, list[Block]] = {}
        self._timeouts: dict[Round, dict[NodeId, Timeout]] = {}
        self._forged_tc_rounds: set[Round] = set()

    # -- observation -----------------------------------------------------------
    def saw_proposal(self, block: Block) -> None:
        """Remember proposals this instance received (a double voter votes for the other one)."""
        if self.behaviour != "double-vote":
            return
        seen = self._seen.setdefault(block.round, [])
        if all(block_id(b.header) != block_id(block.header) for b in seen) and len(seen) < 4:
            seen.append(block)
        if len(self._seen) > SEEN_ROUNDS_KEPT:
            for old in sorted(self._seen)[: len(self._seen) - SEEN_ROUNDS_KEPT]:
                del self._seen[old]

    def saw_timeout(self, msg: TimeoutMsg) -> list[Action]:
        """A validated timeout reached this instance; ``forge-tc`` answers with a forged TC
        once it holds enough other timeouts of that round."""
        if self.behaviour != "forge-tc" or msg.timeout.author == self.me:
            return []
        timeout = msg.timeout
        round = timeout.data.round
        others = self._timeouts.setdefault(round, {})
        others.setdefault(timeout.author, timeout)
        if len(self._timeouts) > SEEN_ROUNDS_KEPT:
            for old in sorted(self._timeouts)[: len(self._timeouts) - SEEN_ROUNDS_KEPT]:
                del self._timeouts[old]
        if len(others) < self.quorum - 1 or round in self._forged_tc_rounds:
            return []
        self._forged_tc_rounds.add(round)
        if len(self._forged_tc_rounds) > SEEN_ROUNDS_KEPT:
            self._forged_tc_rounds.discard(min(self._forged_tc_rounds))
        return self._forge_tc(round, list(others.values())[: self.quorum - 1], msg.sync)

    def serve(self, request: BlockRequest, blocks: list[Block]) -> list[Block] | None:
        """What this instance answers to ``request`` (``blocks`` is the honest answer);
        None sends nothing."""
        if self.behaviour == "withhold-sync":
            self.dropped += 1
            return None
        if self.behaviour == "garbage-sync":
            return self._garbage(request, blocks)
        if self.behaviour == "inflate-round" and blocks:
            self.forged += 1
            absurd = self.rng.choice(ABSURD_ROUNDS)
            header = msgspec.structs.replace(blocks[0].header, round=absurd,
                                             height=self.rng.choice((blocks[0].height, absurd)))
            return [Block(header=header, payload=blocks[0].payload), *blocks[1:]]
        return blocks

    # -- rewriting ---------------------------------------------------------------
    def rewrite(self, actions: list[Action]) -> list[Action]:
        if self.behaviour == "twins":
            return actions
        out: list[Action] = []
        for action in actions:
            out.extend(self._rewrite_one(action))
        return out

    def _own_proposal(self, action: Action) -> ProposalMsg | None:
        if (
            isinstance(action, Broadcast)
            and isinstance(action.message, ProposalMsg)
            and action.message.block.header.author == self.me
        ):
            return action.message
        return None

    def _rewrite_one(self, action: Action) -> list[Action]:
        proposal = self._own_proposal(action)
        if proposal is not None and self.behaviour in ("silent", "forge-tc"):
            self.dropped += 1
            return []
        if proposal is not None and self.behaviour == "equivocate":
            return self._equivocate(proposal)
        if proposal is not None and self.behaviour == "false-blame":
            return self._false_blame(proposal)
        if proposal is not None and self.behaviour == "inflate-round":
            return [Broadcast(message=self._inflate_proposal(proposal))]
        own_timeout = (isinstance(action, Broadcast) and isinstance(action.message, TimeoutMsg)
                       and action.message.timeout.author == self.me)
        if own_timeout and self.behaviour == "forge-tc":
            assert isinstance(action, Broadcast) and isinstance(action.message, TimeoutMsg)
            return [Broadcast(message=self._forge_timeout(action.message))]
        if own_timeout and self.behaviour == "inflate-round":
            assert isinstance(action, Broadcast) and isinstance(action.message, TimeoutMsg)
            return [action, Broadcast(message=self._inflate_timeout(action.message))]
        if (self.behaviour == "inflate-round" and isinstance(action, Send)
                and isinstance(action.message, VoteMsg) and action.message.vote.author == self.me):
            vote = action.message
            claim = self._inflate_timeout(self._timeout_for(vote))
            return [action, Send(to=action.to, message=self._inflate_vote(vote)), Broadcast(message=claim)]
        if (
            self.behaviour == "double-vote"
            and isinstance(action, Send)
            and isinstance(action.message, VoteMsg)
            and action.message.vote.author == self.me
        ):
            second = Send(to=action.to, message=self._second_vote(action.message))
            pair: list[Action] = [action, second]
            self.rng.shuffle(pair)
            return pair
        return [action]

    def _equivocate(self, proposal: ProposalMsg) -> list[Action]:
        block = proposal.block
        payload = (*block.payload, b"equivocation:" + self.rng.randbytes(8))
        header = msgspec.structs.replace(block.header, tx_root=payload_root(payload))
        signature = self.signer.sign(
            chain_id=self.chain_id, kind=crypto.KIND_PROPOSAL, message=block_id(header)
        )
        other = ProposalMsg(
            block=Block(header=header, payload=payload), signature=signature, sync=proposal.sync
        )
        self.forged += 1
        peers = [i for i in range(self.nodes) if i != self.me]
        self.rng.shuffle(peers)
        half = len(peers) // 2
        out: list[Action] = [Send(to=p, message=proposal) for p in peers[:half]]
        out += [Send(to=p, message=other) for p in peers[half:]]
        if half > 0:
            # The first peer of the first half gets both blocks, so the
            # equivocation is provable and the evidence can be committed.
            out.append(Send(to=peers[0], message=other))
        return out

    def _second_vote(self, msg: VoteMsg) -> VoteMsg:
        voted = msg.vote.vote_data
        target: VoteData | None = None
        for block in self._seen.get(voted.round, []):
            if block_id(block.header) != voted.block_id:
                target = msgspec.structs.replace(
                    voted,
                    block_id=block_id(block.header),
                    parent_id=block.parent_id,
                    parent_round=block.header.parent_qc.round,
                    height=block.height,
                )
                break
        if target is None:
            target = msgspec.structs.replace(
                voted, block_id=codec.digest(b"double-vote:" + voted.block_id)
            )
        signature = self.signer.sign(
            chain_id=self.chain_id, kind=crypto.KIND_VOTE, message=codec.encode(target)
        )
        self.forged += 1
        return VoteMsg(vote=Vote(vote_data=target, author=self.me, signature=signature), sync=msg.sync)

    # -- forge-tc ------------------------------------------------------------------
    def _sign_timeout(self, data: TimeoutData) -> bytes:
        return self.signer.sign(chain_id=self.chain_id, kind=crypto.KIND_TIMEOUT,
                                message=codec.encode(data))

    def _forge_timeout(self, msg: TimeoutMsg) -> TimeoutMsg:
        """The same timeout claiming QC round ``round - 1``; it can only show its real QC."""
        data = msg.timeout.data
        if data.high_qc_round >= data.round - 1:
            return msg  # nothing higher to claim
        forged = msgspec.structs.replace(data, high_qc_round=data.round - 1)
        self.forged += 1
        timeout = msgspec.structs.replace(msg.timeout, data=forged, signature=self._sign_timeout(forged))
        return TimeoutMsg(timeout=timeout, sync=msg.sync)

    def _forge_tc(self, round: Round, others: list[Timeout], sync: SyncInfo) -> list[Action]:
        """``others`` plus our timeout claiming QC round ``round - 1`` as a TC, carried by an
        otherwise well-formed timeout of ours (so only the TC can be refused)."""
        best: QuorumCert = max((t.high_qc for t in others), key=lambda qc: qc.round)
        if best.round >= round - 1:
            return []  # nothing higher to claim
        claims: dict[NodeId, tuple[Round, bytes]] = {
            t.author: (t.data.high_qc_round, t.signature) for t in others}
        claims[self.me] = (round - 1, self._sign_timeout(
            TimeoutData(epoch=best.vote_data.epoch, round=round, high_qc_round=round - 1)))
        signers = tuple(sorted(claims))
        tc = TimeoutCert(epoch=best.vote_data.epoch, round=round, signers=signers,
                         high_qc_rounds=tuple(claims[s][0] for s in signers),
                         signatures=tuple(claims[s][1] for s in signers), high_qc=best)
        data = TimeoutData(epoch=best.vote_data.epoch, round=round, high_qc_round=best.round)
        carrier = Timeout(data=data, author=self.me, signature=self._sign_timeout(data), high_qc=best)
        self.forged += 1
        self.forged_tcs += 1
        return [Broadcast(message=TimeoutMsg(
            timeout=carrier, sync=SyncInfo(high_qc=best, high_commit_qc=sync.high_commit_qc, high_tc=tc)))]

    # -- inflate-round -------------------------------------------------------------
    def _inflate_proposal(self, proposal: ProposalMsg) -> ProposalMsg:
        absurd = self.rng.choice(ABSURD_ROUNDS)
        block = proposal.block
        height = block.height if self.rng.random() < 0.5 else absurd
        header = msgspec.structs.replace(block.header, round=absurd, height=height, failed_authors=())
        self.forged += 1
        signature = self.signer.sign(chain_id=self.chain_id, kind=crypto.KIND_PROPOSAL, message=block_id(header))
        return ProposalMsg(block=Block(header=header, payload=block.payload), signature=signature,
                           sync=proposal.sync)

    def _inflate_timeout(self, msg: TimeoutMsg) -> TimeoutMsg:
        data = msgspec.structs.replace(msg.timeout.data, round=self.rng.choice(ABSURD_ROUNDS))
        self.forged += 1
        timeout = msgspec.structs.replace(msg.timeout, data=data, signature=self._sign_timeout(data))
        return TimeoutMsg(timeout=timeout, sync=msg.sync)

    def _timeout_for(self, vote: VoteMsg) -> TimeoutMsg:
        """A timeout of the vote's round claiming the sync info's QC (inflated next)."""
        qc = vote.sync.high_qc
        data = TimeoutData(epoch=qc.vote_data.epoch, round=vote.vote.vote_data.round, high_qc_round=qc.round)
        timeout = Timeout(data=data, author=self.me, signature=b"", high_qc=qc)
        return TimeoutMsg(timeout=timeout, sync=vote.sync)

    def _inflate_vote(self, msg: VoteMsg) -> VoteMsg:
        absurd = self.rng.choice(ABSURD_ROUNDS)
        data = msgspec.structs.replace(msg.vote.vote_data, round=absurd, height=absurd,
                                       block_id=codec.digest(b"inflated:" + msg.vote.vote_data.block_id))
        self.forged += 1
        signature = self.signer.sign(chain_id=self.chain_id, kind=crypto.KIND_VOTE, message=codec.encode(data))
        return VoteMsg(vote=Vote(vote_data=data, author=self.me, signature=signature), sync=msg.sync)

    # -- garbage-sync --------------------------------------------------------------
    def _garbage(self, request: BlockRequest, blocks: list[Block]) -> list[Block] | None:
        """One kind of garbage per answer, drawn at random."""
        self.forged += 1
        kind = self.rng.randrange(5)
        if not blocks or kind == 0:
            # Conflicting: a made-up block that is not the one asked for (a fork of nothing).
            base = blocks[0] if blocks else None
            if base is None:
                return None
            header = msgspec.structs.replace(base.header, timestamp_ms=base.header.timestamp_ms + 1)
            return [Block(header=header, payload=base.payload)]
        if kind == 1:
            # The right headers with other payloads (tx_root no longer matches).
            return [Block(header=b.header, payload=(b"garbage:" + self.rng.randbytes(8),)) for b in blocks]
        if kind == 2:
            # Broken links: the chain in the wrong order.
            return list(reversed(blocks)) if len(blocks) > 1 else [blocks[0], blocks[0]]
        if kind == 3:
            # A corrupted certificate in the newest block.
            qc = blocks[0].header.parent_qc
            if not qc.signatures:
                return blocks[1:] or None
            bad = msgspec.structs.replace(qc, signatures=(bytes(64),) * len(qc.signatures))
            header = msgspec.structs.replace(blocks[0].header, parent_qc=bad)
            return [Block(header=header, payload=blocks[0].payload), *blocks[1:]]
        # Truncated: only old ancestors, never the block asked for.
        return blocks[1:] or [Block(header=msgspec.structs.replace(blocks[0].header, author=self.me),
                                    payload=blocks[0].payload)]

    # -- false-blame ---------------------------------------------------------------
    def _honest_other_than(self, avoid: NodeId) -> NodeId:
        choices = [i for i in range(self.nodes) if i not in (self.me, avoid)]
        return self.rng.choice(choices) if choices else avoid

    def _false_blame(self, proposal: ProposalMsg) -> list[Action]:
        block = proposal.block
        header = block.header
        if header.failed_authors:
            # After a TC: blame other validators than the elected leaders of the skipped rounds.
            blamed = tuple((r, self._honest_other_than(a)) for r, a in header.failed_authors)
            lie = msgspec.structs.replace(header, failed_authors=blamed)
        else:
            # No round was skipped: skip the parent and blame its (honest) leader.
            parent = self.lookup(header.parent_qc.block_id)
            if parent is None or parent.height == 0:
                return [Broadcast(message=proposal)]
            qc = parent.header.parent_qc
            first = max(qc.round + 1, header.round - MAX_FAILED_AUTHORS)
            leader = parent.header.author
            lie = msgspec.structs.replace(
                header, parent_qc=qc, height=parent.height,
                executed_height=min(header.executed_height, parent.height - 1),
                failed_authors=tuple((r, leader if r == parent.round and leader != self.me
                                      else self._honest_other_than(self.me))
                                     for r in range(first, header.round)))
        self.forged += 1
        signature = self.signer.sign(chain_id=self.chain_id, kind=crypto.KIND_PROPOSAL, message=block_id(lie))
        return [Broadcast(message=ProposalMsg(block=Block(header=lie, payload=block.payload),
                                              signature=signature, sync=proposal.sync))]
