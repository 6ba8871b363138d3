"""Metering: signed readings per account and slot (MARKET.md "Metering").

A reading for slot s is accepted from the end of the slot until ``settle_time(s)``
[``reading_window_closed``], once per account and slot [``duplicate_reading``], both values in ``[0, max_reading_wh]`` [``bad_quantity``].
The executor has already checked that it was signed by the account's meter key
(or its own key when it has none). Accounts of roles that neither consume nor
produce (grid, regulator, validator) submit no readings [``role_not_allowed``].
"""

from __future__ import annotations

import msgspec

from contracts import errors
from contracts.context import BlockContext
from contracts.genesis import Genesis
from contracts.market import settle_time_ms, slot_end_ms
from contracts.records import ReadingRecord
from contracts.state import Reading, SlotRecord, pair_key, slot_key
from contracts.transactions import SubmitReading, Tx

replace = msgspec.structs.replace
METERED_ROLES = frozenset({"generator", "consumer", "prosumer", "retailer"})


def check_reading_bounds(genesis: Genesis, body: SubmitReading) -> None:
    """Both values in ``[0, max_reading_wh]`` [``bad_quantity``]."""
    bound = genesis.market.max_reading_wh
    if body.import_wh > bound or body.export_wh > bound:
        raise errors.fail(errors.BAD_QUANTITY, f"import_wh and export_wh must be in [0, {bound}] Wh")


def check_reading_window(genesis: Genesis, slot: int, *, now_ms: int, latest_ms: int | None = None) -> None:
    """Readings for ``slot`` are accepted at block times in [slot end, settle time)
    [``reading_window_closed``]. ``now_ms`` is the block time (at admission: the latest
    committed block's, so a window already closed then stays closed); ``latest_ms`` the
    latest block time the transaction could still execute at (at admission: just before
    its expiry), which must not come before the window opens. Execution passes only
    ``now_ms``; admission refuses only what no later block could accept."""
    start, end = slot_end_ms(genesis, slot), settle_time_ms(genesis, slot)
    latest = now_ms if latest_ms is None else max(now_ms, latest_ms)
    if now_ms >= end or latest < start:
        raise errors.fail(errors.READING_WINDOW_CLOSED,
                          f"readings for slot {slot} are accepted in [{start}, {end}) ms")


def apply_submit_reading(ctx: BlockContext, tx: Tx, body: SubmitReading) -> None:
    state = ctx.state
    genesis = state.genesis
    account = state.accounts[tx.sender]
    if account.role not in METERED_ROLES:
        raise errors.fail(errors.ROLE_NOT_ALLOWED, f"a {account.role} account has no meter")
    check_reading_window(genesis, body.slot, now_ms=ctx.timestamp_ms)
    check_reading_bounds(genesis, body)
    key = pair_key(body.slot, tx.sender)
    if key in state.readings:
        raise errors.fail(errors.DUPLICATE_READING, f"slot {body.slot} already has a reading")
    location = ctx.emit(ReadingRecord(slot=body.slot, account=tx.sender, import_wh=body.import_wh,
                                      export_wh=body.export_wh, signed_by=tx.public_key))
    state.put("readings", key, Reading(slot=body.slot, account=tx.sender, import_wh=body.import_wh,
                                       export_wh=body.export_wh, location=location))
    skey = slot_key(body.slot)
    if skey not in state.slots:
        # A slot without orders was never cleared; it still needs settling.
        state.put("slots", skey, SlotRecord(slot=body.slot, status="cleared"))
        meta = state.meta
        state.set_meta(replace(meta, unsettled_slots=tuple(sorted({*meta.unsettled_slots, body.slot}))))
