"""Settlement: per account and slot, contracted vs metered energy, imbalance priced at
``p_short`` / ``p_long``, zero-sum with the grid operator (MARKET.md "Settlement").

``imbalance`` is the pure rule (also used by ``gridchain market settle``);
``settle_slot`` is the system step run in the first block at or after
``settle_time(s)``. For each account (sorted by address): the charge is taken from
the slot's pending proceeds, then the free balance, the rest becomes debt; the
remaining proceeds become free balance (repaying debt first). The grid operator
receives every charge collected, then pays every surplus. A debt never passes
``token.max_debt_u``: what a charge or surplus payment would add beyond it is written
off (``written_off_u``), so Σ over accounts of (balance + pending − debt) changes by
exactly 0 in every case.
"""

from __future__ import annotations

import msgspec

from contracts.context import BlockContext
from contracts.records import SettlementRecord, SlotSettled
from contracts.state import SettlementLine, State, pair_key, slot_key
from contracts.token import charge, credit

replace = msgspec.structs.replace


class Imbalance(msgspec.Struct, frozen=True):
    contracted_wh: int
    """C = sold − bought."""
    metered_wh: int
    """M = export − import (assumed when the reading is missing)."""
    delta_wh: int
    """Δ = M − C."""
    imbalance_u: int
    """Positive: the account receives Δ·p_long; negative: it pays |Δ|·p_short."""


def imbalance(*, sold_wh: int, bought_wh: int, reading: tuple[int, int] | None,
              p_short: int, p_long: int) -> Imbalance:
    """``reading`` is (import_wh, export_wh) or None when missing (worst case for the account)."""
    contracted = sold_wh - bought_wh
    if reading is not None:
        metered = reading[1] - reading[0]
    elif contracted > 0:
        metered = 0  # a net seller without a reading is taken to have exported nothing
    else:
        metered = contracted  # a net buyer or flat account: delivered exactly its contract
    delta = metered - contracted
    amount = delta * p_long if delta > 0 else delta * p_short
    return Imbalance(contracted_wh=contracted, metered_wh=metered, delta_wh=delta, imbalance_u=amount)


class _Line(msgspec.Struct, frozen=True):
    address: str
    result: Imbalance
    reading_missing: bool
    proceeds_u: int
    debt_added_u: int
    written_off_u: int


def settle_slot(ctx: BlockContext, slot: int) -> None:
    state = ctx.state
    genesis = state.genesis
    m = genesis.market
    grid = genesis.grid_operator
    accounts = sorted(state.accounts_by_slot.get(slot, ()))
    lines: list[_Line] = []
    collected_u = 0
    for address in accounts:
        pos = state.positions.get(pair_key(slot, address))
        reading = state.readings.get(pair_key(slot, address))
        result = imbalance(
            sold_wh=pos.sold_wh if pos else 0, bought_wh=pos.bought_wh if pos else 0,
            reading=(reading.import_wh, reading.export_wh) if reading else None,
            p_short=m.p_short, p_long=m.p_long)
        proceeds = pos.proceeds_u if pos else 0
        cost = max(0, -result.imbalance_u)
        from_proceeds = min(cost, proceeds)
        account = state.accounts[address]
        state.put("accounts", address, replace(account, pending_u=account.pending_u - proceeds))
        # The charge comes out of the slot's proceeds first, then free balance, then debt.
        charged = charge(state, address, cost - from_proceeds)
        # What is left of the proceeds repays old debt first.
        credit(state, address, proceeds - from_proceeds)
        collected_u += cost - charged.written_off_u
        lines.append(_Line(address=address, result=result, reading_missing=reading is None,
                           proceeds_u=proceeds, debt_added_u=charged.debt_added_u,
                           written_off_u=charged.written_off_u))
    # The grid operator receives every charge collected, then pays every surplus: the same
    # end result as netting them, and a surplus it cannot pay (its own debt bound) is written off.
    credit(state, grid, collected_u)
    paid_u = 0
    for line in lines:
        written_off_u = line.written_off_u
        surplus_u = max(0, line.result.imbalance_u)
        if surplus_u:
            written_off_u = charge(state, grid, surplus_u).written_off_u
            credit(state, line.address, surplus_u - written_off_u)
            paid_u += surplus_u - written_off_u
        result = line.result
        location = ctx.emit(SettlementRecord(
            slot=slot, account=line.address, contracted_wh=result.contracted_wh,
            metered_wh=result.metered_wh, delta_wh=result.delta_wh,
            imbalance_u=result.imbalance_u, reading_missing=line.reading_missing,
            proceeds_u=line.proceeds_u, debt_added_u=line.debt_added_u, written_off_u=written_off_u))
        state.put("settlements", pair_key(slot, line.address), SettlementLine(
            slot=slot, account=line.address, contracted_wh=result.contracted_wh,
            metered_wh=result.metered_wh, delta_wh=result.delta_wh,
            imbalance_u=result.imbalance_u, reading_missing=line.reading_missing,
            proceeds_u=line.proceeds_u, debt_added_u=line.debt_added_u, location=location,
            written_off_u=written_off_u))
    ctx.emit(SlotSettled(slot=slot, accounts=len(accounts), grid_u=collected_u - paid_u))
    key = slot_key(slot)
    record = state.slots[key]
    state.put("slots", key, replace(record, status="settled"))
    _remember_and_prune(ctx, slot)


def _remember_and_prune(ctx: BlockContext, slot: int) -> None:
    """Keep ``history_slots`` settled slots in state; drop every record of older ones."""
    state = ctx.state
    history = state.genesis.market.history_slots
    meta = state.meta
    settled = sorted({*meta.settled_slots, slot})
    if history == 0:
        return
    keep_from = slot - history + 1
    old = [s for s in settled if s < keep_from]
    if old:
        settled = settled[len(old):]
    state.set_meta(replace(meta, settled_slots=tuple(settled)))
    for s in old:
        prune_slot(state, s)


def prune_slot(state: State, slot: int) -> None:
    """Delete a settled slot's orders, trades, positions, readings, settlement lines and record."""
    record = state.slots.get(slot_key(slot))
    assert record is None or record.status == "settled", "pruning an unsettled slot"
    for order_id in sorted(state.orders_by_slot.get(slot, ())):
        state.delete("orders", order_id)
    if record is not None:
        for k in range(record.trade_count):
            state.delete("trades", f"{slot}-{k}")
    for address in sorted(state.accounts_by_slot.get(slot, ())):
        key = pair_key(slot, address)
        state.delete("settlements", key)
        state.delete("positions", key)
        state.delete("readings", key)
    state.delete("slots", slot_key(slot))
