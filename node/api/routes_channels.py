"""Payment-channel routes: off-chain updates through a participant's node (propose,
countersign, store a co-signed state), a channel's view, and its trace with Merkle proofs
(docs/CHANNELS.md).

The API reaches the node's channel store only through the small ``ChannelBackend``
protocol (``node.chain.channels.ChannelService`` implements it); a node without one
answers the update routes with 503 ``channels_unavailable``. Contract refusals keep their
stable codes (``contracts.errors``): a stale state is 409, an unknown channel 404, the
rest 422.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import msgspec
from aiohttp import web

from consensus import codec
from contracts import channels as ch
from contracts import errors as tx_errors
from contracts.transactions import ChannelState
from node.api import views
from node.api.http_util import (
    MAX_U64,
    ApiError,
    hex_bytes,
    json_response,
    parse_json,
    query_params,
    read_body,
)
from node.api.protocol import NodeBackend

CHANNEL_ID = re.compile(r"[0-9a-f]{64}")
UNAVAILABLE = "channels_unavailable"
STATUS_BY_CHANNEL_CODE = {tx_errors.STALE_STATE: 409, tx_errors.UNKNOWN_CHANNEL: 404, "not_found": 404,
                          tx_errors.MALFORMED: 400, UNAVAILABLE: 503}
"""HTTP status of the channel routes' refusals; any other contract code is 422."""


class ChannelBackend(Protocol):
    """What the channel routes need from the runtime (node/chain/channels.py)."""

    async def info(self, channel_id: str) -> dict[str, Any] | None: ...

    async def propose(self, channel_id: str, cs: ChannelState, signature: bytes) -> dict[str, Any]: ...

    async def countersign(self, channel_id: str, seq: int, signature: bytes) -> dict[str, Any]: ...

    async def store_cosigned(self, channel_id: str, cs: ChannelState, *, signature_a: bytes,
                             signature_b: bytes) -> dict[str, Any]: ...


def _channel_id(request: web.Request) -> str:
    channel_id = request.match_info["channel_id"]
    if not CHANNEL_ID.fullmatch(channel_id):
        raise ApiError("bad_request", "channel id must be 64 lowercase hex characters")
    return channel_id


def _integers(value: Any) -> Any:
    """``value`` with integral floats (``5.0``, the same JSON number as ``5``) as ints."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_U64:
        return int(value)
    if isinstance(value, dict):
        return {k: _integers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integers(v) for v in value]
    return value


def _state(obj: Any) -> ChannelState:
    try:
        return msgspec.convert(_integers(obj), ChannelState, strict=True)
    except msgspec.ValidationError as exc:
        raise ApiError(tx_errors.MALFORMED, f"invalid channel state: {exc}") from None


def _signature(obj: dict[str, Any], name: str) -> bytes:
    value = obj.get(name)
    if not isinstance(value, str):
        raise ApiError(tx_errors.MALFORMED, f"{name} must be a hex string")
    try:
        return hex_bytes(value, what=name, size=64)
    except ApiError as exc:
        raise ApiError(tx_errors.MALFORMED, exc.message) from None


async def _body(request: web.Request, *fields: str) -> dict[str, Any]:
    obj = parse_json(await read_body(request))
    if not isinstance(obj, dict) or set(obj) != set(fields):
        raise ApiError(tx_errors.MALFORMED, f"expected a JSON object with exactly {', '.join(fields)}")
    return obj


class ChannelRoutes:
    """Channel handlers bound to one node backend and its channel service (if any)."""

    def __init__(self, backend: NodeBackend, channels: ChannelBackend | None) -> None:
        self.backend = backend
        self.channels = channels

    def _service(self) -> ChannelBackend:
        if self.channels is None:
            raise ApiError(UNAVAILABLE, "this node keeps no channel states", status=503)
        return self.channels

    async def _call(self, call: Any) -> web.Response:
        try:
            return json_response(await call)
        except tx_errors.TxError as exc:
            raise ApiError(exc.code, exc.message, status=STATUS_BY_CHANNEL_CODE.get(exc.code, 422)) from None

    async def channel(self, request: web.Request) -> web.Response:
        query_params(request)
        channel_id = _channel_id(request)
        if self.channels is None:
            record = (await self.backend.read_state()).channels.get(channel_id)
            out = None if record is None else {"channel_id": channel_id, "channel": codec.to_builtins(record),
                                               "latest": None, "proposal": None}
        else:
            out = await self.channels.info(channel_id)
        if out is None:
            raise ApiError("not_found", "unknown channel")
        return json_response(out)

    async def propose(self, request: web.Request) -> web.Response:
        query_params(request)
        channel_id = _channel_id(request)
        service = self._service()
        obj = await _body(request, "state", "signature")
        return await self._call(service.propose(channel_id, _state(obj["state"]), _signature(obj, "signature")))

    async def countersign(self, request: web.Request) -> web.Response:
        query_params(request)
        channel_id = _channel_id(request)
        service = self._service()
        obj = await _body(request, "seq", "signature")
        seq = _integers(obj["seq"])
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_U64:
            raise ApiError(tx_errors.MALFORMED, f"seq must be an integer in [0, {MAX_U64}]")
        return await self._call(service.countersign(channel_id, seq, _signature(obj, "signature")))

    async def store(self, request: web.Request) -> web.Response:
        query_params(request)
        channel_id = _channel_id(request)
        service = self._service()
        obj = await _body(request, "state", "signature_a", "signature_b")
        return await self._call(service.store_cosigned(
            channel_id, _state(obj["state"]), signature_a=_signature(obj, "signature_a"),
            signature_b=_signature(obj, "signature_b")))

    async def trace(self, request: web.Request) -> web.Response:
        query_params(request)
        channel_id = _channel_id(request)
        locations = ch.channel_lineage(await self.backend.read_state(), channel_id)
        if locations is None:
            raise ApiError("not_found", "unknown channel")
        lineage = await views.proofs_for(locations, self.backend.block, self.backend.receipt_leaves)
        return json_response({"channel_id": channel_id, "lineage": lineage})

    def mount(self, app: web.Application, prefix: str) -> None:
        app.router.add_get(f"{prefix}/channels/{{channel_id}}", self.channel)
        app.router.add_post(f"{prefix}/channels/{{channel_id}}/proposals", self.propose)
        app.router.add_post(f"{prefix}/channels/{{channel_id}}/countersign", self.countersign)
        app.router.add_post(f"{prefix}/channels/{{channel_id}}/states", self.store)
        app.router.add_get(f"{prefix}/trace/channels/{{channel_id}}", self.trace)
