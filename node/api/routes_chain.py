"""Chain routes: node status, health and readiness, committed blocks, validators."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from node.api import views
from node.api.http_util import (
    OFFLOAD_ITEMS,
    ApiError,
    error_response,
    json_response,
    query_params,
    uint,
)
from node.api.protocol import NodeBackend


class ChainRoutes:
    """Status, health, block and validator handlers bound to one backend."""

    def __init__(self, backend: NodeBackend) -> None:
        self.backend = backend

    # status and health

    async def status(self, request: web.Request) -> web.Response:
        query_params(request)
        b = self.backend
        out: dict[str, Any] = {
            "chain_id": b.chain_id, "node_id": b.node_id, "node_name": b.node_name, "role": b.role,
        }
        out.update(b.status())
        out["market"] = views.market_info(b.genesis, await b.read_state())
        return json_response(out)

    async def healthz(self, request: web.Request) -> web.Response:
        query_params(request)
        if not self.backend.healthy():
            raise ApiError("not_ready", "node is not healthy", status=503)
        return json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        query_params(request)
        if not self.backend.ready():
            # ``reason``: execution_halted, syncing, no_quorum or no_peers (backends that cannot tell: not_ready).
            why = getattr(self.backend, "not_ready_reason", lambda: None)() or "not_ready"
            messages = {"execution_halted": "block execution failed; this node stopped voting (see its log)"}
            return error_response("not_ready", messages.get(why, "node is not synced or not connected to a quorum"),
                                   503, reason=why)
        return json_response({"status": "ready"})

    # blocks

    async def block(self, request: web.Request) -> web.Response:
        query = query_params(request, "txs")
        txs_view = query.get("txs", "hashes")
        if txs_view not in ("full", "hashes"):
            raise ApiError("bad_request", "txs must be full or hashes")
        which = request.match_info["height"]
        height = None if which == "latest" else uint(which, what="height")
        committed = await self.backend.block(height)
        if committed is None:
            if height is not None and height <= getattr(self.backend, "pruned_height", lambda: 0)():
                raise ApiError("pruned", f"block {which} is below the snapshot this node started from",
                               status=404)
            raise ApiError("not_found", f"no committed block at height {which}")
        full = txs_view == "full"
        if full and len(committed.block.payload) > OFFLOAD_ITEMS:
            return json_response(await asyncio.to_thread(views.block_json, committed, full_txs=True))
        return json_response(views.block_json(committed, full_txs=full))


    async def validators(self, request: web.Request) -> web.Response:
        query_params(request)
        return json_response({"validators": views.validators(await self.backend.read_state(), self.backend.genesis)})
