"""The node's public REST API (versioned ``/v1``) on top of a ``NodeBackend``: ``create_api_app``
wires the routes, middleware, event hub, OpenAPI document and web page into one aiohttp app.

Theory of operation
-------------------
The runtime (``node.ops.service``) owns the chain; the API only translates HTTP
to calls on the small ``NodeBackend`` protocol (``node.api.protocol``) and the contracts'
read-side queries to JSON (``node.api.views``). The API never mutates state except through
``NodeBackend.submit``, and it checks everything it can (body size, JSON shape,
hex, hash lengths, integer parameters) before calling the backend, so bad input
is answered with a 4xx and reaches nothing (``node.api.http_util``).

Routes by topic: ``routes_tx`` (submission, tx status), ``routes_chain`` (status,
health, blocks, validators), ``routes_market`` (contracts queries), ``routes_channels``
(payment-channel updates and traces), ``events`` (the ``/v1/events`` WebSocket stream).
"""

from __future__ import annotations

import importlib.resources
from typing import Any

from aiohttp import web

from node.api.events import EVENT_HUB_KEY, EventHub, EventRoutes
from node.api.http_util import (
    API_VERSION,
    STATUS_BY_CODE,
    ApiError,
    error_middleware,
    json_response,
    rate_limit_middleware,
)
from node.api.protocol import CommittedBlock, NodeBackend, Overloaded, SubmitResult, TxLookup
from node.api.rate_limit import RateLimiter
from node.api.routes_chain import ChainRoutes
from node.api.routes_channels import ChannelBackend, ChannelRoutes
from node.api.routes_market import MarketRoutes
from node.api.routes_tx import TxRoutes

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest request body accepted (a batch of ~1,000 JSON transactions fits)."""
DEFAULT_MAX_BATCH_TXS = 2_000
"""Most transactions one POST /v1/transactions may carry."""
DEFAULT_EVENT_QUEUE = 1_024
"""Per-subscriber event queue bound; a subscriber that falls this far behind is dropped."""
DEFAULT_MAX_SUBSCRIBERS = 256
"""Most concurrent /v1/events WebSocket subscribers."""


async def openapi(request: web.Request) -> web.Response:
    from node.api.openapi import openapi_document

    return json_response(openapi_document())


async def index(request: web.Request) -> web.Response:
    return web.Response(body=_web_file("index.html"), content_type="text/html")


async def web_asset(request: web.Request) -> web.Response:
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
    channels: ChannelBackend | None = None,
) -> web.Application:
    """The REST API application for ``backend`` (mount on the API listener); with
    ``rate_limiter``, submissions are limited per client address (429 ``rate_limited``);
    ``channels`` keeps payment-channel states (without it the update routes answer 503)."""
    middlewares: list[Any] = [error_middleware]
    if rate_limiter is not None:
        middlewares.insert(0, rate_limit_middleware(rate_limiter))  # outermost: sees every answer
    app = web.Application(client_max_size=max_body_bytes, middlewares=middlewares)
    hub = EventHub(queue_size=event_queue_size, max_subscribers=max_subscribers,
                   state=lambda: backend.state)
    tx = TxRoutes(backend, max_batch_txs=max_batch_txs)
    chain = ChainRoutes(backend)
    market = MarketRoutes(backend)
    events = EventRoutes(hub)
    app[EVENT_HUB_KEY] = hub

    async def _listen(app: web.Application) -> Any:
        remove = backend.add_listener(hub.on_block)
        yield
        remove()

    app.cleanup_ctx.append(_listen)
    v = f"/{API_VERSION}"
    app.router.add_get(f"{v}/status", chain.status)
    app.router.add_post(f"{v}/transactions", tx.submit)
    app.router.add_get(f"{v}/transactions/{{hash}}", tx.transaction)
    app.router.add_get(f"{v}/blocks/{{height}}", chain.block)
    app.router.add_get(f"{v}/accounts/{{address}}", market.account)
    app.router.add_get(f"{v}/market/slots/{{slot}}", market.slot)
    app.router.add_get(f"{v}/orders/{{order_id}}", market.order)
    app.router.add_get(f"{v}/trades", market.trades)
    app.router.add_get(f"{v}/trace/trades/{{trade_id}}", market.trace)
    app.router.add_get(f"{v}/validators", chain.validators)
    app.router.add_get(f"{v}/dispatch", market.dispatch)
    app.router.add_get(f"{v}/events", events.events)
    ChannelRoutes(backend, channels).mount(app, v)
    app.router.add_get("/healthz", chain.healthz)
    app.router.add_get("/readyz", chain.readyz)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/", index)
    app.router.add_get("/web/{name}", web_asset)
    return app


__all__ = [
    "API_VERSION",
    "EVENT_HUB_KEY",
    "STATUS_BY_CODE",
    "ApiError",
    "CommittedBlock",
    "EventHub",
    "NodeBackend",
    "Overloaded",
    "SubmitResult",
    "TxLookup",
    "create_api_app",
]
