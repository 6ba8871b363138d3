"""JSON views of chain data for the REST API and the event stream.

Pure read-side functions over the contracts ``State`` and committed blocks:
each turns typed records into JSON-ready dicts (bytes as hex, integers stay
integers, units in the field names as in the contracts). Nothing here mutates
state; ``node.api.app`` does the HTTP around them.

Traceability: every lineage record in the state (orders, the slot's clearing
record, the trade, readings, settlement lines) carries its ``Location`` (block
height, leaf index in that block's receipts tree). ``trace_with_proofs`` loads
each height's leaves once through the backend and attaches a Merkle inclusion
proof per record, plus the block's ``receipts_root`` so a client can check the
proof offline (``gridchain verify-proof``).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import orjson

from consensus import codec
from consensus.credit import window_totals
from contracts import market
from contracts import records as rec
from contracts import state as st
from contracts import traceability as tr
from contracts import transactions as txs
from contracts.dispatch import dispatch_key

TOPICS: tuple[str, ...] = ("blocks", "txs", "trades", "dispatch")
"""Event topics of /v1/events."""


class Event(msgspec.Struct, frozen=True):
    """One event of the stream; ``accounts`` None means "not account-specific"."""

    topic: str
    accounts: frozenset[str] | None
    data: dict[str, Any]


def _j(record: Any) -> Any:
    return codec.to_builtins(record)


# --- market info ------------------------------------------------------------------------


def market_info(genesis: Any, state: st.State) -> dict[str, Any]:
    """What a client needs to pick slots: T0, slot length, gate lead, current slot by block time."""
    m = genesis.market
    ts = state.meta.timestamp_ms
    return {
        "genesis_time_ms": genesis.genesis_time_ms,
        "slot_ms": m.slot_ms,
        "gate_lead_ms": m.gate_lead_ms,
        "meter_window_ms": m.meter_window_ms,
        "max_horizon_slots": m.max_horizon_slots,
        "p_min": m.p_min, "p_max": m.p_max, "grid_fee": m.grid_fee,
        "p_short": m.p_short, "p_long": m.p_long,
        "block_timestamp_ms": ts,
        "current_slot": max(0, market.current_slot(genesis, ts)),  # 0 before genesis
        "grid_operator": genesis.grid_operator,
    }


# --- contracts records --------------------------------------------------------------------


SETTLEMENTS_PAGE_DEFAULT = 100
"""Settlement lines per page when the client names no ``settlements_limit``."""
SETTLEMENTS_PAGE_MAX = 1_000
"""Most settlement lines one page may hold."""


def account(state: st.State, address: str, *, settlements_limit: int = SETTLEMENTS_PAGE_DEFAULT,
            settlements_before_slot: int | None = None) -> dict[str, Any] | None:
    """The account record with one page of its settlement lines (newest slot first).

    ``settlements_next`` is the ``settlements_before_slot`` of the next page, None on the last."""
    acc = state.accounts.get(address)
    if acc is None:
        return None
    slots = sorted(state.settlements_by_account.get(address, ()), reverse=True)
    if settlements_before_slot is not None:
        slots = [s for s in slots if s < settlements_before_slot]
    page = slots[:settlements_limit]
    out: dict[str, Any] = _j(acc)
    out["settlements"] = [_j(state.settlements[st.pair_key(s, address)]) for s in page]
    out["settlements_next"] = page[-1] if len(slots) > len(page) else None
    return out


def slot_settlements(state: st.State, slot_no: int, *, limit: int = SETTLEMENTS_PAGE_DEFAULT,
                     after_account: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a settled slot's lines, by account address; and the next page's cursor."""
    accounts = sorted(state.settlements_by_slot.get(slot_no, ()))
    if after_account is not None:
        accounts = accounts[bisect.bisect_right(accounts, after_account):]
    page = accounts[:limit]
    lines = [_j(state.settlements[st.pair_key(slot_no, a)]) for a in page]
    return lines, (page[-1] if len(accounts) > len(page) else None)


def slot(state: st.State, genesis: Any, slot_no: int, *, settlements_limit: int = SETTLEMENTS_PAGE_DEFAULT,
         settlements_after_account: str | None = None) -> dict[str, Any] | None:
    """The slot record with its trades, lifecycle times and one page of settlement lines
    (``settlements_next``: the ``settlements_after_account`` of the next page, None on the
    last); a slot without a record (no orders, or pruned) gets its status from the block time."""
    record = state.slots.get(st.slot_key(slot_no))
    out: dict[str, Any] = _j(record) if record is not None else _j(st.SlotRecord(slot=slot_no))
    out["status"] = market.slot_status(state, slot_no)
    m = genesis.market
    start_ms = genesis.genesis_time_ms + slot_no * m.slot_ms
    out["gate_close_ms"] = start_ms - m.gate_lead_ms
    out["start_ms"] = start_ms
    out["settle_time_ms"] = start_ms + m.slot_ms + m.meter_window_ms
    out["trades"] = trades(state, slot=slot_no, account=None, limit=10_000)
    out["open_orders"] = len(state.open_orders_by_slot.get(slot_no, {}))
    out["settlements"], out["settlements_next"] = slot_settlements(
        state, slot_no, limit=settlements_limit, after_account=settlements_after_account)
    return out


def order(state: st.State, order_id: str) -> dict[str, Any] | None:
    rec = state.orders.get(order_id)
    return None if rec is None else _j(rec)


def _slot_trades(state: st.State, slot_no: int) -> list[st.Trade]:
    """Trades of one slot in walk order (contracts name them ``"<slot>-<k>"``, k < trade_count)."""
    record = state.slots.get(st.slot_key(slot_no))
    if record is None:
        return []
    found = [state.trades.get(f"{slot_no}-{k}") for k in range(record.trade_count)]
    return [t for t in found if t is not None]


def trades(state: st.State, *, account: str | None, slot: int | None, limit: int) -> list[dict[str, Any]]:
    """Trades filtered by account and/or slot, oldest first, at most ``limit``.

    Cost is bounded by the number of slots that had orders (never a scan of all
    trades or positions): per slot, one position lookup or the slot's own trades.
    Without filters the most recent slots are returned.
    """
    if slot is not None:
        slots = [slot]
    else:
        slots = sorted((rec.slot for rec in state.slots.values() if rec.trade_count), reverse=True)
    found: list[st.Trade] = []
    for slot_no in slots:
        if account is None:
            batch = _slot_trades(state, slot_no)
        else:
            pos = state.positions.get(st.pair_key(slot_no, account))
            ids = pos.trade_ids if pos is not None else ()
            batch = [t for t in (state.trades.get(i) for i in ids) if t is not None]
        found.extend(reversed(batch))
        if len(found) >= limit:
            break
    found = found[:limit]
    found.reverse()
    return [_j(t) for t in found]


def validators(state: st.State, genesis: Any) -> list[dict[str, Any]]:
    """Validator records with credit, exclusion, the rounds led and failed in the credit
    window (docs/CREDIT.md) and leader share (blocks proposed / all)."""
    infos = sorted(state.validators.values(), key=lambda v: v.index)
    total = sum(v.blocks_proposed for v in infos) or 1
    window_led, window_failed = window_totals(state.credit)
    out = []
    for v in infos:
        item = _j(v)
        item["credit"] = state.credit.credits[v.index]
        item["excluded_until_round"] = state.credit.excluded_until_round[v.index]
        item["window_led"] = window_led[v.index]
        item["window_failed"] = window_failed[v.index]
        item["leader_share_ppm"] = v.blocks_proposed * 1_000_000 // total
        out.append(item)
    return out


def dispatch(state: st.State, account: str | None) -> list[dict[str, Any]]:
    found = [d for d in state.dispatches.values() if account is None or d.account == account]
    found.sort(key=lambda d: d.dispatch_id)
    return [_j(d) for d in found[-10_000:]]


# --- transactions and blocks ----------------------------------------------------------------


def receipt_json(receipt: Any) -> Any:
    return None if receipt is None else _j(receipt)


def tx_lookup_json(tx_hash: bytes, found: Any) -> dict[str, Any]:
    return {
        "tx_hash": tx_hash.hex(),
        "status": found.status,
        "height": found.height,
        "index": found.index,
        "receipt": receipt_json(found.receipt),
    }


def _tx_view(raw: bytes) -> dict[str, Any]:
    try:
        return txs.signed_tx_to_json(txs.decode_signed_tx(raw))
    except Exception:  # a committed block may carry a malformed tx (it got a failed receipt)
        return {"hash": codec.digest(raw).hex(), "raw": raw.hex(), "malformed": True}


def block_json(committed: Any, *, full_txs: bool) -> dict[str, Any]:
    block = committed.block
    header = block.header
    out: dict[str, Any] = {
        "height": header.height,
        "block_id": committed.block_id.hex(),
        "round": header.round,
        "epoch": header.epoch,
        "author": header.author,
        "timestamp_ms": header.timestamp_ms,
        "parent_id": block.parent_id.hex(),
        "tx_root": header.tx_root.hex(),
        "state_root": committed.state_root.hex(),
        "receipts_root": committed.receipts_root.hex(),
        "executed_height": header.executed_height,
        "executed_state_root": header.executed_state_root.hex(),
        "failed_authors": [list(x) for x in header.failed_authors],
        "tx_count": len(block.payload),
        "header": _j(header),
        "commit_qc": _j(committed.commit_qc) if committed.commit_qc is not None else None,
    }
    if full_txs:
        out["txs"] = [_tx_view(raw) for raw in block.payload]
    else:
        out["txs"] = [codec.digest(raw).hex() for raw in block.payload]
    if committed.receipts:
        out["receipts"] = [receipt_json(r) for r in committed.receipts]
    return out


# --- events -----------------------------------------------------------------------------------


def block_events(committed: Any, state: st.State | None = None,
                 topics: frozenset[str] = frozenset(TOPICS)) -> list[Event]:
    """Events of one executed block for ``topics``: the block, each transaction
    (involving its sender and the account it names: recipient, approved or
    instructed account), each trade, each dispatch issued or resolved (``state``
    resolves a resolved dispatch's account). Only what some subscriber wants is built."""
    block = committed.block
    height = block.height
    events = []
    if "blocks" in topics:
        events.append(Event("blocks", None, {
            "type": "block", "height": height, "block_id": committed.block_id.hex(),
            "round": block.round, "timestamp_ms": block.header.timestamp_ms,
            "tx_count": len(block.payload), "state_root": committed.state_root.hex(),
        }))
    if "txs" in topics:
        for receipt in committed.receipts:
            involved = {receipt.sender}
            if 0 <= receipt.index < len(block.payload):
                involved.update(_named_accounts(block.payload[receipt.index]))
            events.append(Event("txs", frozenset(involved), {
                "type": "tx", "height": height, "tx_hash": receipt.tx_hash.hex(), "index": receipt.index,
                "kind": receipt.kind, "sender": receipt.sender,
                "status": "committed" if receipt.ok else "failed", "code": receipt.code,
            }))
    if topics & {"trades", "dispatch"} and any(_MAY_HAVE_EVENTS.search(leaf) for leaf in committed.leaves):
        for leaf in committed.leaves:
            event = _record_event(leaf, height, state)
            if event is not None and event.topic in topics:
                events.append(event)
    return events


def _named_accounts(raw: bytes) -> tuple[str, ...]:
    """Accounts a transaction names besides its sender (transfer/mint recipient, managed account)."""
    try:
        body = txs.decode_signed_tx(raw).tx.body
    except Exception:
        return ()
    named = getattr(body, "to", None) or getattr(body, "account", None)
    return (named,) if isinstance(named, str) else ()


_MAY_HAVE_EVENTS = re.compile(b"trade|dispatch")
"""Cheap pre-filter: only leaves whose bytes mention these tags can be trade/dispatch records."""


def _record_event(leaf: bytes, height: int, state: st.State | None) -> Event | None:
    if not _MAY_HAVE_EVENTS.search(leaf):
        return None
    try:
        record: Any = codec.decode(leaf, rec.Record)  # type: ignore[arg-type]
    except codec.CodecError:
        return None
    if isinstance(record, rec.TradeRecord):
        return Event("trades", frozenset((record.buyer, record.seller)),
                     {"type": "trade", "height": height, **_j(record)})
    if isinstance(record, rec.DispatchIssued):
        return Event("dispatch", frozenset((record.account,)),
                     {"type": "dispatch", "height": height, **_j(record)})
    if isinstance(record, rec.DispatchResolved):
        known = state.dispatches.get(dispatch_key(record.dispatch_id)) if state is not None else None
        accounts = frozenset((known.account,)) if known is not None else None
        return Event("dispatch", accounts, {"type": "dispatch_resolved", "height": height, **_j(record)})
    return None


# --- traceability -------------------------------------------------------------------------------


def decode_leaf(leaf: bytes) -> Any:
    """JSON view of one receipts-tree leaf (a ``contracts.records`` record)."""
    try:
        record: Any = codec.decode(leaf, rec.Record)  # type: ignore[arg-type]
    except codec.CodecError:
        return None
    # Round-trip through JSON so the view equals what a client parses (tuples become lists).
    return orjson.loads(orjson.dumps(_j(record), default=bytes.hex))


async def trace_with_proofs(
    state: st.State,
    trade_id: str,
    load_block: Callable[[int], Awaitable[Any]],
    load_leaves: Callable[[int], Awaitable[list[bytes] | None]],
) -> dict[str, Any] | None:
    """The lineage of ``trade_id``: per record its leaf bytes, the decoded record,
    an inclusion proof and the roots of the block that carries it. None if unknown."""
    locations = tr.lineage(state, trade_id)
    if locations is None:
        return None
    return {"trade_id": trade_id, "lineage": await proofs_for(locations, load_block, load_leaves)}


async def proofs_for(
    locations: dict[str, st.Location],
    load_block: Callable[[int], Awaitable[Any]],
    load_leaves: Callable[[int], Awaitable[list[bytes] | None]],
) -> list[dict[str, Any]]:
    """Per named location: the leaf, the decoded record, its inclusion proof and the block's roots."""
    leaves_by_height: dict[int, list[bytes] | None] = {}
    blocks: dict[int, dict[str, Any]] = {}
    out = []
    for role, loc in locations.items():
        h = loc.height
        if h not in leaves_by_height:
            leaves_by_height[h] = await load_leaves(h)
            committed = await load_block(h)
            blocks[h] = {} if committed is None else {
                "height": h, "block_id": committed.block_id.hex(),
                "receipts_root": committed.receipts_root.hex(), "state_root": committed.state_root.hex(),
            }
        leaves = leaves_by_height[h]
        entry: dict[str, Any] = {"role": role, "location": {"height": h, "index": loc.index},
                                 "block": blocks[h], "record": None, "leaf": None, "proof": None}
        if leaves is not None and 0 <= loc.index < len(leaves):
            leaf = leaves[loc.index]
            entry.update(record=decode_leaf(leaf), leaf=leaf.hex(), proof=_j(tr.prove(leaves, loc.index)))
        out.append(entry)
    return out
