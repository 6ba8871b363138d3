"""node.net.observer_links on 127.0.0.1: registered keys link up, strangers are refused, the
number of observers is bounded, frames against the link's direction are bad."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aiohttp import web

from consensus import codec, crypto
from node.net.observer_links import FRAME_HEAD, Head, ObserverLinks, observer_url
from node.net.transport import FRAME_SYNC_REQUEST, FRAME_TXS, SyncRequest
from node.ops.config import NodeConfig

CHAIN = "test-chain"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Side:
    """One node's observer links, recording what arrives."""

    def __init__(self, seed: int, *, allowed: set[bytes], upstream: tuple[str, ...] = (), limit: int = 16) -> None:
        self.signer = crypto.Signer(bytes([seed]) * 32)
        self.port = _free_port()
        self.url = f"ws://127.0.0.1:{self.port}/p2p"
        self.config = NodeConfig(name=f"n{seed}", role="member", node_id=-1, p2p_port=self.port,
                                 max_observer_links=limit, reconnect_min_ms=20, reconnect_max_ms=100)
        self.got: list[tuple[str, Any]] = []
        self.dropped: list[str] = []
        self.links = ObserverLinks(
            config=self.config, chain_id=CHAIN, signer=self.signer, allowed=lambda key: key in allowed,
            on_txs=lambda p, v: self.got.append(("txs", v)),
            on_sync_request=lambda p, v: self.got.append(("sync_request", v)),
            on_sync_response=lambda p, v: self.got.append(("sync_response", v)),
            on_head=lambda p, v: self.got.append(("head", v)),
            drop_counter=self.dropped.append, max_bad_frames=3, upstream_urls=upstream)

    async def start(self) -> None:
        app = web.Application()
        self.links.mount(app)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        await self.links.start()

    async def stop(self) -> None:
        await self.links.stop()
        await self.runner.cleanup()


async def _until(cond: Any, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_registered_observers_link_strangers_and_the_one_too_many_are_refused() -> None:
    a_key, b_key, stranger_key = (crypto.Signer(bytes([s]) * 32).public_key for s in (2, 3, 4))
    validator = Side(1, allowed={a_key, b_key}, limit=1)
    await validator.start()
    follows = {validator.signer.public_key}
    a = Side(2, allowed=follows, upstream=(validator.url,))
    b = Side(3, allowed=follows, upstream=(validator.url,))
    stranger = Side(4, allowed=follows, upstream=(validator.url,))
    assert stranger_key not in {a_key, b_key}
    try:
        await a.start()
        await _until(lambda: len(validator.links.downstream()) == 1 and len(a.links.upstream()) == 1)
        await b.start()
        await stranger.start()
        await _until(lambda: "observer_limit" in validator.dropped and "handshake" in validator.dropped)
        assert not b.links.upstream() and not stranger.links.upstream()
        assert len(validator.links.downstream()) == 1
        # Frames flow in their direction: the observer asks and forwards; the validator announces.
        [up] = a.links.upstream()
        a.links.broadcast(FRAME_TXS, codec.encode((b"tx",)))
        a.links.send(up, FRAME_SYNC_REQUEST, codec.encode(SyncRequest(from_height=1, count=8)))
        validator.links.announce_head(7)
        await _until(lambda: len(validator.got) == 2 and len(a.got) == 1)
        assert validator.got == [("txs", (b"tx",)), ("sync_request", SyncRequest(from_height=1, count=8))]
        assert a.got == [("head", Head(height=7))]
        # An observer announcing a head to the node it follows breaks the protocol.
        a.links.send(up, FRAME_HEAD, codec.encode(Head(height=9)))
        await _until(lambda: "unknown_frame" in validator.dropped)
        assert len(validator.got) == 2
    finally:
        for side in (stranger, b, a, validator):
            await side.stop()


def test_observer_urls_name_the_observer_path() -> None:
    assert observer_url("ws://h:1/p2p") == "ws://h:1/p2p/observer"
    assert observer_url("ws://h:1") == "ws://h:1/p2p/observer"
    assert observer_url("ws://h:1/p2p/observer/") == "ws://h:1/p2p/observer"
