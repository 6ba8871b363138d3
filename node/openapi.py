"""The OpenAPI 3.1 document of the REST API, served at ``/openapi.json``.

Schemas of the records come from the very msgspec Structs the contracts use
(``msgspec.json.schema_components``), so the document cannot drift from the
code; the paths are listed here next to a one-line description each.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from contracts import state as st
from contracts import transactions as txs


class ErrorBody(msgspec.Struct, frozen=True):
    code: str
    """Stable machine-readable code (e.g. ``malformed``, ``stale_nonce``, ``mempool_full``)."""
    message: str


class Error(msgspec.Struct, frozen=True):
    error: ErrorBody


class SignedTxJson(msgspec.Struct, frozen=True):
    """A signed transaction as JSON: the tx object and the hex signature of its canonical bytes."""

    tx: txs.Tx
    signature: str


class RawTx(msgspec.Struct, frozen=True):
    """A signed transaction as hex of its raw canonical bytes."""

    raw: str


class Batch(msgspec.Struct, frozen=True):
    """Each item is a ``RawTx`` or a ``SignedTxJson`` (at most 2,000)."""

    transactions: list[dict[str, Any]]


class Accepted(msgspec.Struct, frozen=True):
    tx_hash: str


class BatchItem(msgspec.Struct, frozen=True):
    tx_hash: str | None
    error: ErrorBody | None = None


class BatchAccepted(msgspec.Struct, frozen=True):
    accepted: int
    rejected: int
    results: list[BatchItem]


_SCHEMA_TYPES: tuple[Any, ...] = (
    Error, SignedTxJson, RawTx, Batch, Accepted, BatchAccepted, st.Account, st.Order, st.SlotRecord,
    st.Trade, st.Reading, st.SettlementLine, st.Dispatch, st.ValidatorInfo,
)


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_ERR = {"description": "error", "content": _json_content(_ref("Error"))}
_OBJ = {"type": "object"}


def _get(summary: str, schema: dict[str, Any], params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"get": {
        "summary": summary, "parameters": params or [],
        "responses": {"200": {"description": "ok", "content": _json_content(schema)},
                      "400": _ERR, "404": _ERR},
    }}


def _p(name: str, where: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": description,
            "schema": schema or {"type": "string"}}


@functools.cache
def openapi_document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(_SCHEMA_TYPES, ref_template="#/components/schemas/{name}")
    submit = {"post": {
        "summary": "Submit one signed transaction or a batch. 202 once durable in the mempool journal.",
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"oneOf": [_ref("RawTx"), _ref("SignedTxJson"), _ref("Batch")]}},
            "application/msgpack": {"schema": {"description": "MessagePack array of raw signed txs (bin)"}},
        }},
        "responses": {
            "202": {"description": "accepted", "content": _json_content(
                {"oneOf": [_ref("Accepted"), _ref("BatchAccepted")]})},
            "400": _ERR, "403": _ERR, "409": _ERR, "413": _ERR, "422": _ERR,
            "429": {"description": "account_limit: too many pending transactions of this sender",
                    "content": _json_content(_ref("Error"))},
            "503": {"description": "mempool_full: back off (Retry-After) and resubmit", "content":
                    _json_content(_ref("Error"))},
        },
    }}
    paths: dict[str, Any] = {
        "/v1/status": _get("Chain id, node id, role, height, round, leader, state root, peers, syncing, market timing", _OBJ),
        "/v1/transactions": submit,
        "/v1/transactions/{hash}": _get("pending / committed / failed, height, receipt", _OBJ,
                                        [_p("hash", "path", "64 hex chars")]),
        "/v1/blocks/{height}": _get("A committed block (height or 'latest'); ?txs=full decodes transactions", _OBJ,
                                    [_p("height", "path", "height or latest"), _p("txs", "query", "full")]),
        "/v1/accounts/{address}": _get("Role, status, balance, locked, pending, debt, nonce", _ref("Account"),
                                       [_p("address", "path", "40 hex chars")]),
        "/v1/market/slots/{slot}": _get("Slot state, price, volume_wh, trades", _OBJ,
                                        [_p("slot", "path", "slot number", {"type": "integer"})]),
        "/v1/orders/{order_id}": _get("One order (id = hash of the placing tx)", _ref("Order"),
                                      [_p("order_id", "path", "64 hex chars")]),
        "/v1/trades": _get("Trades by account and/or slot", {"type": "object", "properties": {
            "trades": {"type": "array", "items": _ref("Trade")}}},
            [_p("account", "query", "address"), _p("slot", "query", "slot", {"type": "integer"}),
             _p("limit", "query", "max items (<= 10000)", {"type": "integer"})]),
        "/v1/trace/trades/{trade_id}": _get(
            "Lineage of a trade (orders, clearing, trade, readings, settlement) with Merkle inclusion proofs",
            _OBJ, [_p("trade_id", "path", "trade id")]),
        "/v1/validators": _get("Validators with credit, leader share, rewards", _OBJ),
        "/v1/dispatch": _get("Dispatch instructions, optionally of one account", _OBJ,
                             [_p("account", "query", "address")]),
        "/v1/events": _get("WebSocket stream of JSON events (blocks, txs, trades, dispatch)", _OBJ,
                           [_p("topics", "query", "comma list of blocks,txs,trades,dispatch"),
                            _p("account", "query", "only events involving this address")]),
        "/healthz": _get("Process alive", _OBJ),
        "/readyz": _get("Synced and connected to a quorum (503 otherwise)", _OBJ),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "GridChain node API", "version": "1", "description":
                 "Errors are {\"error\": {\"code\", \"message\"}} with a 4xx/5xx status."},
        "paths": paths,
        "components": {"schemas": components},
    }
