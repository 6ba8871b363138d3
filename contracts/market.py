"""Market: per-slot uniform-price double auction (MARKET.md, implemented as written).

``clear(bids, asks, p_min=, p_max=, fee=)`` is the pure auction used both on chain
and by ``gridchain market clear``; ``trades_digest`` is the digest both print, so
an auditor re-running a slot's orders gets the on-chain digest. The handlers
place and cancel orders (escrow locks); ``clear_slot`` is the system step run in
the first block at or after gate closure.

Slot timing (T0 = genesis time): slot s is [T0 + s·slot_ms, T0 + (s+1)·slot_ms);
``gate_close(s) = T0 + s·slot_ms − gate_lead_ms``;
``settle_time(s) = T0 + (s+1)·slot_ms + meter_window_ms``.

Order ids are the placing transaction's hash (hex), known to the client before
inclusion; sequences are (height, index in block). ``energy_type`` is carried for
information (a trade takes the seller's); the auction does not match on it.
Trade ids are ``"<slot>-<k>"`` with k the position in the walk.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from consensus import codec
from contracts import errors
from contracts.context import BlockContext
from contracts.genesis import Genesis
from contracts.records import OrderCancelled, OrderPlaced, SlotCleared, TradeRecord
from contracts.state import Order, Position, SlotRecord, State, Trade, pair_key, slot_key
from contracts.token import credit
from contracts.transactions import CancelOrder, PlaceOrder, Tx

replace = msgspec.structs.replace

BUY_ROLES = frozenset({"consumer", "prosumer", "retailer"})
SELL_ROLES = frozenset({"generator", "prosumer", "retailer"})


# --- slot timing ----------------------------------------------------------------------

def gate_close_ms(genesis: Genesis, slot: int) -> int:
    return genesis.genesis_time_ms + slot * genesis.market.slot_ms - genesis.market.gate_lead_ms


def slot_end_ms(genesis: Genesis, slot: int) -> int:
    return genesis.genesis_time_ms + (slot + 1) * genesis.market.slot_ms


def settle_time_ms(genesis: Genesis, slot: int) -> int:
    return slot_end_ms(genesis, slot) + genesis.market.meter_window_ms


def current_slot(genesis: Genesis, timestamp_ms: int) -> int:
    """Slot whose delivery interval contains ``timestamp_ms`` (negative before genesis)."""
    return (timestamp_ms - genesis.genesis_time_ms) // genesis.market.slot_ms


def horizon_slot(genesis: Genesis, timestamp_ms: int) -> int:
    """The furthest slot an order may name at block time ``timestamp_ms``."""
    return current_slot(genesis, timestamp_ms) + genesis.market.max_horizon_slots


def check_order_slot(genesis: Genesis, slot: int, *, now_ms: int, latest_ms: int | None = None) -> None:
    """The one rule for a slot that must be open (placing an order), at execution and admission.

    ``now_ms`` is the block time (at admission: the latest committed block's time, a lower
    bound of the time of any block that can still include the transaction); the gate of
    ``slot`` must not have closed by then [``slot_closed``]. ``latest_ms`` is the latest block
    time at which the transaction could still execute (at admission: just before its expiry;
    at execution: the block time, the default); ``slot`` must be within the horizon then
    [``beyond_horizon``]. Both conditions only get worse as time goes on, so a transaction
    refused at admission could never succeed in any block.
    """
    if now_ms >= gate_close_ms(genesis, slot):
        raise errors.fail(errors.SLOT_CLOSED, f"gate of slot {slot} has closed")
    latest = now_ms if latest_ms is None else max(now_ms, latest_ms)
    last = horizon_slot(genesis, latest)
    if slot > last:
        raise errors.fail(errors.BEYOND_HORIZON,
                          f"slot {slot} is beyond the horizon (at most slot {last} by then)")


def check_cancellable(genesis: Genesis, order: Order, *, now_ms: int) -> None:
    """An order can be cancelled while it is open and its slot's gate has not closed at block
    time ``now_ms`` [``slot_closed``]; neither comes back, so admission uses the same rule."""
    if order.status != "open" or now_ms >= gate_close_ms(genesis, order.slot):
        raise errors.fail(errors.SLOT_CLOSED, f"order is {order.status}, slot {order.slot} gate")


# --- the pure auction -------------------------------------------------------------------

class BookOrder(msgspec.Struct, frozen=True):
    """What the auction needs of an order."""

    order_id: str | int
    price: int
    quantity_wh: int
    seq: tuple[int, int]


class Fill(msgspec.Struct, frozen=True, array_like=True):
    buy_order: str | int
    sell_order: str | int
    quantity_wh: int


class Clearing(msgspec.Struct, frozen=True):
    price: int | None
    """Uniform clearing price (µ/Wh), None when nothing filled."""
    volume_wh: int
    fills: tuple[Fill, ...]
    """In walk order."""
    digest: bytes


class _DigestTrade(msgspec.Struct, frozen=True, array_like=True):
    buy_order: str | int
    sell_order: str | int
    quantity_wh: int
    price: int
    fee: int


def trades_digest(fills: Sequence[Fill], price: int | None, fee: int) -> bytes:
    """Digest of the trade list: [(buy_order, sell_order, quantity_wh, price, fee), ...]."""
    if price is None:
        return codec.digest(codec.encode([]))
    return codec.digest(codec.encode(
        [_DigestTrade(f.buy_order, f.sell_order, f.quantity_wh, price, fee) for f in fills]))


def clear(bids: Sequence[BookOrder], asks: Sequence[BookOrder], *, p_min: int, p_max: int,
          fee: int) -> Clearing:
    """Uniform-price double auction, MARKET.md "Clearing" steps 1–3."""
    bids = sorted(bids, key=lambda o: (-o.price, o.seq))
    asks = sorted(asks, key=lambda o: (o.price + fee, o.seq))
    fills: list[Fill] = []
    i = j = 0
    rem_b = bids[0].quantity_wh if bids else 0
    rem_a = asks[0].quantity_wh if asks else 0
    last_b = last_a = None
    while i < len(bids) and j < len(asks) and bids[i].price >= asks[j].price + fee:
        x = min(rem_b, rem_a)
        last_b, last_a = bids[i], asks[j]
        fills.append(Fill(last_b.order_id, last_a.order_id, x))
        rem_b -= x
        rem_a -= x
        if rem_b == 0:
            i += 1
            rem_b = bids[i].quantity_wh if i < len(bids) else 0
        if rem_a == 0:
            j += 1
            rem_a = asks[j].quantity_wh if j < len(asks) else 0
    if last_b is None or last_a is None:
        return Clearing(price=None, volume_wh=0, fills=(), digest=trades_digest((), None, fee))
    # Bids before i are exhausted, bids[i] (if any) is the first not completely filled.
    lower = max(last_a.price + fee, bids[i].price if i < len(bids) else p_min)
    upper = min(last_b.price, asks[j].price + fee if j < len(asks) else p_max)
    assert lower <= upper, "clearing bounds crossed"
    price = (lower + upper) // 2
    return Clearing(price=price, volume_wh=sum(f.quantity_wh for f in fills), fills=tuple(fills),
                    digest=trades_digest(fills, price, fee))


# --- handlers ----------------------------------------------------------------------------

def apply_place_order(ctx: BlockContext, tx: Tx, body: PlaceOrder, tx_hash: bytes) -> None:
    state = ctx.state
    genesis = state.genesis
    m = genesis.market
    account = state.accounts[tx.sender]
    allowed = BUY_ROLES if body.side == "buy" else SELL_ROLES
    if account.role not in allowed:
        raise errors.fail(errors.ROLE_NOT_ALLOWED, f"a {account.role} may not {body.side}")
    check_order_slot(genesis, body.slot, now_ms=ctx.timestamp_ms)
    if not m.p_min <= body.price_u_per_wh <= m.p_max:
        raise errors.fail(errors.PRICE_OUT_OF_RANGE,
                          f"price {body.price_u_per_wh} not in [{m.p_min}, {m.p_max}] µ/Wh")
    if not 1 <= body.quantity_wh <= m.max_order_wh:
        raise errors.fail(errors.BAD_QUANTITY, f"quantity_wh must be in [1, {m.max_order_wh}]")
    if account.debt_u > 0:
        raise errors.fail(errors.HAS_DEBT, f"account owes {account.debt_u} µ")
    other_side = "sell" if body.side == "buy" else "buy"
    if (tx.sender, body.slot, other_side) in state.open_orders_by_owner:
        raise errors.fail(errors.SELF_TRADE, f"the account has an open {other_side} order in slot {body.slot}")
    lock_u = body.price_u_per_wh * body.quantity_wh if body.side == "buy" else 0
    if lock_u > account.balance_u:
        raise errors.fail(errors.INSUFFICIENT_BALANCE, f"lock {lock_u} µ > free balance {account.balance_u} µ")
    key = slot_key(body.slot)
    slot = state.slots.get(key) or SlotRecord(slot=body.slot)
    if slot.order_count >= m.max_orders_per_slot:
        raise errors.fail(errors.LIMIT_REACHED, f"slot {body.slot} holds {slot.order_count} orders")
    order_id = tx_hash.hex()
    assert order_id not in state.orders, "a tx hash executes once (nonces are strictly increasing)"
    # All checks passed: mutate.
    seq = (ctx.height, ctx.tx_index)
    location = ctx.emit(OrderPlaced(
        order_id=order_id, owner=tx.sender, slot=body.slot, side=body.side,
        price_u_per_wh=body.price_u_per_wh, quantity_wh=body.quantity_wh,
        energy_type=body.energy_type, seq=seq, locked_u=lock_u))
    if lock_u:
        state.put("accounts", tx.sender, replace(
            account, balance_u=account.balance_u - lock_u, locked_u=account.locked_u + lock_u))
    state.put("orders", order_id, Order(
        order_id=order_id, owner=tx.sender, slot=body.slot, side=body.side,
        price_u_per_wh=body.price_u_per_wh, quantity_wh=body.quantity_wh,
        energy_type=body.energy_type, seq=seq, location=location, locked_u=lock_u))
    state.put("slots", key, replace(slot, order_count=slot.order_count + 1))
    if slot.order_count == 0:
        meta = state.meta
        state.set_meta(replace(meta, open_slots=tuple(sorted({*meta.open_slots, body.slot}))))


def apply_cancel_order(ctx: BlockContext, tx: Tx, body: CancelOrder) -> None:
    state = ctx.state
    order = state.orders.get(body.order_id)
    if order is None:
        raise errors.fail(errors.UNKNOWN_ORDER, f"no order {body.order_id}")
    if order.owner != tx.sender:
        raise errors.fail(errors.NOT_OWNER, "only the owner may cancel an order")
    check_cancellable(state.genesis, order, now_ms=ctx.timestamp_ms)
    ctx.emit(OrderCancelled(order_id=order.order_id, released_u=order.locked_u))
    if order.locked_u:
        account = state.accounts[order.owner]
        state.put("accounts", order.owner, replace(
            account, locked_u=account.locked_u - order.locked_u,
            balance_u=account.balance_u + order.locked_u))
    state.put("orders", order.order_id, replace(order, status="cancelled", locked_u=0))


# --- system step: clearing ---------------------------------------------------------------

def clear_slot(ctx: BlockContext, slot: int) -> None:
    """Clear ``slot`` (MARKET.md "Clearing" step 4–5): trades, payments, escrow release."""
    state = ctx.state
    genesis = state.genesis
    m = genesis.market
    fee = m.grid_fee
    orders = sorted((state.orders[i] for i in state.open_orders_by_slot.get(slot, ())),
                    key=lambda o: o.seq)
    bids = [BookOrder(o.order_id, o.price_u_per_wh, o.quantity_wh, o.seq) for o in orders if o.side == "buy"]
    asks = [BookOrder(o.order_id, o.price_u_per_wh, o.quantity_wh, o.seq) for o in orders if o.side == "sell"]
    result = clear(bids, asks, p_min=m.p_min, p_max=m.p_max, fee=fee)
    price = result.price
    clearing_location = ctx.emit(SlotCleared(
        slot=slot, price_u_per_wh=price, volume_wh=result.volume_wh, trade_count=len(result.fills),
        trades_digest=result.digest, fee_u_per_wh=fee))

    filled: dict[str, int] = {}
    positions: dict[str, Position] = {}
    trade_ids: dict[str, list[str]] = {}

    def add(address: str, *, bought_wh: int = 0, sold_wh: int = 0, paid_u: int = 0,
            proceeds_u: int = 0, trade_id: str) -> None:
        pos = positions.get(address)
        if pos is None:
            pos = state.positions.get(pair_key(slot, address)) or Position(slot=slot, account=address)
            trade_ids[address] = list(pos.trade_ids)
        positions[address] = replace(
            pos, bought_wh=pos.bought_wh + bought_wh, sold_wh=pos.sold_wh + sold_wh,
            paid_u=pos.paid_u + paid_u, proceeds_u=pos.proceeds_u + proceeds_u)
        trade_ids[address].append(trade_id)

    for k, fill in enumerate(result.fills):
        assert price is not None
        buy, sell = state.orders[str(fill.buy_order)], state.orders[str(fill.sell_order)]
        trade_id = f"{slot}-{k}"
        x = fill.quantity_wh
        record = TradeRecord(
            trade_id=trade_id, slot=slot, buyer=buy.owner, seller=sell.owner,
            buy_order=buy.order_id, sell_order=sell.order_id, quantity_wh=x,
            price_u_per_wh=price, fee_u_per_wh=fee, energy_type=sell.energy_type)
        # The state keeps the proven leaf's fields plus where the leaf was emitted.
        location = ctx.emit(record)
        state.put("trades", trade_id, Trade(**msgspec.structs.asdict(record), location=location))
        filled[buy.order_id] = filled.get(buy.order_id, 0) + x
        filled[sell.order_id] = filled.get(sell.order_id, 0) + x
        add(buy.owner, bought_wh=x, paid_u=price * x, trade_id=trade_id)
        add(sell.owner, sold_wh=x, proceeds_u=(price - fee) * x, trade_id=trade_id)

    for order in orders:
        got = filled.get(order.order_id, 0)
        status = "expired" if got == 0 else ("filled" if got == order.quantity_wh else "partially_filled")
        if order.side == "buy" and order.locked_u:
            account = state.accounts[order.owner]
            state.put("accounts", order.owner, replace(account, locked_u=account.locked_u - order.locked_u))
            paid = (price or 0) * got
            credit(state, order.owner, order.locked_u - paid)
        state.put("orders", order.order_id, replace(order, status=status, filled_wh=got, locked_u=0))
    for address in sorted(positions):
        pos = replace(positions[address], trade_ids=tuple(trade_ids[address]))
        state.put("positions", pair_key(slot, address), pos)
        if pos.proceeds_u:
            account = state.accounts[address]
            state.put("accounts", address, replace(account, pending_u=account.pending_u + pos.proceeds_u))
    if result.volume_wh:
        credit(state, genesis.grid_operator, fee * result.volume_wh)

    key = slot_key(slot)
    record_before = state.slots.get(key) or SlotRecord(slot=slot)
    state.put("slots", key, replace(
        record_before, status="cleared", price_u_per_wh=price, volume_wh=result.volume_wh,
        trade_count=len(result.fills), trades_digest=result.digest, fee_u_per_wh=fee,
        clearing_location=clearing_location))


def slot_status(state: State, slot: int) -> str:
    """open | cleared | settled for any slot: from its record, or from the block time when it
    has none (never had orders, or pruned after settlement)."""
    record = state.slots.get(slot_key(slot))
    if record is not None:
        return record.status
    ts = state.meta.timestamp_ms
    if ts < gate_close_ms(state.genesis, slot):
        return "open"
    return "settled" if ts >= settle_time_ms(state.genesis, slot) else "cleared"
