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
  share its key and index (see ``node.sim.runner``).
"""

from __future__ import annotations

import random

import msgspec

from consensus import codec, crypto
from consensus.actions import Action, Broadcast, Send
from consensus.types import (
    Block,
    NodeId,
    ProposalMsg,
    Round,
    Vote,
    VoteData,
    VoteMsg,
    block_id,
    payload_root,
)
from node.sim.config import Behaviour

SEEN_ROUNDS_KEPT = 64
"""Rounds of received proposals a double voter remembers (bounded)."""


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
        """Own proposals withheld (silent)."""
        self._seen: dict[Round, list[Block]] = {}

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
        if proposal is not None and self.behaviour == "silent":
            self.dropped += 1
            return []
        if proposal is not None and self.behaviour == "equivocate":
            return self._equivocate(proposal)
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
