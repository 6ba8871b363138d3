"""Observer links: authenticated WebSockets between a node and the observers that follow it.

Theory of operation
-------------------
Validators talk to each other over ``node.net.transport``. An observer (a member's
node that is not a validator) dials the ``/p2p/observer`` path of validators or of
other observers instead; every node serves that path. A link has a direction:
the dialer is *downstream* (it follows), the acceptor *upstream* (it serves).

Handshake (domain ``crypto.KIND_PEER``; ``LinkProof`` has other fields than the
validators' ``PeerProof``, so neither signature passes for the other): the
acceptor sends ``LinkChallenge{chain_id, its key, nonce}``; the dialer answers
``LinkAuth{its key, nonce', signature over LinkProof(chain, dialer, acceptor,
nonce)}``; the acceptor checks the signature and that the key is *allowed* — a
node key an active account named on chain (``contracts.registry.node_key_account``,
looked up in this node's executed state) or a validator key — and that fewer than
``max_observer_links`` observers are linked; then it proves its own key over
``nonce'``. The dialer checks that proof (it knows which key it talks to) but not
that the key is registered: a joining observer's state does not know the keys named
after its height yet, and it trusts nothing an upstream sends anyway — every block
is verified against the validators' certificates (``node.chain.follower``). Anything else — unknown key, full, wrong chain, bad signature,
timeout — closes the socket and counts ``gridchain_peer_messages_dropped_total``
(``handshake`` or ``observer_limit``).

Frames are those of the transport (one kind byte and a payload): ``TXS`` (either
way), ``SYNC_REQUEST`` and ``STATESYNC_REQUEST`` (downstream to upstream),
``SYNC_RESPONSE`` and ``STATESYNC_RESPONSE`` (upstream to downstream: state sync,
``node.net.statesync``) and ``HEAD`` (upstream to downstream: the sender's committed
height, pushed after every commit so followers ask for the new blocks at once). What a
follower does with the blocks is ``node.chain.follower``; this module only moves
frames. Link ids count from ``LINK_ID_BASE`` so they never collide with validator
indexes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from consensus import codec, crypto
from node.net.snapshots import (
    FRAME_STATESYNC_REQUEST,
    FRAME_STATESYNC_RESPONSE,
    StateSyncRequest,
    StateSyncResponse,
)
from node.net.transport import (
    FRAME_SYNC_REQUEST,
    FRAME_SYNC_RESPONSE,
    FRAME_TXS,
    HANDSHAKE_TIMEOUT_S,
    NONCE_SIZE,
    LinkTasks,
    PeerError,
    SyncRequest,
    SyncResponse,
    TxBatch,
)
from node.ops.config import NodeConfig

log = logging.getLogger("gridchain.observers")

OBSERVER_PATH = "/p2p/observer"
FRAME_HEAD = 7
"""Not 5 or 6: those are state sync's (``node.net.snapshots``), which travels on these links too."""
DOWNWARD_FRAMES = frozenset({FRAME_SYNC_RESPONSE, FRAME_STATESYNC_RESPONSE, FRAME_HEAD})
"""Frames only an upstream sends (followers ask, servers answer)."""
LINK_ID_BASE = 1_000_000


class LinkChallenge(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    chain_id: str
    public_key: bytes
    nonce: bytes


class LinkAuth(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    public_key: bytes
    nonce: bytes
    signature: bytes


class LinkProof(msgspec.Struct, frozen=True):
    """What each side of an observer link signs (domain PEER)."""

    chain_id: str
    prover: bytes
    verifier: bytes
    link_nonce: bytes


class Head(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    height: int


@dataclass
class ObserverLink:
    link_id: int
    public_key: bytes
    upstream: bool
    """True when this node dialled (the peer serves blocks to us)."""
    ws: Any
    url: str = ""
    queue: deque[bytes] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    bad_frames: int = 0


Handler = Callable[[int, Any], Any]


def observer_url(url: str) -> str:
    """``ws://host:port`` or ``.../p2p`` -> ``.../p2p/observer``."""
    url = url.rstrip("/")
    if url.endswith(OBSERVER_PATH):
        return url
    if url.endswith("/p2p"):
        return url + "/observer"
    return url + OBSERVER_PATH


class ObserverLinks(LinkTasks):
    """Both sides of observer links for one node. ``mount(app)``, then ``start()``.

    It also has the transport's sending interface (``send``, ``broadcast``, ``connected``)
    so that on an observer the admission code forwards transactions through it:
    ``broadcast`` goes upstream only."""

    def __init__(self, *, config: NodeConfig, chain_id: str, signer: crypto.Signer,
                 allowed: Callable[[bytes], bool], on_txs: Handler, on_sync_request: Handler,
                 on_sync_response: Handler, on_head: Handler,
                 on_statesync_request: Handler | None = None, on_statesync_response: Handler | None = None,
                 on_link_change: Callable[[ObserverLink, bool], None] = lambda link, up: None,
                 drop_counter: Callable[[str], None] = lambda reason: None, max_bad_frames: int = 20,
                 upstream_urls: Sequence[str] = ()) -> None:
        self.config = config
        self.chain_id = chain_id
        self.signer = signer
        self.allowed = allowed
        self._handlers: dict[int, tuple[Handler, Any]] = {
            FRAME_TXS: (on_txs, TxBatch), FRAME_SYNC_REQUEST: (on_sync_request, SyncRequest),
            FRAME_SYNC_RESPONSE: (on_sync_response, SyncResponse), FRAME_HEAD: (on_head, Head),
        }
        if on_statesync_request is not None:
            self._handlers[FRAME_STATESYNC_REQUEST] = (on_statesync_request, StateSyncRequest)
        if on_statesync_response is not None:
            self._handlers[FRAME_STATESYNC_RESPONSE] = (on_statesync_response, StateSyncResponse)
        self._on_link_change = on_link_change
        self._drop = drop_counter
        self.max_bad_frames = max_bad_frames
        self.upstream_urls = [observer_url(u) for u in upstream_urls]
        self.links: dict[int, ObserverLink] = {}
        self._ids = itertools.count(LINK_ID_BASE)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False
        self._penalised: set[str] = set()
        """Upstream URLs dropped for a protocol violation: redialled only after the longest backoff."""

    # ------------------------------------------------------------------ lifecycle
    def mount(self, app: web.Application) -> None:
        app.router.add_get(OBSERVER_PATH, self._accept)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        for url in self.upstream_urls:
            self._spawn(self._dial_forever(url))

    # ------------------------------------------------------------------ sending
    def connected(self) -> list[int]:
        return sorted(self.links)

    def upstream(self) -> list[int]:
        return sorted(i for i, link in self.links.items() if link.upstream)

    def downstream(self) -> list[int]:
        return sorted(i for i, link in self.links.items() if not link.upstream)

    def send(self, peer: int, kind: int, payload: bytes) -> bool:
        link = self.links.get(peer)
        if link is None:
            return False
        self._enqueue(link, bytes([kind]) + payload)
        return True

    def broadcast(self, kind: int, payload: bytes) -> None:
        """To every upstream link (transactions go towards the validators)."""
        frame = bytes([kind]) + payload
        for link in list(self.links.values()):
            if link.upstream:
                self._enqueue(link, frame)

    def announce_head(self, height: int) -> None:
        """Tell every downstream link our committed height."""
        frame = bytes([FRAME_HEAD]) + codec.encode(Head(height=height))
        for link in list(self.links.values()):
            if not link.upstream:
                self._enqueue(link, frame)

    def _enqueue(self, link: ObserverLink, frame: bytes) -> None:
        if len(link.queue) >= self.config.outbound_queue_messages:
            link.queue.popleft()
            self._drop("queue_overflow")
        link.queue.append(frame)
        link.wakeup.set()

    async def _writer(self, link: ObserverLink) -> None:
        while True:
            await link.wakeup.wait()
            link.wakeup.clear()
            while link.queue:
                await link.ws.send_bytes(link.queue.popleft())

    async def drop(self, peer: int, reason: str) -> None:
        """Disconnect ``peer`` (it broke the protocol, e.g. sent a block that does not verify)."""
        link = self.links.get(peer)
        if link is None:
            return
        self._drop(reason)
        if link.upstream:
            self._penalised.add(link.url)
        log.warning("dropping observer link %d (%s): %s", peer, link.url or "inbound", reason)
        with contextlib.suppress(Exception):
            await link.ws.close(code=4004, message=b"protocol violation")

    # ------------------------------------------------------------------ handshake
    def _proof(self, prover: bytes, verifier: bytes, nonce: bytes) -> bytes:
        return codec.encode(LinkProof(chain_id=self.chain_id, prover=prover, verifier=verifier, link_nonce=nonce))

    def _sign(self, verifier: bytes, nonce: bytes) -> bytes:
        return self.signer.sign(chain_id=self.chain_id, kind=crypto.KIND_PEER,
                                message=self._proof(self.signer.public_key, verifier, nonce))

    def _verify(self, auth: LinkAuth, nonce: bytes) -> bool:
        return len(auth.public_key) == 32 and crypto.verify(
            auth.public_key, auth.signature, chain_id=self.chain_id, kind=crypto.KIND_PEER,
            message=self._proof(auth.public_key, self.signer.public_key, nonce))

    async def _receive(self, ws: Any, type_: type[Any]) -> Any:
        msg = await asyncio.wait_for(ws.receive(), HANDSHAKE_TIMEOUT_S)
        if msg.type != aiohttp.WSMsgType.BINARY:
            raise PeerError(f"expected a binary handshake frame, got {msg.type!r}")
        try:
            return codec.decode(msg.data, type_)
        except codec.CodecError as exc:
            raise PeerError(str(exc)) from exc

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=self.config.max_message_bytes, heartbeat=10.0)
        await ws.prepare(request)
        if self._stopping:
            await ws.close(code=4002, message=b"unavailable")
            return ws
        nonce = secrets.token_bytes(NONCE_SIZE)
        try:
            await ws.send_bytes(codec.encode(LinkChallenge(
                chain_id=self.chain_id, public_key=self.signer.public_key, nonce=nonce)))
            auth = await self._receive(ws, LinkAuth)
            if not self._verify(auth, nonce) or not self.allowed(auth.public_key):
                raise PeerError(f"key {auth.public_key.hex()[:16]} is not a registered node key or failed its proof")
            if len(auth.nonce) != NONCE_SIZE:
                raise PeerError("bad nonce")
            if len(self.downstream()) >= self.config.max_observer_links:
                self._drop("observer_limit")
                log.warning("refused observer %s: %d observers linked already", auth.public_key.hex()[:16],
                            self.config.max_observer_links)
                await ws.close(code=4003, message=b"too many observers")
                return ws
            await ws.send_bytes(codec.encode(LinkAuth(public_key=self.signer.public_key, nonce=b"",
                                                      signature=self._sign(auth.public_key, auth.nonce))))
        except (PeerError, TimeoutError, ConnectionError, aiohttp.ClientError) as exc:
            self._drop("handshake")
            log.warning("refused observer connection from %s: %s", request.remote, exc)
            await ws.close(code=4001, message=b"authentication failed")
            return ws
        await self._run_link(ObserverLink(link_id=next(self._ids), public_key=auth.public_key,
                                          upstream=False, ws=ws, url=str(request.remote or "")))
        return ws

    async def _dial(self, url: str) -> None:
        assert self._session is not None
        ssl_arg: Any = True
        if url.startswith("wss:") and self.config.tls_ca:  # the consortium's CA, as for validator links
            ssl_arg = ssl.create_default_context(cafile=self.config.tls_ca)
        async with self._session.ws_connect(
            url, max_msg_size=self.config.max_message_bytes, heartbeat=10.0,
            timeout=aiohttp.ClientWSTimeout(ws_close=2.0), ssl=ssl_arg,
        ) as ws:
            challenge = await self._receive(ws, LinkChallenge)
            if challenge.chain_id != self.chain_id or len(challenge.nonce) != NONCE_SIZE:
                raise PeerError(f"{url} serves chain {challenge.chain_id!r}")
            my_nonce = secrets.token_bytes(NONCE_SIZE)
            await ws.send_bytes(codec.encode(LinkAuth(public_key=self.signer.public_key, nonce=my_nonce,
                                                      signature=self._sign(challenge.public_key, challenge.nonce))))
            reply = await self._receive(ws, LinkAuth)
            if reply.public_key != challenge.public_key or not self._verify(reply, my_nonce):
                raise PeerError(f"{url} failed to prove its key")
            await self._run_link(ObserverLink(link_id=next(self._ids), public_key=reply.public_key,
                                              upstream=True, ws=ws, url=url))

    async def _dial_forever(self, url: str) -> None:
        delay_ms = self.config.reconnect_min_ms
        while not self._stopping:
            try:
                await self._dial(url)
                delay_ms = self.config.reconnect_min_ms
                if url in self._penalised:
                    self._penalised.discard(url)
                    delay_ms = self.config.reconnect_max_ms
            except PeerError as exc:
                self._drop("handshake")
                log.warning("observer link to %s: %s", url, exc)
            except (OSError, TimeoutError, aiohttp.ClientError, aiohttp.WSServerHandshakeError):
                pass
            await asyncio.sleep(delay_ms / 1000)
            delay_ms = min(delay_ms * 2, self.config.reconnect_max_ms)

    # ------------------------------------------------------------------ links
    async def _run_link(self, link: ObserverLink) -> None:
        self.links[link.link_id] = link
        log.info("observer link %d up (%s %s, key %s)", link.link_id, "to" if link.upstream else "from",
                 link.url, link.public_key.hex()[:16])
        self._on_link_change(link, True)
        writer = self._spawn(self._writer(link))
        try:
            async for msg in link.ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    if msg.type == aiohttp.WSMsgType.ERROR:
                        break
                    self._bad(link, "malformed")
                    continue
                await self._on_frame(link, msg.data)
                if link.bad_frames >= self.max_bad_frames:
                    log.warning("observer link %d sent %d bad frames: disconnecting", link.link_id,
                                link.bad_frames)
                    break
        finally:
            writer.cancel()
            self.links.pop(link.link_id, None)
            self._on_link_change(link, False)
            with contextlib.suppress(Exception):
                await link.ws.close()
            log.info("observer link %d down", link.link_id)

    def _bad(self, link: ObserverLink, reason: str) -> None:
        link.bad_frames += 1
        self._drop(reason)

    async def _on_frame(self, link: ObserverLink, data: bytes) -> None:
        kind = data[0] if data else -1
        entry = self._handlers.get(kind)
        # Followers ask and are told heads; servers answer: a frame against the direction is bad.
        wrong_way = (kind in DOWNWARD_FRAMES) != link.upstream and kind != FRAME_TXS
        if entry is None or wrong_way:
            self._bad(link, "unknown_frame")
            return
        handler, type_ = entry
        try:
            value: Any = codec.decode(memoryview(data)[1:], type_)  # type: ignore[arg-type]
        except codec.CodecError:
            self._bad(link, "malformed")
            return
        result = handler(link.link_id, value)
        if result is not None:
            await result
