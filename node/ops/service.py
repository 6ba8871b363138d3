"""One node process: wires storage, mempool, transport, driver, API and metrics.

A validator (``node_role = "validator"``) runs the consensus loop over the
validator transport; an observer runs no consensus core and follows the chain
over observer links instead (``node.ops.observers``, ``node.chain.follower``).
Both serve observers on ``/p2p/observer`` and the same API.

Three listeners on ``config.listen_host``:

* p2p (``p2p_port``): the peer WebSocket at ``/p2p`` (``node.net.transport``), plus ``/healthz``;
* REST API (``api_port``): ``node.api.create_api_app(backend)`` — ``/v1/...``,
  ``/openapi.json``, ``/healthz``, ``/readyz``, the web page;
* metrics (``metrics_port``): ``/metrics`` for Prometheus and ``/healthz``. With
  ``GRIDCHAIN_DEBUG_ENDPOINTS=1`` it also serves ``POST /debug/partition?on=1|0``,
  which cuts (or restores) every peer link — used by the partition tests.

Startup order: load config, genesis and key (the key must be this node's genesis
validator key) -> open storage and rebuild the executed state -> start listeners
and peer links -> catch up from peers -> start consensus -> re-admit the journal.
Shutdown (SIGTERM/SIGINT) stops accepting, stops the driver, closes links and
the database. Logs are one line per state change, with the node, height and round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

from aiohttp import web

from consensus.types import Message
from consensus.validation import check_message
from contracts.genesis import Genesis
from node.api.app import API_VERSION, ApiError, create_api_app
from node.chain.admission import BoundedSet
from node.chain.backend import Backend
from node.chain.channels import ChannelService
from node.chain.channels_store import ChannelStore
from node.chain.driver import Driver
from node.chain.mempool import Mempool
from node.chain.storage import Storage
from node.net.snapshots import (
    FRAME_STATESYNC_REQUEST,
    FRAME_STATESYNC_RESPONSE,
    StateSyncRequest,
    StateSyncResponse,
)
from node.net.transport import DROP_REASONS, Transport
from node.ops import keys
from node.ops.config import (
    GENESIS_FILE,
    KEY_FILE,
    NODE_KEY_FILE,
    ConfigError,
    NodeConfig,
    data_path,
    load_config,
)
from node.ops.genesis import load_genesis
from node.ops.metrics import SUBMISSION_ADMITTED, NodeMetrics
from node.ops.observers import make_links

log = logging.getLogger("gridchain.service")

SHUTDOWN_TIMEOUT_S = 2.0
"""How long a stopping node waits for open connections (peer links, event streams) to close."""

VERIFIED_CACHE = 400_000
"""Most tx hashes remembered as signature-checked."""
CHANNELS_FILE = "channels.sqlite3"
"""The payment-channel store (``node.chain.channels_store``), in the data directory."""


class _StatusFilter(logging.Filter):
    """Adds node, height and round to every log record."""

    def __init__(self, service: NodeService) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        driver = self.service.driver
        record.node = self.service.config.name
        record.height = driver.exec.height if driver.exec else 0
        record.round = driver.round
        return True


def setup_logging(service: NodeService, level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s node=%(node)s height=%(height)d round=%(round)d %(name)s: %(message)s"))
    handler.addFilter(_StatusFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class NodeService:
    """A running validator; ``await start()``, then ``await stop()``."""

    def __init__(self, home: Path, *, env: dict[str, str] | None = None) -> None:
        self.home = Path(home)
        self.config: NodeConfig = load_config(self.home, env)
        self.genesis: Genesis = load_genesis(self.home / GENESIS_FILE)
        self.observer = self.config.node_role == "observer"
        key = keys.load_key_file(self.home / (NODE_KEY_FILE if self.observer else KEY_FILE))
        validators = self.genesis.validators
        if self.observer:
            if any(v.public_key == key.public_key for v in validators):
                raise ConfigError(f"{NODE_KEY_FILE} is a validator key; an observer needs its own key")
        elif not 0 <= self.config.node_id < len(validators):
            raise ConfigError(f"node_id {self.config.node_id} is not a genesis validator")
        elif validators[self.config.node_id].public_key != key.public_key:
            raise ConfigError(f"{KEY_FILE} is not the key of genesis validator {self.config.node_id}")
        self.metrics = NodeMetrics()
        self.metrics.init_labels([v.name for v in validators], (*DROP_REASONS, "invalid", "bad_sync", "bad_snapshot",
                                                                 "event_queue_full", "mempool_full",
                                                                 "gossip_overflow", "bad_block",
                                                                 "observer_limit"))
        self.metrics.mempool_capacity.set(self.config.mempool_capacity)
        self.metrics.leader_threshold.set(self.genesis.consensus.credit.leader_threshold)
        self.storage = Storage.open(data_path(self.home, self.config))
        self.mempool = Mempool(capacity=self.config.mempool_capacity,
                               account_limit=self.config.mempool_account_limit)
        self.driver = Driver(config=self.config, genesis=self.genesis, signer=key.signer, storage=self.storage,
                             mempool=self.mempool, metrics=self.metrics, verified=BoundedSet(VERIFIED_CACHE),
                             admitted_at={})
        self.backend = Backend(config=self.config, genesis=self.genesis, storage=self.storage,
                               mempool=self.mempool, metrics=self.metrics, driver=self.driver)
        self.links, self.follower = make_links(config=self.config, signer=key.signer, driver=self.driver,
                                               backend=self.backend, metrics=self.metrics)
        self.transport: Any = self.links if self.observer else Transport(
            config=self.config, chain_id=self.genesis.chain_id, signer=key.signer,
            validator_keys=[v.public_key for v in validators], validate=self._validate,
            on_consensus=self.driver.on_consensus, on_txs=self.backend.on_gossip,
            on_sync_request=self.driver.on_sync_request, on_sync_response=self.driver.on_sync_response,
            extra_frames={FRAME_STATESYNC_REQUEST: (StateSyncRequest, self.driver.on_statesync_request),
                          FRAME_STATESYNC_RESPONSE: (StateSyncResponse, self.driver.on_statesync_response)},
            on_link_change=self._links_changed,
            drop_counter=lambda reason: self.metrics.dropped.labels(reason=reason).inc(),
        )
        self.driver.transport = self.transport
        self.backend.transport = self.transport
        self._signer = key.signer
        self.channels: ChannelService | None = None
        self._runners: list[web.AppRunner] = []
        self.stopped = asyncio.Event()

    def _validate(self, message: Message, sender: int) -> None:
        check_message(message, sender=sender, committee=self.driver.committee)

    def _links_changed(self, peer: int, up: bool) -> None:
        self.metrics.peers.set(len(self.transport.connected()))
        if up:
            self.backend.send_pending_to(peer)

    # ------------------------------------------------------------------ apps
    def _api_app(self) -> web.Application:
        app = create_api_app(self.backend, rate_limiter=self.backend.rate_limiter, channels=self.channels)
        # Inside the API's error middleware: sees an ApiError before it becomes a response.
        app.middlewares.append(self._count_rejected_submissions)
        return app

    @web.middleware
    async def _count_rejected_submissions(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """gridchain_transactions_rejected_total for submissions refused before admission
        (malformed body, bad encoding, batch too large); admission counts its own."""
        if request.method != "POST" or request.path != f"/{API_VERSION}/transactions":
            return await handler(request)  # type: ignore[no-any-return]
        admitted: list[bool] = []
        token = SUBMISSION_ADMITTED.set(admitted)
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except ApiError as exc:
            if not admitted:
                self.metrics.txs_rejected.labels(code=exc.code).inc()
            raise
        finally:
            SUBMISSION_ADMITTED.reset(token)

    def _p2p_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_message_bytes)
        if not self.observer:
            self.transport.mount(app)
        self.links.mount(app)
        app.router.add_get("/healthz", self._healthz)
        return app

    def _metrics_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        if os.environ.get("GRIDCHAIN_DEBUG_ENDPOINTS") == "1":
            app.router.add_post("/debug/partition", self._partition)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        self.backend._refresh_gauges()
        self.metrics.set_identity(self.config.node_role, self.driver.committee.epoch, self.backend.validator_set())
        return web.Response(body=self.metrics.render(), content_type="text/plain", charset="utf-8")

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok" if self.backend.healthy() else "failing"},
                                 status=200 if self.backend.healthy() else 503)

    async def _partition(self, request: web.Request) -> web.Response:
        on = request.query.get("on", "1") == "1"
        await self.transport.set_partitioned(on)
        log.warning("debug: partition %s", "on" if on else "off")
        return web.json_response({"partitioned": on})

    async def _serve(self, app: web.Application, port: int, ssl_context: Any = None) -> None:
        # Open peer WebSockets and event streams must not hold a shutdown for long.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        site = web.TCPSite(runner, self.config.listen_host, port, ssl_context=ssl_context,
                           reuse_address=True)
        await site.start()
        self._runners.append(runner)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.driver.load)
        store = await ChannelStore.open(data_path(self.home, self.config) / CHANNELS_FILE)
        channels = self.channels = ChannelService(backend=self.backend, store=store, signer=self._signer)
        await self._serve(self._p2p_app(), self.config.p2p_port,
                          None if self.observer else self.transport.server_ssl())
        await self._serve(self._api_app(), self.config.api_port)
        await self._serve(self._metrics_app(), self.config.metrics_port)
        if not self.observer:
            await self.transport.start()
        await self.links.start()
        self.backend.start()
        if self.follower is not None:
            self.follower.start()  # an observer: no consensus loop, no execution queue
        else:
            self.driver.start()
        await self.backend.restore_journal()
        await channels.start()
        log.info("node %s (%s %d, %s) up: p2p %d, api %d, metrics %d", self.config.name, self.config.node_role,
                 self.config.node_id, self.config.role, self.config.p2p_port, self.config.api_port,
                 self.config.metrics_port)

    async def stop(self) -> None:
        log.info("shutting down")
        # Leave consensus first, then close peer links, then the listeners: a stopping
        # node must not keep voting while its HTTP listeners drain.
        await self.driver.stop()
        await self.links.stop()
        if not self.observer:
            await self.transport.stop()
        for runner in self._runners:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        if self.channels is not None:
            await self.channels.stop()
        await self.backend.stop()
        await self.storage.close()
        self.stopped.set()


async def run_node(home: Path, *, log_level: str | None = None) -> int:
    """Run one node until SIGINT/SIGTERM; the ``gridchain node`` command."""
    service = NodeService(home)
    setup_logging(service, log_level or service.config.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    await stop.wait()
    await service.stop()
    return 0
