"""Market routes: the contracts' read side — accounts, slots, orders, trades, trade
traces with Merkle proofs, dispatch instructions."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from contracts import errors as tx_errors
from contracts import market
from node.api import views
from node.api.http_util import (
    TRADE_ID,
    ApiError,
    hex_bytes,
    json_response,
    parse_address,
    query_params,
    settlements_limit,
    uint,
)
from node.api.protocol import NodeBackend

MAX_TRADES = 10_000
"""Most trades one GET /v1/trades answers (``limit`` above it is a 400)."""


class MarketRoutes:
    """Contracts query handlers bound to one backend."""

    def __init__(self, backend: NodeBackend) -> None:
        self.backend = backend

    # contracts queries

    async def account(self, request: web.Request) -> web.Response:
        query = query_params(request, "settlements_limit", "settlements_before_slot")
        address = parse_address(request.match_info["address"])
        before = query.get("settlements_before_slot")
        out = views.account(await self.backend.read_state(), address,
                            settlements_limit=settlements_limit(query),
                            settlements_before_slot=uint(before, what="settlements_before_slot")
                            if before is not None else None)
        return json_response(self._found(out, "account"))

    async def slot(self, request: web.Request) -> web.Response:
        query = query_params(request, "settlements_limit", "settlements_after_account")
        slot = uint(request.match_info["slot"], what="slot")
        state = await self.backend.read_state()
        last = market.horizon_slot(self.backend.genesis, state.meta.timestamp_ms)
        if slot > last:
            raise ApiError(tx_errors.BEYOND_HORIZON,
                           f"slot {slot} is beyond the horizon (at most slot {last} at the latest block time)",
                           status=404)
        after = query.get("settlements_after_account")
        out = views.slot(state, self.backend.genesis, slot,
                         settlements_limit=settlements_limit(query),
                         settlements_after_account=parse_address(after, what="settlements_after_account")
                         if after is not None else None)
        return json_response(self._found(out, "slot"))

    async def order(self, request: web.Request) -> web.Response:
        query_params(request)
        order_id = request.match_info["order_id"]
        hex_bytes(order_id, what="order id", size=32)
        return json_response(self._found(views.order(await self.backend.read_state(), order_id), "order"))

    async def trades(self, request: web.Request) -> web.Response:
        query = query_params(request, "account", "slot", "limit")
        account = query.get("account")
        slot = query.get("slot")
        limit = uint(query.get("limit", "1000"), what="limit", maximum=MAX_TRADES)
        out = views.trades(
            await self.backend.read_state(),
            account=parse_address(account, what="account") if account is not None else None,
            slot=uint(slot, what="slot") if slot is not None else None,
            limit=limit,
        )
        return json_response({"trades": out})

    async def trace(self, request: web.Request) -> web.Response:
        query_params(request)
        trade_id = request.match_info["trade_id"]
        if not TRADE_ID.fullmatch(trade_id):
            raise ApiError("bad_request", "trade id must be <slot>-<k>")
        out = await views.trace_with_proofs(
            await self.backend.read_state(), trade_id, self.backend.block, self.backend.receipt_leaves
        )
        if out is None:
            raise ApiError("not_found", "unknown trade")
        return json_response(out)


    async def dispatch(self, request: web.Request) -> web.Response:
        account = query_params(request, "account").get("account")
        out = views.dispatch(await self.backend.read_state(),
                             parse_address(account, what="account") if account is not None else None)
        return json_response({"dispatch": out})

    @staticmethod
    def _found(value: Any, what: str) -> Any:
        if value is None:
            raise ApiError("not_found", f"unknown {what}")
        return value
