"""Browse routes: the paged lists a participant's or operator's client needs beyond
single-record lookups — accounts by status or debt, an account's open orders and
readings, a slot's order book, recent trades across slots, and the cleared slots'
price and volume history.

Every list is bounded (``limit``, at most ``MAX_PAGE``) and cursored where it can be
longer than a page; the cursor is the last item's key, so a page never repeats or
skips an item while the chain grows. Cost is bounded by the state's own indexes
(open orders by owner, orders by slot, slot records, trade counts); the accounts
list is the one sort over a table, of the consortium's accounts.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from consensus import codec
from contracts import state as st
from node.api.http_util import TRADE_ID, ApiError, json_response, parse_address, query_params, uint
from node.api.protocol import NodeBackend

MAX_PAGE = 1_000
"""Most items one page of any browse list holds (``limit`` above it is a 400)."""
DEFAULT_PAGE = 50
"""Items per page when the client names no ``limit``."""
ACCOUNT_STATUSES = ("pending", "active", "suspended")


_j = codec.to_builtins


def accounts_page(state: st.State, *, status: str | None, in_debt: bool, limit: int,
                  after: str | None, address: str | None = None) -> dict[str, Any]:
    """Accounts by address, filtered by ``status`` and/or a debt above zero; ``next`` is
    the ``after`` of the next page (None on the last). With ``address``, only that account
    (an empty list when it is unknown: a client asks whether a key is registered without a 404)."""
    if address is not None:
        known = state.accounts.get(address)
        return {"accounts": [_j(known)] if known is not None else [], "next": None}
    found = sorted(a for a, acc in state.accounts.items()
                   if (status is None or acc.status == status) and (not in_debt or acc.debt_u > 0)
                   and (after is None or a > after))
    page = found[:limit]
    return {"accounts": [_j(state.accounts[a]) for a in page],
            "next": page[-1] if len(found) > len(page) else None}


def account_orders(state: st.State, address: str) -> list[dict[str, Any]]:
    """The account's open orders, by slot then placement."""
    ids = [oid for (owner, _slot, _side), orders in state.open_orders_by_owner.items() if owner == address
           for oid in orders]
    found = [state.orders[i] for i in ids if i in state.orders]
    found.sort(key=lambda o: (o.slot, o.seq))
    return [_j(o) for o in found[:MAX_PAGE]]


def account_readings(state: st.State, address: str, *, limit: int) -> list[dict[str, Any]]:
    """The account's readings still in state, newest slot first. A reading exists only for a
    slot that is unsettled or has the account's settlement line, so those slots are looked up."""
    meta = state.meta
    slots = set(state.settlements_by_account.get(address, ())) | set(meta.unsettled_slots)
    found = [state.readings.get(st.pair_key(s, address)) for s in sorted(slots, reverse=True)]
    return [_j(r) for r in found if r is not None][:limit]


def account_channels(state: st.State, address: str, *, limit: int) -> list[dict[str, Any]]:
    """The payment channels the account is a party of, newest opening first (a bounded scan:
    ``contracts.channels`` caps the table)."""
    found = [c for c in state.channels.values() if address in (c.party_a, c.party_b)]
    found.sort(key=lambda c: msgspec.structs.astuple(c.opened_at), reverse=True)
    return [codec.to_builtins(c) for c in found[:limit]]


def slot_orders(state: st.State, slot_no: int) -> list[dict[str, Any]]:
    """Every order of the slot in state (any status), in placement order: the slot's book."""
    found = [state.orders[i] for i in state.orders_by_slot.get(slot_no, ()) if i in state.orders]
    found.sort(key=lambda o: o.seq)
    return [_j(o) for o in found[:10 * MAX_PAGE]]


def _trade_key(trade_id: str) -> tuple[int, int]:
    slot, _, k = trade_id.partition("-")
    return int(slot), int(k)


def recent_trades(state: st.State, *, limit: int, before: str | None) -> dict[str, Any]:
    """Trades across slots, newest first (slot, then walk order), strictly before the trade
    ``before``; ``next`` is the ``before`` of the next page (None on the last)."""
    cursor = _trade_key(before) if before is not None else None
    slots = sorted((r.slot for r in state.slots.values() if r.trade_count
                    and (cursor is None or r.slot <= cursor[0])), reverse=True)
    out: list[dict[str, Any]] = []
    more = False
    for slot_no in slots:
        count = state.slots[st.slot_key(slot_no)].trade_count
        top = cursor[1] if cursor is not None and slot_no == cursor[0] else count
        for k in range(min(top, count) - 1, -1, -1):
            trade = state.trades.get(f"{slot_no}-{k}")
            if trade is None:
                continue
            if len(out) == limit:
                more = True
                break
            out.append(_j(trade))
        if more:
            break
    return {"trades": out, "next": out[-1]["trade_id"] if more and out else None}


def slot_history(state: st.State, *, limit: int) -> list[dict[str, Any]]:
    """Price and volume of the most recent cleared or settled slots still in state, oldest first."""
    records = sorted((r for r in state.slots.values() if r.status != "open"), key=lambda r: r.slot)
    return [{"slot": r.slot, "status": r.status, "price_u_per_wh": r.price_u_per_wh,
             "volume_wh": r.volume_wh, "trade_count": r.trade_count, "order_count": r.order_count}
            for r in records[-limit:]]


def _limit(query: dict[str, str]) -> int:
    limit = uint(query.get("limit", str(DEFAULT_PAGE)), what="limit", maximum=MAX_PAGE)
    if limit == 0:
        raise ApiError("bad_request", "limit must be at least 1")
    return limit


class BrowseRoutes:
    """List handlers bound to one backend."""

    def __init__(self, backend: NodeBackend) -> None:
        self.backend = backend

    def add_to(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_get(f"{prefix}/accounts", self.accounts)
        router.add_get(f"{prefix}/accounts/{{address}}/orders", self.orders_of)
        router.add_get(f"{prefix}/accounts/{{address}}/readings", self.readings_of)
        router.add_get(f"{prefix}/accounts/{{address}}/channels", self.channels_of)
        router.add_get(f"{prefix}/market/slots/{{slot}}/orders", self.slot_book)
        router.add_get(f"{prefix}/market/trades", self.trades)
        router.add_get(f"{prefix}/market/history", self.history)

    async def accounts(self, request: web.Request) -> web.Response:
        query = query_params(request, "status", "in_debt", "limit", "after", "address")
        status = query.get("status")
        if status is not None and status not in ACCOUNT_STATUSES:
            raise ApiError("bad_request", f"status must be one of {', '.join(ACCOUNT_STATUSES)}")
        in_debt = query.get("in_debt", "false")
        if in_debt not in ("true", "false"):
            raise ApiError("bad_request", "in_debt must be true or false")
        after, address = query.get("after"), query.get("address")
        out = accounts_page(await self.backend.read_state(), status=status, in_debt=in_debt == "true",
                            limit=_limit(query), after=parse_address(after, what="after") if after is not None else None,
                            address=parse_address(address) if address is not None else None)
        return json_response(out)

    async def orders_of(self, request: web.Request) -> web.Response:
        query_params(request)
        address = parse_address(request.match_info["address"])
        return json_response({"orders": account_orders(await self.backend.read_state(), address)})

    async def readings_of(self, request: web.Request) -> web.Response:
        query = query_params(request, "limit")
        address = parse_address(request.match_info["address"])
        out = account_readings(await self.backend.read_state(), address, limit=_limit(query))
        return json_response({"readings": out})

    async def channels_of(self, request: web.Request) -> web.Response:
        query = query_params(request, "limit")
        address = parse_address(request.match_info["address"])
        out = account_channels(await self.backend.read_state(), address, limit=_limit(query))
        return json_response({"channels": out})

    async def slot_book(self, request: web.Request) -> web.Response:
        query_params(request)
        slot = uint(request.match_info["slot"], what="slot")
        return json_response({"slot": slot, "orders": slot_orders(await self.backend.read_state(), slot)})

    async def trades(self, request: web.Request) -> web.Response:
        query = query_params(request, "limit", "before")
        before = query.get("before")
        if before is not None and not TRADE_ID.fullmatch(before):
            raise ApiError("bad_request", "before must be a trade id <slot>-<k>")
        out = recent_trades(await self.backend.read_state(), limit=_limit(query), before=before)
        return json_response(out)

    async def history(self, request: web.Request) -> web.Response:
        query = query_params(request, "limit")
        return json_response({"slots": slot_history(await self.backend.read_state(), limit=_limit(query))})
