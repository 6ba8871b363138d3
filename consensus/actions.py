"""Outputs of the consensus core: what the runtime must do, in list order.

Ordering is part of the contract: a ``PersistSafety`` must be durable (fsync)
before any later action in the same list is carried out, because the vote or
timeout that follows it must never leave the process unless the safety data that
forbids a conflicting one is on disk.
"""

from __future__ import annotations

import msgspec

from consensus.types import Block, Digest, Message, NodeId, QuorumCert, Round, SafetyData


class Action(msgspec.Struct, frozen=True):
    pass


class PersistSafety(Action, frozen=True):
    """Write ``data`` durably before carrying out any later action."""

    data: SafetyData


class Send(Action, frozen=True):
    """Send ``message`` to validator ``to``."""

    to: NodeId
    message: Message


class Broadcast(Action, frozen=True):
    """Send ``message`` to every other validator."""

    message: Message


class Commit(Action, frozen=True):
    """``blocks`` (oldest first, contiguous heights) are committed; ``proof`` is the QC
    whose 2-chain commits the last of them. Execute and store them in order."""

    blocks: tuple[Block, ...]
    proof: QuorumCert


class FetchBlocks(Action, frozen=True):
    """Ask ``peer`` for block ``block_id`` and up to ``count - 1`` ancestors; answer with ``BlocksFetched``."""

    peer: NodeId
    block_id: Digest
    count: int


class RequestPayload(Action, frozen=True):
    """This validator leads ``round``: answer with ``PayloadReady`` for that round."""

    round: Round


class ScheduleTick(Action, frozen=True):
    """Deliver a ``Tick`` no later than ``at_ms`` (the next timeout deadline)."""

    at_ms: int


class RoundEntered(Action, frozen=True):
    """Informational: the core entered ``round`` with ``leader`` (logs and metrics)."""

    round: Round
    leader: NodeId
    via_timeout: bool


class EquivocationDetected(Action, frozen=True):
    """Informational: ``author`` signed two conflicting messages for ``round``."""

    author: NodeId
    round: Round
    kind: str
