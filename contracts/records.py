"""Records: the leaves of each block's receipts tree (``contracts.traceability``).

Every executed block yields an ordered list of records, each encoded canonically
(``consensus.codec.encode``) — the leaf bytes. System steps come first (clearing,
trades, settlement lines, missed dispatches, rewards), then for each transaction
its events followed by its receipt. A failed transaction leaves only its receipt.
Records are a tagged union on the field ``record``.
"""

from __future__ import annotations

import msgspec


class _Record(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="record"):
    pass


class TxReceipt(_Record, frozen=True, tag="receipt"):
    tx_hash: bytes
    index: int
    kind: str
    sender: str
    ok: bool
    code: str
    """"ok" or the stable error code."""
    order_id: str | None = None
    """place_order: the order's id (the tx hash, hex) when it was placed; cancel_order: the order named."""
    slot: int | None = None
    """place_order, submit_reading: the slot the body names (what ``--slot next`` resolved to)."""


class OrderPlaced(_Record, frozen=True, tag="order"):
    order_id: str
    owner: str
    slot: int
    side: str
    price_u_per_wh: int
    quantity_wh: int
    energy_type: str
    seq: tuple[int, int]
    locked_u: int


class OrderCancelled(_Record, frozen=True, tag="order_cancelled"):
    order_id: str
    released_u: int


class SlotCleared(_Record, frozen=True, tag="clearing"):
    slot: int
    price_u_per_wh: int | None
    volume_wh: int
    trade_count: int
    trades_digest: bytes
    fee_u_per_wh: int


class TradeRecord(_Record, frozen=True, tag="trade"):
    trade_id: str
    slot: int
    buyer: str
    seller: str
    buy_order: str
    sell_order: str
    quantity_wh: int
    price_u_per_wh: int
    fee_u_per_wh: int
    energy_type: str


class ReadingRecord(_Record, frozen=True, tag="reading"):
    slot: int
    account: str
    import_wh: int
    export_wh: int
    signed_by: bytes


class SettlementRecord(_Record, frozen=True, tag="settlement"):
    slot: int
    account: str
    contracted_wh: int
    metered_wh: int
    delta_wh: int
    imbalance_u: int
    reading_missing: bool
    proceeds_u: int
    debt_added_u: int
    written_off_u: int = 0
    """Part of the imbalance not paid because a debt reached ``token.max_debt_u`` (the
    account's when it pays, the grid operator's when it pays a surplus)."""


class SlotSettled(_Record, frozen=True, tag="slot_settled"):
    slot: int
    accounts: int
    grid_u: int


class DispatchIssued(_Record, frozen=True, tag="dispatch"):
    dispatch_id: int
    account: str
    direction: str
    amount_wh: int
    deadline_ms: int
    penalty_u: int


class DispatchResolved(_Record, frozen=True, tag="dispatch_resolved"):
    dispatch_id: int
    status: str
    penalty_u: int
    debt_added_u: int
    written_off_u: int = 0
    """Part of the penalty beyond the account's debt bound; the grid operator does not receive it."""


class Notarized(_Record, frozen=True, tag="notarized"):
    doc_hash: bytes
    parties: tuple[str, ...]
    title: str


class RegistrationDropped(_Record, frozen=True, tag="registration_dropped"):
    """A pending registration request left the state without being approved."""

    account: str
    reason: str
    """"rejected" (by the grid operator) or "expired" (``registration_ttl_slots`` passed)."""


class BlockRewards(_Record, frozen=True, tag="rewards"):
    height: int
    proposer: int
    voters: tuple[int, ...]
    proposer_u: int
    voter_u: int


class ChannelOpened(_Record, frozen=True, tag="channel_opened"):
    channel_id: str
    party_a: str
    party_b: str
    deposit_u: int
    challenge_slots: int


class ChannelFunded(_Record, frozen=True, tag="channel_funded"):
    channel_id: str
    party: str
    deposit_u: int


class ChannelCloseStarted(_Record, frozen=True, tag="channel_close_started"):
    """A unilateral close: ``closed_by`` posted state ``seq``; challenges until ``deadline_ms``."""

    channel_id: str
    closed_by: str
    seq: int
    balance_a_u: int
    balance_b_u: int
    energy_wh: int
    deadline_ms: int


class ChannelChallenged(_Record, frozen=True, tag="channel_challenged"):
    """A newer state replaced the posted one; ``penalty``: it proves the publisher stale."""

    channel_id: str
    challenger: str
    seq: int
    replaced_seq: int
    penalty: bool


class ChannelSettled(_Record, frozen=True, tag="channel_settled"):
    """The channel paid out: ``paid_a_u + paid_b_u`` equals its deposits."""

    channel_id: str
    party_a: str
    party_b: str
    seq: int
    paid_a_u: int
    paid_b_u: int
    energy_wh: int
    reading_slots: tuple[int, ...]
    how: str
    """"cooperative", "unilateral" (after the challenge period) or "penalty"."""
    forfeited_by: str | None = None
    """With a penalty: the party whose channel balance went to the other."""


Record = (
    TxReceipt | OrderPlaced | OrderCancelled | SlotCleared | TradeRecord | ReadingRecord
    | SettlementRecord | SlotSettled | DispatchIssued | DispatchResolved | Notarized | BlockRewards
    | RegistrationDropped | ChannelOpened | ChannelFunded | ChannelCloseStarted | ChannelChallenged
    | ChannelSettled
)
