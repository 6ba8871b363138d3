"""HTTP plumbing shared by the routes: stable error codes and their answers, the error and
rate-limit middleware, JSON encoding, and strict request parsing (body, query, hex, integers).

Every error is ``{"error": {"code": ..., "message": ...}}`` with a stable ``code`` (see
``STATUS_BY_CODE``) and the matching HTTP status; everything is checked before the backend
is called, so bad input is answered with a 4xx and reaches nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from contracts import errors as tx_errors
from contracts import transactions as txs
from node.api import views
from node.api.protocol import Overloaded
from node.api.rate_limit import CLIENT, RATE_LIMITED, ClientRequest, RateLimiter, retry_after_header

log = logging.getLogger("gridchain.api")

API_VERSION = "v1"
OFFLOAD_ITEMS = 200
"""Requests that decode or render more than this many transactions do it in a worker
thread, so the event loop keeps serving consensus and other clients meanwhile."""
RETRY_AFTER_S = 1
"""Retry-After sent with 503 mempool_full."""


STATUS_BY_CODE: dict[str, int] = {
    "bad_request": 400,
    tx_errors.MALFORMED: 400,
    tx_errors.TOO_LARGE: 400,
    tx_errors.BAD_SIGNATURE: 400,
    tx_errors.WRONG_CHAIN: 400,
    tx_errors.EXPIRED: 400,
    "batch_too_large": 400,
    tx_errors.WRONG_SIGNER: 403,
    tx_errors.UNAUTHORIZED: 403,
    tx_errors.NOT_REGISTERED: 403,
    "not_found": 404,
    "method_not_allowed": 405,
    tx_errors.STALE_NONCE: 409,
    "body_too_large": 413,
    "account_limit": 429,
    "rate_limited": 429,
    "unsupported_media_type": 415,
    "mempool_full": 503,
    "not_ready": 503,
    "too_many_subscribers": 503,
    "internal": 500,
}
"""HTTP status per stable error code; any other rejection code is 422."""


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}``."""

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS_BY_CODE.get(code, 422)


def _bytes_as_hex(value: Any) -> Any:
    # codec.to_builtins leaves bytes inside tuples; JSON shows all bytes as hex.
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(data: Any) -> bytes:
    """JSON bytes of an API answer (bytes anywhere become hex)."""
    return orjson.dumps(data, default=_bytes_as_hex)


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=dumps(data), status=status, content_type="application/json", headers=headers
    )


def error_response(code: str, message: str, status: int, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    body.update(extra)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if code == Overloaded.code else None
    return json_response(body, status=status, headers=headers)


HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.code, exc.message, exc.status)
    except Overloaded as exc:
        return error_response(Overloaded.code, str(exc) or "mempool is full, retry later", 503)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "bad_request" if exc.status < 500 else "internal")
        response = error_response(code, exc.reason or code, exc.status)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response("internal", "internal error", 500)


def rate_limit_middleware(limiter: RateLimiter) -> Any:
    """Per-client-address limit on ``POST /v1/transactions`` (``node.api.rate_limit``); the
    backend charges unregistered senders through the request's ``CLIENT`` context. Any
    refusal during the request adds ``Retry-After`` to the answer."""
    submit_path = f"/{API_VERSION}/transactions"

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method != "POST" or request.path != submit_path:
            return await handler(request)
        client = ClientRequest(address=request.remote or "unknown")
        wait_s = limiter.request(client)
        if wait_s > 0:
            refused = error_response(RATE_LIMITED, "too many submissions from this client address, retry later",
                                      429)
            refused.headers["Retry-After"] = retry_after_header(wait_s)
            return refused
        token = CLIENT.set(client)
        try:
            response = await handler(request)
        finally:
            CLIENT.reset(token)
        if client.retry_after_s > 0:
            response.headers["Retry-After"] = retry_after_header(client.retry_after_s)
        return response

    return middleware


# --- request parsing helpers ------------------------------------------------------------


async def read_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError("body_too_large", exc.text or "request body too large") from None


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(tx_errors.MALFORMED, f"malformed JSON: {exc}") from None


_HEX = re.compile(r"[0-9a-f]*")
_DIGITS = re.compile(r"[0-9]{1,19}")
TRADE_ID = re.compile(r"[0-9]{1,19}-[0-9]{1,19}")
MAX_U64 = 2**63 - 1


def hex_bytes(value: str, *, what: str, size: int) -> bytes:
    if len(value) != 2 * size or not _HEX.fullmatch(value):
        raise ApiError("bad_request", f"{what} must be {2 * size} lowercase hex characters")
    return bytes.fromhex(value)


def uint(value: str, *, what: str, maximum: int = MAX_U64) -> int:
    if not _DIGITS.fullmatch(value) or int(value) > maximum:
        raise ApiError("bad_request", f"{what} must be an integer in [0, {maximum}]")
    return int(value)


def query_params(request: web.Request, *allowed: str) -> dict[str, str]:
    """The query parameters, each at most once and only those the operation documents."""
    query = request.query
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise ApiError("bad_request", f"unknown query parameter {unknown[0]!r}; "
                       f"allowed: {', '.join(allowed) or 'none'}")
    for name in query:
        if len(query.getall(name)) > 1:
            raise ApiError("bad_request", f"query parameter {name!r} given more than once")
    return dict(query)


def parse_address(value: str, *, what: str = "address") -> str:
    if len(value) != 40 or any(c not in "0123456789abcdef" for c in value):
        raise ApiError("bad_request", f"{what} must be 40 lowercase hex characters")
    return value


def settlements_limit(query: dict[str, str]) -> int:
    """``settlements_limit`` query parameter: 1..SETTLEMENTS_PAGE_MAX, default SETTLEMENTS_PAGE_DEFAULT."""
    text = query.get("settlements_limit")
    if text is None:
        return views.SETTLEMENTS_PAGE_DEFAULT
    limit = uint(text, what="settlements_limit")
    if not 1 <= limit <= views.SETTLEMENTS_PAGE_MAX:
        raise ApiError("bad_request", f"settlements_limit must be in [1, {views.SETTLEMENTS_PAGE_MAX}]")
    return limit


def raw_from_json_item(item: Any, *, where: str = "") -> bytes:
    try:
        return txs.signed_raw_from_json(item)
    except tx_errors.TxError as exc:
        raise ApiError(exc.code, where + exc.message) from None

