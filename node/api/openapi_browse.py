"""The OpenAPI part of the browse routes (``node.api.routes_browse``): the answers'
schemas and the paths with their parameters; ``node.api.openapi`` merges both in."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from contracts import state as st
from node.api.openapi_paths import get_op, param, ref
from node.api.routes_browse import ACCOUNT_STATUSES, MAX_PAGE


class AccountsPage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    accounts: list[st.Account]
    next: str | None
    """``after`` of the next page; null on the last page."""


class OrderList(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    orders: list[st.Order]


class SlotBook(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    slot: int
    orders: list[st.Order]
    """Every order of the slot still in state, any status, in placement order."""


class ReadingList(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    readings: list[st.Reading]


class ChannelList(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    channels: list[st.Channel]
    """Newest opening first."""


class TradesPage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    trades: list[st.Trade]
    """Newest first: by slot, then the slot's walk order."""
    next: str | None
    """``before`` of the next page; null on the last page."""


class SlotSummary(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    slot: int
    status: Literal["cleared", "settled"]
    price_u_per_wh: int | None
    volume_wh: int
    trade_count: int
    order_count: int


class SlotHistory(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    slots: list[SlotSummary]
    """Oldest first."""


SCHEMA_TYPES: tuple[Any, ...] = (AccountsPage, OrderList, SlotBook, ReadingList, ChannelList, TradesPage, SlotHistory)

_ADDRESS = {"type": "string", "pattern": "^[0-9a-f]{40}$"}
_UINT = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
_LIMIT = param("limit", "query", f"items per page (default 50, at most {MAX_PAGE})",
               {"type": "integer", "minimum": 1, "maximum": MAX_PAGE})
_ADDRESS_P = param("address", "path", "40 hex chars", _ADDRESS)


def browse_paths() -> dict[str, Any]:
    return {
        "/v1/accounts": get_op(
            "Accounts by address (paged), optionally only one status or only those in debt", ref("AccountsPage"),
            [param("status", "query", "only accounts with this status", {"type": "string", "enum": list(ACCOUNT_STATUSES)}),
             param("in_debt", "query", "true: only accounts whose debt_u is above zero",
                   {"type": "string", "enum": ["true", "false"]}),
             _LIMIT, param("after", "query", "next page: accounts after this address", _ADDRESS),
             param("address", "query", "only this account: a list of one, or empty when it is unknown", _ADDRESS)],
            op_id="listAccounts"),
        "/v1/accounts/{address}/orders": get_op(
            "The account's open orders, by slot", ref("OrderList"), [_ADDRESS_P], op_id="getAccountOrders"),
        "/v1/accounts/{address}/readings": get_op(
            "The account's meter readings still in state, newest slot first", ref("ReadingList"),
            [_ADDRESS_P, _LIMIT], op_id="getAccountReadings"),
        "/v1/accounts/{address}/channels": get_op(
            "The payment channels the account is a party of, newest opening first (docs/CHANNELS.md)",
            ref("ChannelList"), [_ADDRESS_P, _LIMIT], op_id="getAccountChannels"),
        "/v1/market/slots/{slot}/orders": get_op(
            "The slot's order book: every order still in state, any status (supply and demand curves)",
            ref("SlotBook"), [param("slot", "path", "slot number", _UINT)], op_id="getSlotOrders"),
        "/v1/market/trades": get_op(
            "Recent trades across slots, newest first, paged", ref("TradesPage"),
            [_LIMIT, param("before", "query", "next page: trades before this trade id",
                           {"type": "string", "pattern": "^[0-9]{1,19}-[0-9]{1,19}$"})],
            op_id="getRecentTrades"),
        "/v1/market/history": get_op(
            "Clearing price and volume of the latest cleared or settled slots, oldest first", ref("SlotHistory"),
            [_LIMIT], op_id="getMarketHistory"),
    }
