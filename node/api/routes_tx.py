"""Transaction routes: ``POST /v1/transactions`` (JSON, batches, MessagePack) and
``GET /v1/transactions/{hash}``.

Transactions are submitted as JSON (``{"raw": hex}``, ``{"tx": {...},
"signature": hex}``, or a batch ``{"transactions": [...]}``) or, for bulk
loaders, as ``application/msgpack``: a MessagePack array of raw signed
transactions (no hex, no JSON; the fast path the benchmark uses). A batch goes
to the backend in one ``submit`` call. When the mempool is full the backend
raises ``Overloaded`` and the answer is ``503 mempool_full`` with
``Retry-After``; clients back off and resubmit (a resubmission of a known
transaction is idempotent: same hash, 202).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import web

from contracts import errors as tx_errors
from node.api import views
from node.api.http_util import (
    OFFLOAD_ITEMS,
    STATUS_BY_CODE,
    ApiError,
    error_response,
    hex_bytes,
    json_response,
    parse_json,
    query_params,
    raw_from_json_item,
    read_body,
)
from node.api.protocol import NodeBackend, Overloaded, SubmitResult

MSGPACK_CONTENT_TYPE = "application/msgpack"


class TxRoutes:
    """Submission and transaction-status handlers bound to one backend."""

    def __init__(self, backend: NodeBackend, *, max_batch_txs: int) -> None:
        self.backend = backend
        self.max_batch_txs = max_batch_txs

    async def submit(self, request: web.Request) -> web.Response:
        query_params(request)
        body = await read_body(request)
        if len(body) > OFFLOAD_ITEMS * 512 and request.content_type != MSGPACK_CONTENT_TYPE:
            raws, batch = await asyncio.to_thread(self._parse_submission, request.content_type, body)
        else:
            raws, batch = self._parse_submission(request.content_type, body)
        if not raws:
            raise ApiError("bad_request", "no transactions in the request")
        if len(raws) > self.max_batch_txs:
            raise ApiError("batch_too_large", f"at most {self.max_batch_txs} transactions per request")
        results = await self.backend.submit(raws)
        assert len(results) == len(raws), "backend must answer every transaction"
        if not batch:
            r = results[0]
            if r.code is not None:
                if r.code == Overloaded.code:
                    raise Overloaded(r.message)
                raise ApiError(r.code, r.message or r.code)
            assert r.tx_hash is not None
            return json_response({"tx_hash": r.tx_hash.hex()}, status=202)
        return self._batch_response(results)

    def _parse_submission(self, content_type: str, body: bytes) -> tuple[list[bytes], bool]:
        if content_type == MSGPACK_CONTENT_TYPE:
            try:
                return msgspec.msgpack.decode(body, type=list[bytes]), True
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise ApiError(tx_errors.MALFORMED, f"expected a msgpack array of raw txs: {exc}") from None
        if content_type not in ("application/json", "application/octet-stream", ""):
            raise ApiError("unsupported_media_type", f"use application/json or {MSGPACK_CONTENT_TYPE}")
        obj = parse_json(body)
        if isinstance(obj, dict) and "transactions" in obj:
            items = obj["transactions"]
            if set(obj) != {"transactions"} or not isinstance(items, list):
                raise ApiError(tx_errors.MALFORMED, '"transactions" must be the only field, a list')
            if len(items) > self.max_batch_txs:
                raise ApiError("batch_too_large", f"at most {self.max_batch_txs} transactions per request")
            return [raw_from_json_item(item, where=f"transactions[{i}]: ") for i, item in enumerate(items)], True
        return [raw_from_json_item(obj)], False

    @staticmethod
    def _batch_response(results: list[SubmitResult]) -> web.Response:
        accepted = sum(1 for r in results if r.code is None)
        if accepted == 0 and all(r.code == Overloaded.code for r in results):
            raise Overloaded("mempool is full, retry later")
        items: list[dict[str, Any]] = []
        for r in results:
            item: dict[str, Any] = {"tx_hash": r.tx_hash.hex() if r.tx_hash is not None else None}
            if r.code is not None:
                item["error"] = {"code": r.code, "message": r.message or r.code}
            items.append(item)
        body = {"accepted": accepted, "rejected": len(results) - accepted, "results": items}
        if accepted == 0:
            # The status of the first rejection that is not back-pressure (some were, not all).
            code = next(r.code for r in results if r.code is not None and r.code != Overloaded.code)
            return error_response(
                "rejected", "every transaction was rejected", STATUS_BY_CODE.get(code, 422),
                accepted=0, rejected=len(results), results=items,
            )
        return json_response(body, status=202)

    async def transaction(self, request: web.Request) -> web.Response:
        query_params(request)
        tx_hash = hex_bytes(request.match_info["hash"], what="transaction hash", size=32)
        found = await self.backend.tx_status(tx_hash)
        if found is None:
            raise ApiError("not_found", "unknown transaction")
        return json_response(views.tx_lookup_json(tx_hash, found))

