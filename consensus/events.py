"""Inputs to the consensus core: everything that can happen to a validator.

The runtime (``node.chain.driver``) or the simulator turns the outside world into these
and calls ``Core.handle(event)``. Messages arrive here only after
``consensus.validation`` accepted them at the edge (decoding, signatures,
committee membership), so the core never sees a forged message.
"""

from __future__ import annotations

import msgspec

from consensus.types import Block, Digest, Message, NodeId, Round


class Event(msgspec.Struct, frozen=True):
    pass


class Tick(Event, frozen=True):
    """The local clock reads ``now_ms``. The only way time enters the core."""

    now_ms: int


class MessageReceived(Event, frozen=True):
    """A validated message from validator ``sender``."""

    sender: NodeId
    message: Message


class PayloadReady(Event, frozen=True):
    """Answer to ``RequestPayload``: transactions for the proposal of ``round`` and
    the runtime's latest executed height and state root."""

    round: Round
    payload: tuple[bytes, ...]
    executed_height: int
    executed_state_root: Digest


class BlocksFetched(Event, frozen=True):
    """Blocks that answered a ``FetchBlocks`` (newest first, each the parent of the one before)."""

    blocks: tuple[Block, ...]
