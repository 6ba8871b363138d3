"""Peer links between validators: authenticated aiohttp WebSockets.

Theory of operation
-------------------
Every pair of validators shares exactly one WebSocket: the validator with the
lower index dials (``ws[s]://peer/p2p``), the higher one accepts, and both use
the link in both directions. The dialer reconnects with exponential backoff
(``reconnect_min_ms`` doubling up to ``reconnect_max_ms``) for as long as the
node runs.

Handshake (domain ``crypto.KIND_PEER``, so a peer signature can never be replayed
as anything else): the acceptor sends ``Challenge{chain_id, node_id, nonce}``;
the dialer checks the chain and that it reached the validator it dialled, and
answers ``Auth{node_id, nonce', signature over PeerProof(chain, dialer, acceptor,
nonce, channel)}``; the acceptor checks the dialer is a genesis validator with a lower
index and the signature, then proves its own key over ``nonce'``. Anything else —
unknown key, wrong chain, bad signature, timeout — closes the socket. Only then
does the link carry frames. Over ``wss://`` both proofs also cover ``channel``, the
SHA-256 of the acceptor's TLS certificate (the dialer's view and the acceptor's own),
which binds the TLS session to the validator keys: no CA is needed, and a man in the
middle with another certificate fails the handshake (``node/ops/tls.py``).

Frames are binary WebSocket messages: one kind byte and a payload:
``CONSENSUS`` (a ``consensus.types.Message``), ``TXS`` (a batch of raw signed
transactions), ``SYNC_REQUEST``/``SYNC_RESPONSE`` (committed-block catch-up), and
the kinds other modules register through ``extra_frames`` (state sync).
Inbound frames are decoded with validation here, at the edge; consensus messages
also pass ``validate`` (``consensus.validation.check_message``: signatures,
membership, certificates). A bad frame is dropped and counted in
``gridchain_peer_messages_dropped_total{reason}``; a peer that sends
``max_bad_frames`` bad frames is disconnected.

Outbound frames go into a bounded per-peer queue drained by one writer task, so
a slow peer never blocks the node; on overflow the oldest frame is dropped
(consensus recovers through sync info and timeouts, transactions through
re-gossip and the journal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from consensus import codec, crypto
from consensus.types import Block, Message, QuorumCert
from node.ops import tls
from node.ops.config import NodeConfig, PeerConfig

log = logging.getLogger("gridchain.transport")

P2P_PATH = "/p2p"
HANDSHAKE_TIMEOUT_S = 5.0
NONCE_SIZE = 32

FRAME_CONSENSUS = 1
FRAME_TXS = 2
FRAME_SYNC_REQUEST = 3
FRAME_SYNC_RESPONSE = 4

DROP_REASONS = ("malformed", "invalid", "unknown_frame", "handshake", "queue_overflow", "oversized")


class Challenge(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    chain_id: str
    node_id: int
    nonce: bytes


class Auth(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    node_id: int
    nonce: bytes
    signature: bytes


class PeerProof(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a peer signs during the handshake (domain PEER)."""

    chain_id: str
    signer: int
    peer: int
    nonce: bytes
    channel: bytes = b""
    """Fingerprint of the acceptor's TLS certificate; empty (and not encoded) on plain ws://."""


class SyncRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Ask for committed blocks from ``from_height`` on (at most ``count``)."""

    from_height: int
    count: int


class SyncResponse(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Committed blocks in height order and the QC that commits the last one
    (a QC for its child in the next round); empty when the responder has none."""

    blocks: tuple[Block, ...]
    commit_qc: QuorumCert | None
    head_height: int
    """The responder's latest committed height."""


TxBatch = tuple[bytes, ...]


class PeerError(Exception):
    """A peer violated the protocol; the link is closed."""

    code = "peer_protocol"


@dataclass
class PeerLink:
    """One authenticated link; ``queue`` is drained by the writer task."""

    node_id: int
    ws: Any
    queue: deque[bytes] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    bad_frames: int = 0


Handler = Callable[[int, Any], Awaitable[None] | None]


class LinkTasks:
    """The task and shutdown plumbing shared by the validator transport and the observer
    links (``node.net.observer_links``): spawned tasks are tracked, and ``stop`` closes
    every link, cancels and awaits every task, then closes the client session."""

    links: dict[int, Any]
    _tasks: set[asyncio.Task[Any]]
    _session: aiohttp.ClientSession | None
    _stopping: bool

    async def stop(self) -> None:
        self._stopping = True
        for link in list(self.links.values()):
            with contextlib.suppress(Exception):
                await link.ws.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._session is not None:
            await self._session.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class Transport(LinkTasks):
    """All peer links of one validator. Create, ``mount(app)`` on the p2p listener, ``start()``."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        chain_id: str,
        signer: crypto.Signer,
        validator_keys: Sequence[bytes],
        validate: Callable[[Message, int], None],
        on_consensus: Handler,
        on_txs: Handler,
        on_sync_request: Handler,
        on_sync_response: Handler,
        extra_frames: Mapping[int, tuple[Any, Handler]] | None = None,
        on_link_change: Callable[[int, bool], None] = lambda peer, up: None,
        drop_counter: Callable[[str], None] = lambda reason: None,
        max_bad_frames: int = 20,
    ) -> None:
        self.config = config
        self.chain_id = chain_id
        self.me = config.node_id
        self.signer = signer
        self.validator_keys = list(validator_keys)
        self._validate = validate
        self._handlers: dict[int, Handler] = {
            FRAME_CONSENSUS: on_consensus,
            FRAME_TXS: on_txs,
            FRAME_SYNC_REQUEST: on_sync_request,
            FRAME_SYNC_RESPONSE: on_sync_response,
        }
        self._extra_types: dict[int, Any] = {}
        """Frame kinds other modules add (kind -> payload type), e.g. ``node.net.statesync``."""
        for kind, (type_, handler) in (extra_frames or {}).items():
            self._handlers[kind], self._extra_types[kind] = handler, type_
        self._on_link_change = on_link_change
        self._drop = drop_counter
        self.max_bad_frames = max_bad_frames
        self.links: dict[int, PeerLink] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False
        self.partitioned = False
        """Debug switch (tests): when set, every link is closed and none is opened."""
        self._client_ssl = self._make_client_ssl()

    # ------------------------------------------------------------------ lifecycle
    def mount(self, app: web.Application) -> None:
        app.router.add_get(P2P_PATH, self._accept)

    def server_ssl(self) -> ssl.SSLContext | None:
        if not self.config.tls_cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key or None)
        return context

    def _make_client_ssl(self) -> ssl.SSLContext:
        if self.config.tls_ca:
            return ssl.create_default_context(cafile=self.config.tls_ca)
        # No CA: any certificate, which the handshake then binds to the peer's validator key.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    async def start(self) -> None:
        # Bounded connects: a dial into a cut link must not hang for the OS's SYN retries.
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
            total=None, connect=2 * HANDSHAKE_TIMEOUT_S, sock_connect=HANDSHAKE_TIMEOUT_S))
        for peer in self.config.peers:
            if peer.node_id > self.me:
                self._spawn(self._dial_forever(peer))

    async def set_partitioned(self, on: bool) -> None:
        self.partitioned = on
        if on:
            for link in list(self.links.values()):
                with contextlib.suppress(Exception):
                    await link.ws.close()

    # ------------------------------------------------------------------ sending
    def connected(self) -> list[int]:
        return sorted(self.links)

    def send(self, peer: int, kind: int, payload: bytes) -> bool:
        """Queue a frame for ``peer``; False if there is no link to it."""
        link = self.links.get(peer)
        if link is None:
            return False
        self._enqueue(link, bytes([kind]) + payload)
        return True

    def broadcast(self, kind: int, payload: bytes) -> None:
        frame = bytes([kind]) + payload
        for link in self.links.values():
            self._enqueue(link, frame)

    def _enqueue(self, link: PeerLink, frame: bytes) -> None:
        if len(link.queue) >= self.config.outbound_queue_messages:
            link.queue.popleft()
            self._drop("queue_overflow")
        link.queue.append(frame)
        link.wakeup.set()

    async def _writer(self, link: PeerLink) -> None:
        while True:
            await link.wakeup.wait()
            link.wakeup.clear()
            while link.queue:
                await link.ws.send_bytes(link.queue.popleft())

    # ------------------------------------------------------------------ handshake
    def _proof(self, *, signer: int, peer: int, nonce: bytes, channel: bytes) -> bytes:
        return codec.encode(PeerProof(chain_id=self.chain_id, signer=signer, peer=peer, nonce=nonce,
                                      channel=channel))

    def _check_proof(self, *, signer: int, peer: int, nonce: bytes, signature: bytes, channel: bytes) -> bool:
        if not 0 <= signer < len(self.validator_keys):
            return False
        return crypto.verify(
            self.validator_keys[signer], signature, chain_id=self.chain_id, kind=crypto.KIND_PEER,
            message=self._proof(signer=signer, peer=peer, nonce=nonce, channel=channel),
        )

    async def _receive_struct(self, ws: Any, type_: type[Any]) -> Any:
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
        if self.partitioned or self._stopping:
            await ws.close(code=4002, message=b"unavailable")
            return ws
        nonce = secrets.token_bytes(NONCE_SIZE)
        secure = request.transport is not None and request.transport.get_extra_info("ssl_object") is not None
        try:
            channel = tls.cert_file_fingerprint(self.config.tls_cert) if secure else b""
            await ws.send_bytes(codec.encode(Challenge(chain_id=self.chain_id, node_id=self.me, nonce=nonce)))
            auth = await self._receive_struct(ws, Auth)
            if not (0 <= auth.node_id < self.me) or not self._check_proof(
                signer=auth.node_id, peer=self.me, nonce=nonce, signature=auth.signature, channel=channel
            ):
                raise PeerError(f"peer claiming validator {auth.node_id} failed authentication")
            if len(auth.nonce) != NONCE_SIZE:
                raise PeerError("bad nonce")
            signature = self.signer.sign(
                chain_id=self.chain_id, kind=crypto.KIND_PEER,
                message=self._proof(signer=self.me, peer=auth.node_id, nonce=auth.nonce, channel=channel),
            )
            await ws.send_bytes(codec.encode(Auth(node_id=self.me, nonce=b"", signature=signature)))
        except (PeerError, TimeoutError, OSError, aiohttp.ClientError) as exc:
            self._drop("handshake")
            log.warning("refused peer connection from %s: %s", request.remote, exc)
            await ws.close(code=4001, message=b"authentication failed")
            return ws
        await self._run_link(auth.node_id, ws)
        return ws

    async def _dial(self, peer: PeerConfig) -> None:
        assert self._session is not None
        ssl_arg: Any = self._client_ssl if peer.url.startswith("wss:") else True
        async with self._session.ws_connect(
            peer.url, max_msg_size=self.config.max_message_bytes, heartbeat=10.0,
            timeout=aiohttp.ClientWSTimeout(ws_close=2.0), ssl=ssl_arg,
        ) as ws:
            challenge = await self._receive_struct(ws, Challenge)
            if challenge.chain_id != self.chain_id or challenge.node_id != peer.node_id:
                raise PeerError(f"{peer.url} is {challenge.chain_id}/{challenge.node_id}, expected peer {peer.node_id}")
            if len(challenge.nonce) != NONCE_SIZE:
                raise PeerError("bad nonce")
            my_nonce = secrets.token_bytes(NONCE_SIZE)
            ssl_object = ws.get_extra_info("ssl_object")
            channel = tls.fingerprint(ssl_object.getpeercert(binary_form=True)) if ssl_object else b""
            signature = self.signer.sign(
                chain_id=self.chain_id, kind=crypto.KIND_PEER,
                message=self._proof(signer=self.me, peer=peer.node_id, nonce=challenge.nonce, channel=channel),
            )
            await ws.send_bytes(codec.encode(Auth(node_id=self.me, nonce=my_nonce, signature=signature)))
            reply = await self._receive_struct(ws, Auth)
            if reply.node_id != peer.node_id or not self._check_proof(
                signer=peer.node_id, peer=self.me, nonce=my_nonce, signature=reply.signature, channel=channel
            ):
                raise PeerError(f"{peer.url} failed to prove validator {peer.node_id}'s key")
            await self._run_link(peer.node_id, ws)

    async def _dial_forever(self, peer: PeerConfig) -> None:
        delay_ms = self.config.reconnect_min_ms
        while not self._stopping:
            if not self.partitioned:
                try:
                    await self._dial(peer)
                    delay_ms = self.config.reconnect_min_ms  # it was up; start backoff over
                except PeerError as exc:
                    self._drop("handshake")
                    log.warning("peer %s (%s): %s", peer.name, peer.url, exc)
                except (OSError, TimeoutError, aiohttp.ClientError, aiohttp.WSServerHandshakeError):
                    pass
            await asyncio.sleep(delay_ms / 1000)
            delay_ms = min(delay_ms * 2, self.config.reconnect_max_ms)

    # ------------------------------------------------------------------ links
    async def _run_link(self, peer: int, ws: Any) -> None:
        old = self.links.get(peer)
        if old is not None:
            with contextlib.suppress(Exception):
                await old.ws.close()
        link = PeerLink(node_id=peer, ws=ws)
        self.links[peer] = link
        log.info("peer %d connected", peer)
        self._on_link_change(peer, True)
        writer = self._spawn(self._writer(link))
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    if msg.type == aiohttp.WSMsgType.ERROR:
                        too_big = "size" in str(ws.exception()).lower()
                        self._drop("oversized" if too_big else "malformed")
                        break
                    self._bad(link, "malformed")
                    continue
                await self._on_frame(link, msg.data)
                if link.bad_frames >= self.max_bad_frames:
                    log.warning("peer %d sent %d bad frames: disconnecting", peer, link.bad_frames)
                    break
        finally:
            writer.cancel()
            if self.links.get(peer) is link:
                del self.links[peer]
                self._on_link_change(peer, False)
            with contextlib.suppress(Exception):
                await ws.close()
            log.info("peer %d disconnected", peer)

    def _bad(self, link: PeerLink, reason: str) -> None:
        link.bad_frames += 1
        self._drop(reason)

    async def _on_frame(self, link: PeerLink, data: bytes) -> None:
        if not data:
            self._bad(link, "malformed")
            return
        kind = data[0]
        handler = self._handlers.get(kind)
        if handler is None:
            self._bad(link, "unknown_frame")
            return
        payload = memoryview(data)[1:]
        try:
            if kind == FRAME_CONSENSUS:
                message: Message = codec.decode(payload, Message)  # type: ignore[arg-type]
                try:
                    self._validate(message, link.node_id)
                except Exception as exc:  # validation raises InvalidMessage(code=...)
                    self._bad(link, "invalid")
                    log.debug("invalid message from %d: %s", link.node_id, exc)
                    return
                value: Any = message
            elif kind == FRAME_TXS:
                value = codec.decode(payload, TxBatch)  # type: ignore[arg-type]
            elif kind == FRAME_SYNC_REQUEST:
                value = codec.decode(payload, SyncRequest)  # type: ignore[arg-type]
            elif kind in self._extra_types:
                value = codec.decode(payload, self._extra_types[kind])  # type: ignore[arg-type]
            else:
                value = codec.decode(payload, SyncResponse)  # type: ignore[arg-type]
        except codec.CodecError:
            self._bad(link, "malformed")
            return
        result = handler(link.node_id, value)
        if result is not None:
            await result
