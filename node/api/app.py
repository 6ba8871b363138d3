"""The node's public REST API (versioned ``/v1``) on top of a ``NodeBackend``.

Theory of operation
-------------------
The runtime (``node.ops.service``) owns the chain; this module only translates HTTP
to calls on the small ``NodeBackend`` protocol below and the contracts'
read-side queries to JSON. The API never mutates state except through
``NodeBackend.submit``, and it checks everything it can (body size, JSON shape,
hex, hash lengths, integer parameters) before calling the backend, so bad input
is answered with a 4xx and reaches nothing.

Every error is ``{"error": {"code": ..., "message": ...}}`` with a stable
``code`` (see ``STATUS_BY_CODE``) and the matching HTTP status.

Transactions are submitted as JSON (``{"raw": hex}``, ``{"tx": {...},
"signature": hex}``, or a batch ``{"transactions": [...]}``) or, for bulk
loaders, as ``application/msgpack``: a MessagePack array of raw signed
transactions (no hex, no JSON; the fast path the benchmark uses). A batch goes
to the backend in one ``submit`` call. When the mempool is full the backend
raises ``Overloaded`` and the answer is ``503 mempool_full`` with
``Retry-After``; clients back off and resubmit (a resubmission of a known
transaction is idempotent: same hash, 202).

``/v1/events`` is a WebSocket stream of committed blocks, transactions of an
account, trades and dispatch instructions. The backend calls one listener per
executed block; ``EventHub`` turns it into events once and fans them out to
bounded per-subscriber queues. A subscriber whose queue is full is dropped
(closed with code 1008 "slow consumer"), never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, Protocol

import msgspec
import orjson
from aiohttp import WSMsgType, web

from consensus.types import Block, QuorumCert
from contracts import errors as tx_errors
from contracts import market
from contracts import transactions as txs
from node.api import views
from node.api.rate_limit import CLIENT, RATE_LIMITED, ClientRequest, RateLimiter, retry_after_header

log = logging.getLogger("gridchain.api")

API_VERSION = "v1"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest request body accepted (a batch of ~1,000 JSON transactions fits)."""
DEFAULT_MAX_BATCH_TXS = 2_000
"""Most transactions one POST /v1/transactions may carry."""
DEFAULT_EVENT_QUEUE = 1_024
"""Per-subscriber event queue bound; a subscriber that falls this far behind is dropped."""
DEFAULT_MAX_SUBSCRIBERS = 256
"""Most concurrent /v1/events WebSocket subscribers."""
OFFLOAD_ITEMS = 200
"""Requests that decode or render more than this many transactions do it in a worker
thread, so the event loop keeps serving consensus and other clients meanwhile."""
RETRY_AFTER_S = 1
"""Retry-After sent with 503 mempool_full."""
MSGPACK_CONTENT_TYPE = "application/msgpack"
MAX_TRADES = 10_000
"""Most trades one GET /v1/trades answers (``limit`` above it is a 400)."""


# --- the backend protocol ---------------------------------------------------------------


class SubmitResult(msgspec.Struct, frozen=True):
    """Admission outcome of one raw transaction."""

    tx_hash: bytes | None
    """Digest of the raw signed bytes; None only when they could not be decoded."""
    code: str | None = None
    """None when accepted; otherwise a stable rejection code (contracts.errors)."""
    message: str = ""
    """Human-readable reason when rejected."""


class Overloaded(Exception):
    """The mempool cannot take the batch now (back-pressure): HTTP 503."""

    code = "mempool_full"


class TxLookup(msgspec.Struct, frozen=True):
    """Where a transaction is."""

    status: Literal["pending", "committed", "failed"]
    height: int | None = None
    """Height of the block that included it (committed or failed)."""
    index: int | None = None
    """Index of the transaction in that block's payload."""
    receipt: Any = None
    """The ``contracts.executor.Receipt`` once executed."""


class CommittedBlock(msgspec.Struct, frozen=True):
    """A committed and executed block with what execution produced."""

    block: Block
    block_id: bytes
    state_root: bytes
    """Contracts state root after executing this block."""
    receipts_root: bytes
    """Merkle root over this block's receipt/event leaves (contracts.traceability)."""
    receipts: tuple[Any, ...] = ()
    """``contracts.executor.Receipt`` per transaction, payload order; filled in listener events."""
    leaves: tuple[bytes, ...] = ()
    """``BlockResult.leaves`` (canonical record bytes); filled in listener events."""
    commit_qc: QuorumCert | None = None
    """The QC certifying this block, when known."""


class NodeBackend(Protocol):
    """What the API needs from the runtime (node/chain/backend.py; tests/unit/api_memory_backend.py)."""

    chain_id: str
    node_name: str
    role: str
    node_id: int
    genesis: Any
    """contracts.genesis.Genesis of the chain."""

    @property
    def state(self) -> Any:
        """Latest executed contracts state (read-only for the API)."""
        ...

    async def read_state(self) -> Any:
        """``state`` at a block boundary: waits while a block is being applied. Use the
        result without awaiting in between, so no later block can start under it."""
        ...

    def status(self) -> dict[str, Any]: ...

    async def submit(self, raw_txs: Sequence[bytes]) -> list[SubmitResult]: ...

    async def tx_status(self, tx_hash: bytes) -> TxLookup | None: ...

    async def block(self, height: int | None) -> CommittedBlock | None: ...

    async def receipt_leaves(self, height: int) -> list[bytes] | None: ...

    def add_listener(self, listener: Callable[[CommittedBlock], None]) -> Callable[[], None]: ...

    def ready(self) -> bool: ...

    def healthy(self) -> bool: ...


# --- errors -----------------------------------------------------------------------------

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


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=dumps(data), status=status, content_type="application/json", headers=headers
    )


def _error_response(code: str, message: str, status: int, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    body.update(extra)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if code == Overloaded.code else None
    return _json(body, status=status, headers=headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}


@web.middleware
async def _error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _error_response(exc.code, exc.message, exc.status)
    except Overloaded as exc:
        return _error_response(Overloaded.code, str(exc) or "mempool is full, retry later", 503)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "bad_request" if exc.status < 500 else "internal")
        response = _error_response(code, exc.reason or code, exc.status)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return _error_response("internal", "internal error", 500)


def _rate_limit_middleware(limiter: RateLimiter) -> Any:
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
            refused = _error_response(RATE_LIMITED, "too many submissions from this client address, retry later",
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


async def _read_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError("body_too_large", exc.text or "request body too large") from None


def _parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(tx_errors.MALFORMED, f"malformed JSON: {exc}") from None


_HEX = re.compile(r"[0-9a-f]*")
_DIGITS = re.compile(r"[0-9]{1,19}")
_TRADE_ID = re.compile(r"[0-9]{1,19}-[0-9]{1,19}")
MAX_U64 = 2**63 - 1


def _hex_bytes(value: str, *, what: str, size: int) -> bytes:
    if len(value) != 2 * size or not _HEX.fullmatch(value):
        raise ApiError("bad_request", f"{what} must be {2 * size} lowercase hex characters")
    return bytes.fromhex(value)


def _uint(value: str, *, what: str, maximum: int = MAX_U64) -> int:
    if not _DIGITS.fullmatch(value) or int(value) > maximum:
        raise ApiError("bad_request", f"{what} must be an integer in [0, {maximum}]")
    return int(value)


def _query(request: web.Request, *allowed: str) -> dict[str, str]:
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


def _address(value: str, *, what: str = "address") -> str:
    if len(value) != 40 or any(c not in "0123456789abcdef" for c in value):
        raise ApiError("bad_request", f"{what} must be 40 lowercase hex characters")
    return value


def _settlements_limit(query: dict[str, str]) -> int:
    """``settlements_limit`` query parameter: 1..SETTLEMENTS_PAGE_MAX, default SETTLEMENTS_PAGE_DEFAULT."""
    text = query.get("settlements_limit")
    if text is None:
        return views.SETTLEMENTS_PAGE_DEFAULT
    limit = _uint(text, what="settlements_limit")
    if not 1 <= limit <= views.SETTLEMENTS_PAGE_MAX:
        raise ApiError("bad_request", f"settlements_limit must be in [1, {views.SETTLEMENTS_PAGE_MAX}]")
    return limit


def _raw_from_json_item(item: Any, *, where: str = "") -> bytes:
    try:
        return txs.signed_raw_from_json(item)
    except tx_errors.TxError as exc:
        raise ApiError(exc.code, where + exc.message) from None


# --- event fan-out ----------------------------------------------------------------------


class Subscription:
    """One /v1/events subscriber: its filters and its bounded queue."""

    __slots__ = ("account", "dropped", "queue", "topics")

    def __init__(self, *, topics: frozenset[str], account: str | None, queue_size: int) -> None:
        self.topics = topics
        self.account = account
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=queue_size)
        self.dropped = False

    def wants(self, event: views.Event) -> bool:
        if event.topic not in self.topics:
            return False
        return self.account is None or event.accounts is None or self.account in event.accounts


class EventHub:
    """Fans each executed block's events out to bounded subscriber queues."""

    def __init__(self, *, queue_size: int, max_subscribers: int,
                 state: Callable[[], Any] = lambda: None) -> None:
        self._state = state
        self._queue_size = queue_size
        self._max_subscribers = max_subscribers
        self._subs: set[Subscription] = set()
        self.dropped_total = 0

    def __len__(self) -> int:
        return len(self._subs)

    def subscribe(self, *, topics: frozenset[str], account: str | None) -> Subscription:
        if len(self._subs) >= self._max_subscribers:
            raise ApiError("too_many_subscribers", f"at most {self._max_subscribers} event subscribers")
        sub = Subscription(topics=topics, account=account, queue_size=self._queue_size)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def on_block(self, committed: CommittedBlock) -> None:
        """Backend listener: runs on the loop, never blocks, never raises."""
        if not self._subs:
            return
        try:
            topics = frozenset().union(*(sub.topics for sub in self._subs))
            events = views.block_events(committed, self._state(), topics)
        except Exception:
            log.exception("cannot build events for height %d", committed.block.height)
            return
        encoded = [(event, dumps(event.data)) for event in events]
        for sub in list(self._subs):
            for event, payload in encoded:
                if not sub.wants(event):
                    continue
                try:
                    sub.queue.put_nowait(payload)
                except asyncio.QueueFull:
                    self._drop(sub)
                    break

    def _drop(self, sub: Subscription) -> None:
        sub.dropped = True
        self._subs.discard(sub)
        self.dropped_total += 1
        with contextlib.suppress(asyncio.QueueEmpty):
            sub.queue.get_nowait()  # make room for the end-of-stream marker
        sub.queue.put_nowait(None)


EVENT_HUB_KEY: web.AppKey[EventHub] = web.AppKey("gridchain.event_hub", EventHub)
"""Where the app keeps its ``EventHub`` (tests and metrics read subscriber counts)."""


# --- handlers ---------------------------------------------------------------------------


class _Api:
    """Request handlers bound to one backend."""

    def __init__(self, backend: NodeBackend, *, max_batch_txs: int, hub: EventHub) -> None:
        self.backend = backend
        self.max_batch_txs = max_batch_txs
        self.hub = hub

    # status and health

    async def status(self, request: web.Request) -> web.Response:
        _query(request)
        b = self.backend
        out: dict[str, Any] = {
            "chain_id": b.chain_id, "node_id": b.node_id, "node_name": b.node_name, "role": b.role,
        }
        out.update(b.status())
        out["market"] = views.market_info(b.genesis, await b.read_state())
        return _json(out)

    async def healthz(self, request: web.Request) -> web.Response:
        _query(request)
        if not self.backend.healthy():
            raise ApiError("not_ready", "node is not healthy", status=503)
        return _json({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        _query(request)
        if not self.backend.ready():
            # ``reason``: execution_halted, syncing or no_quorum (backends that cannot tell: not_ready).
            why = getattr(self.backend, "not_ready_reason", lambda: None)() or "not_ready"
            messages = {"execution_halted": "block execution failed; this node stopped voting (see its log)"}
            return _error_response("not_ready", messages.get(why, "node is not synced or not connected to a quorum"),
                                   503, reason=why)
        return _json({"status": "ready"})

    # transactions

    async def submit(self, request: web.Request) -> web.Response:
        _query(request)
        body = await _read_body(request)
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
            return _json({"tx_hash": r.tx_hash.hex()}, status=202)
        return self._batch_response(results)

    def _parse_submission(self, content_type: str, body: bytes) -> tuple[list[bytes], bool]:
        if content_type == MSGPACK_CONTENT_TYPE:
            try:
                return msgspec.msgpack.decode(body, type=list[bytes]), True
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise ApiError(tx_errors.MALFORMED, f"expected a msgpack array of raw txs: {exc}") from None
        if content_type not in ("application/json", "application/octet-stream", ""):
            raise ApiError("unsupported_media_type", f"use application/json or {MSGPACK_CONTENT_TYPE}")
        obj = _parse_json(body)
        if isinstance(obj, dict) and "transactions" in obj:
            items = obj["transactions"]
            if set(obj) != {"transactions"} or not isinstance(items, list):
                raise ApiError(tx_errors.MALFORMED, '"transactions" must be the only field, a list')
            if len(items) > self.max_batch_txs:
                raise ApiError("batch_too_large", f"at most {self.max_batch_txs} transactions per request")
            return [_raw_from_json_item(item, where=f"transactions[{i}]: ") for i, item in enumerate(items)], True
        return [_raw_from_json_item(obj)], False

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
            return _error_response(
                "rejected", "every transaction was rejected", STATUS_BY_CODE.get(code, 422),
                accepted=0, rejected=len(results), results=items,
            )
        return _json(body, status=202)

    async def transaction(self, request: web.Request) -> web.Response:
        _query(request)
        tx_hash = _hex_bytes(request.match_info["hash"], what="transaction hash", size=32)
        found = await self.backend.tx_status(tx_hash)
        if found is None:
            raise ApiError("not_found", "unknown transaction")
        return _json(views.tx_lookup_json(tx_hash, found))

    # blocks

    async def block(self, request: web.Request) -> web.Response:
        query = _query(request, "txs")
        txs_view = query.get("txs", "hashes")
        if txs_view not in ("full", "hashes"):
            raise ApiError("bad_request", "txs must be full or hashes")
        which = request.match_info["height"]
        height = None if which == "latest" else _uint(which, what="height")
        committed = await self.backend.block(height)
        if committed is None:
            raise ApiError("not_found", f"no committed block at height {which}")
        full = txs_view == "full"
        if full and len(committed.block.payload) > OFFLOAD_ITEMS:
            return _json(await asyncio.to_thread(views.block_json, committed, full_txs=True))
        return _json(views.block_json(committed, full_txs=full))

    # contracts queries

    async def account(self, request: web.Request) -> web.Response:
        query = _query(request, "settlements_limit", "settlements_before_slot")
        address = _address(request.match_info["address"])
        before = query.get("settlements_before_slot")
        out = views.account(await self.backend.read_state(), address,
                            settlements_limit=_settlements_limit(query),
                            settlements_before_slot=_uint(before, what="settlements_before_slot")
                            if before is not None else None)
        return _json(self._found(out, "account"))

    async def slot(self, request: web.Request) -> web.Response:
        query = _query(request, "settlements_limit", "settlements_after_account")
        slot = _uint(request.match_info["slot"], what="slot")
        state = await self.backend.read_state()
        last = market.horizon_slot(self.backend.genesis, state.meta.timestamp_ms)
        if slot > last:
            raise ApiError(tx_errors.BEYOND_HORIZON,
                           f"slot {slot} is beyond the horizon (at most slot {last} at the latest block time)",
                           status=404)
        after = query.get("settlements_after_account")
        out = views.slot(state, self.backend.genesis, slot,
                         settlements_limit=_settlements_limit(query),
                         settlements_after_account=_address(after, what="settlements_after_account")
                         if after is not None else None)
        return _json(self._found(out, "slot"))

    async def order(self, request: web.Request) -> web.Response:
        _query(request)
        order_id = request.match_info["order_id"]
        _hex_bytes(order_id, what="order id", size=32)
        return _json(self._found(views.order(await self.backend.read_state(), order_id), "order"))

    async def trades(self, request: web.Request) -> web.Response:
        query = _query(request, "account", "slot", "limit")
        account = query.get("account")
        slot = query.get("slot")
        limit = _uint(query.get("limit", "1000"), what="limit", maximum=MAX_TRADES)
        out = views.trades(
            await self.backend.read_state(),
            account=_address(account, what="account") if account is not None else None,
            slot=_uint(slot, what="slot") if slot is not None else None,
            limit=limit,
        )
        return _json({"trades": out})

    async def trace(self, request: web.Request) -> web.Response:
        _query(request)
        trade_id = request.match_info["trade_id"]
        if not _TRADE_ID.fullmatch(trade_id):
            raise ApiError("bad_request", "trade id must be <slot>-<k>")
        out = await views.trace_with_proofs(
            await self.backend.read_state(), trade_id, self.backend.block, self.backend.receipt_leaves
        )
        if out is None:
            raise ApiError("not_found", "unknown trade")
        return _json(out)

    async def validators(self, request: web.Request) -> web.Response:
        _query(request)
        return _json({"validators": views.validators(await self.backend.read_state(), self.backend.genesis)})

    async def dispatch(self, request: web.Request) -> web.Response:
        account = _query(request, "account").get("account")
        out = views.dispatch(await self.backend.read_state(),
                             _address(account, what="account") if account is not None else None)
        return _json({"dispatch": out})

    @staticmethod
    def _found(value: Any, what: str) -> Any:
        if value is None:
            raise ApiError("not_found", f"unknown {what}")
        return value

    # events

    async def events(self, request: web.Request) -> web.StreamResponse:
        query = _query(request, "topics", "account")
        names = query.get("topics", ",".join(views.TOPICS)).split(",")
        topics = frozenset(names)
        if not topics <= set(views.TOPICS):
            raise ApiError("bad_request", f"topics must be a comma list of {','.join(views.TOPICS)}")
        account = query.get("account")
        address = _address(account, what="account") if account is not None else None
        sub = self.hub.subscribe(topics=topics, account=address)
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096)
        if not ws.can_prepare(request).ok:
            self.hub.unsubscribe(sub)
            raise ApiError("bad_request", "/v1/events is a WebSocket stream: send an Upgrade request")
        reader: asyncio.Task[None] | None = None
        try:
            await ws.prepare(request)
            reader = asyncio.create_task(self._drain_incoming(ws))
            await self._pump(sub, ws, reader)
        except ConnectionResetError:
            pass
        finally:
            self.hub.unsubscribe(sub)
            if reader is not None:
                reader.cancel()
        return ws

    @staticmethod
    async def _pump(sub: Subscription, ws: web.WebSocketResponse, reader: asyncio.Task[None]) -> None:
        """Send queued events until the client goes away or the subscriber is dropped."""
        while True:
            getter = asyncio.ensure_future(sub.queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:  # the client closed the connection
                getter.cancel()
                return
            batch = [getter.result()]
            while not sub.queue.empty() and batch[-1] is not None:
                batch.append(sub.queue.get_nowait())
            for payload in batch:
                if payload is None:
                    await ws.close(code=1008, message=b"slow consumer dropped")
                    return
                if ws.closed:
                    return
                await ws.send_str(payload.decode())

    @staticmethod
    async def _drain_incoming(ws: web.WebSocketResponse) -> None:
        # The stream is one-way; reading keeps pings/close frames flowing.
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
        with contextlib.suppress(Exception):
            await ws.close()

    # documents and the web page

    async def openapi(self, request: web.Request) -> web.Response:
        from node.api.openapi import openapi_document

        return _json(openapi_document())

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(body=_web_file("index.html"), content_type="text/html")

    async def web_asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _WEB_ASSETS:
            raise ApiError("not_found", "no such file")
        return web.Response(body=_web_file(name), content_type=_WEB_ASSETS[name])


_WEB_ASSETS = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}


def _web_file(name: str) -> bytes:
    return importlib.resources.files("node.api").joinpath("web", name).read_bytes()


def create_api_app(
    backend: NodeBackend,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch_txs: int = DEFAULT_MAX_BATCH_TXS,
    event_queue_size: int = DEFAULT_EVENT_QUEUE,
    max_subscribers: int = DEFAULT_MAX_SUBSCRIBERS,
    rate_limiter: RateLimiter | None = None,
) -> web.Application:
    """The REST API application for ``backend`` (mount on the API listener); with
    ``rate_limiter``, submissions are limited per client address (429 ``rate_limited``)."""
    middlewares: list[Any] = [_error_middleware]
    if rate_limiter is not None:
        middlewares.insert(0, _rate_limit_middleware(rate_limiter))  # outermost: sees every answer
    app = web.Application(client_max_size=max_body_bytes, middlewares=middlewares)
    hub = EventHub(queue_size=event_queue_size, max_subscribers=max_subscribers,
                   state=lambda: backend.state)
    api = _Api(backend, max_batch_txs=max_batch_txs, hub=hub)
    app[EVENT_HUB_KEY] = hub

    async def _listen(app: web.Application) -> Any:
        remove = backend.add_listener(hub.on_block)
        yield
        remove()

    app.cleanup_ctx.append(_listen)
    v = f"/{API_VERSION}"
    app.router.add_get(f"{v}/status", api.status)
    app.router.add_post(f"{v}/transactions", api.submit)
    app.router.add_get(f"{v}/transactions/{{hash}}", api.transaction)
    app.router.add_get(f"{v}/blocks/{{height}}", api.block)
    app.router.add_get(f"{v}/accounts/{{address}}", api.account)
    app.router.add_get(f"{v}/market/slots/{{slot}}", api.slot)
    app.router.add_get(f"{v}/orders/{{order_id}}", api.order)
    app.router.add_get(f"{v}/trades", api.trades)
    app.router.add_get(f"{v}/trace/trades/{{trade_id}}", api.trace)
    app.router.add_get(f"{v}/validators", api.validators)
    app.router.add_get(f"{v}/dispatch", api.dispatch)
    app.router.add_get(f"{v}/events", api.events)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/openapi.json", api.openapi)
    app.router.add_get("/", api.index)
    app.router.add_get("/web/{name}", api.web_asset)
    return app


__all__ = [
    "ApiError",
    "CommittedBlock",
    "EventHub",
    "NodeBackend",
    "Overloaded",
    "SubmitResult",
    "TxLookup",
    "create_api_app",
]
