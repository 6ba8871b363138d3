"""The paths of the OpenAPI document: each route of the REST API with its parameters and
every status it answers (the schemas they refer to are in ``node.api.openapi``)."""

from __future__ import annotations

from typing import Any

from node.api import views
from node.api.http_util import MAX_U64


def ref(name: str) -> dict[str, Any]:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _err(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": _json_content(ref("Error"))}
    if headers:
        out["headers"] = headers
    return out


_ALLOW = {"Allow": {"description": "the methods the path supports", "schema": {"type": "string"}}}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before resubmitting",
                                "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
_405 = _err("method_not_allowed: the path does not support this method (see Allow)", _ALLOW)
_400_PARAMS = "bad_request: a path or query parameter is invalid, unknown or repeated"


def get_op(summary: str, schema: dict[str, Any], params: list[dict[str, Any]] | None = None,
         *, op_id: str, not_found: str | None = None,
         more: dict[str, Any] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "ok", "content": _json_content(schema)},
        "400": _err(_400_PARAMS),
        "405": _405,
    }
    if not_found:
        responses["404"] = _err(not_found)
    responses.update(more or {})
    return {"get": {"operationId": op_id, "summary": summary, "parameters": params or [],
                    "responses": responses}}


def param(name: str, where: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": description,
            "schema": schema}


_HASH = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_ADDRESS = {"type": "string", "pattern": "^[0-9a-f]{40}$"}
_UINT = {"type": "integer", "minimum": 0, "maximum": MAX_U64}
_TRADE_ID = {"type": "string", "pattern": "^[0-9]{1,19}-[0-9]{1,19}$"}
_SETTLEMENTS_LIMIT = param("settlements_limit", "query", "settlement lines per page (default 100)",
                        {"type": "integer", "minimum": 1, "maximum": views.SETTLEMENTS_PAGE_MAX})

_SUBMIT_ERRORS = {
    "400": _err("malformed, bad_request, too_large, bad_signature, wrong_chain, expired, batch_too_large"),
    "403": _err("not_registered, wrong_signer, unauthorized"),
    "409": _err("stale_nonce: the nonce is at or below the sender's last accepted one"),
    "413": _err("body_too_large: the request body exceeds the node's limit"),
    "415": _err("unsupported_media_type: use application/json or application/msgpack"),
    "422": _err("a contract rule refuses it already at admission (e.g. role_not_allowed, "
                "price_out_of_range, bad_quantity, slot_closed, beyond_horizon); `rejected` for "
                "a batch whose every transaction was rejected (with the per-item results)"),
    "429": _err("account_limit: too many pending transactions of this sender; rate_limited: too many "
                "submissions from this client address or unregistered sender (Retry-After)", _RETRY_AFTER),
    "503": _err("mempool_full: the pool is full, or its backlog already means more than ~1.5 s of "
                "commits at the recent rate (overload is shed, not queued): back off (Retry-After) "
                "and resubmit", _RETRY_AFTER),
}



def api_paths() -> dict[str, Any]:
    """Every route of ``node.api.app`` with its parameters and the statuses it answers."""
    submit = {"post": {
        "operationId": "submitTransactions",
        "summary": "Submit one signed transaction or a batch. 202 once durable in the mempool journal.",
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"anyOf": [ref("RawTx"), ref("SignedTxJson"), ref("Batch")]}},
            "application/msgpack": {"schema": {
                "type": "string", "format": "binary",
                "description": "MessagePack array of raw signed transactions (bin)"}},
        }},
        "responses": {
            "202": {"description": "accepted", "content": _json_content(
                {"anyOf": [ref("Accepted"), ref("BatchAccepted")]})},
            **_SUBMIT_ERRORS,
            "405": _405,
        },
    }}
    hash_p = param("hash", "path", "64 hex chars", _HASH)
    paths: dict[str, Any] = {
        "/v1/status": get_op("Chain id, node id, role, height, round, leader, state root, peers, syncing, "
                           "market timing; node role (validator or observer), epoch and validator set", ref("Status"), op_id="getStatus"),
        "/v1/transactions": submit,
        "/v1/transactions/{hash}": get_op(
            "pending / committed / failed, height, receipt", ref("TxLookup"), [hash_p],
            op_id="getTransaction", not_found="not_found: unknown transaction"),
        "/v1/blocks/{height}": get_op(
            "A committed block (height or 'latest'); ?txs=full decodes transactions", ref("BlockView"),
            [param("height", "path", "height or latest", {"anyOf": [_UINT, {"type": "string", "enum": ["latest"]}]}),
             param("txs", "query", "full: decode each transaction; hashes (default): only their hashes",
                {"type": "string", "enum": ["full", "hashes"]})],
            op_id="getBlock",
            not_found="not_found: no committed block at that height; pruned: below the node's state-sync snapshot"),
        "/v1/accounts/{address}": get_op(
            "Role, status, balance, locked, pending, debt, nonce, and its settlement lines (paged)",
            ref("AccountView"),
            [param("address", "path", "40 hex chars", _ADDRESS), _SETTLEMENTS_LIMIT,
             param("settlements_before_slot", "query", "next page: lines of slots before this one", _UINT)],
            op_id="getAccount", not_found="not_found: unknown account"),
        "/v1/market/slots/{slot}": get_op(
            "Slot state, price, volume_wh, trades, and its settlement lines (paged)", ref("SlotView"),
            [param("slot", "path", "slot number", _UINT), _SETTLEMENTS_LIMIT,
             param("settlements_after_account", "query", "next page: lines of accounts after this one", _ADDRESS)],
            op_id="getSlot",
            not_found="beyond_horizon: the slot is beyond the horizon at the latest block time"),
        "/v1/orders/{order_id}": get_op(
            "One order (id = hash of the placing tx)", ref("Order"),
            [param("order_id", "path", "64 hex chars", _HASH)],
            op_id="getOrder", not_found="not_found: unknown order"),
        "/v1/trades": get_op(
            "Trades by account and/or slot, oldest first", ref("Trades"),
            [param("account", "query", "address", _ADDRESS), param("slot", "query", "slot", _UINT),
             param("limit", "query", "max items (default 1000)", {"type": "integer", "minimum": 0, "maximum": 10_000})],
            op_id="getTrades"),
        "/v1/trace/trades/{trade_id}": get_op(
            "Lineage of a trade (orders, clearing, trade, readings, settlement) with Merkle inclusion proofs",
            ref("Trace"), [param("trade_id", "path", "trade id: <slot>-<k>", _TRADE_ID)],
            op_id="getTrace", not_found="not_found: unknown trade"),
        "/v1/validators": get_op("Validators with credit, leader share, rewards", ref("Validators"),
                               op_id="getValidators"),
        "/v1/dispatch": get_op("Dispatch instructions, optionally of one account", ref("DispatchList"),
                             [param("account", "query", "address", _ADDRESS)], op_id="getDispatch"),
        "/v1/events": {"get": {
            "operationId": "events",
            "summary": "WebSocket stream of JSON events (blocks, txs, trades, dispatch); needs an Upgrade",
            "parameters": [
                param("topics", "query", "comma list of blocks,txs,trades,dispatch",
                   {"type": "string", "pattern": "^(blocks|txs|trades|dispatch)(,(blocks|txs|trades|dispatch))*$"}),
                param("account", "query", "only events involving this address", _ADDRESS)],
            "responses": {
                "101": {"description": "switching protocols: the WebSocket stream"},
                "400": _err(_400_PARAMS + "; or the request is not a WebSocket upgrade"),
                "405": _405,
                "503": _err("too_many_subscribers"),
            },
        }},
        "/healthz": get_op("Process alive", ref("Health"), op_id="healthz",
                         more={"503": _err("not_ready: a task of the node has stopped")}),
        "/readyz": get_op("Synced and connected to a quorum", ref("Ready"), op_id="readyz",
                        more={"503": _err("not_ready, with `reason`: execution_halted, syncing, no_quorum or no_peers")}),
    }
    return paths
