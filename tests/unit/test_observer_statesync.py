"""State sync on observer links: an observer restores a certified snapshot that an upstream
serves through the links' ``send`` (not its validator transport), refuses a bad one with
nothing stored, and the links carry state-sync frames only in their direction."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from consensus import codec
from node.chain.driver import Driver
from node.devnet import chaingen
from node.net import snapshots as sp
from node.net.observer_links import LINK_ID_BASE, ObserverLink, ObserverLinks
from node.net.transport import FRAME_SYNC_REQUEST, FRAME_SYNC_RESPONSE, SyncRequest
from node.ops.config import NodeConfig
from tests.unit.test_statesync import (
    _SERVER_BYTES,
    SERVER,
    Wire,
    _client,
    _close,
    _flip_chunk,
    _ForgedState,
    _home,
    _nothing_stored,
    network,
)

__all__ = ["network"]  # the module-scoped chain fixture, shared with test_statesync

UPSTREAM, OBSERVER = LINK_ID_BASE, LINK_ID_BASE + 1


class _NoTransport:
    """The upstream's validator transport: state sync for an observer must not use it."""

    def send(self, peer: int, kind: int, payload: bytes) -> bool:
        raise AssertionError(f"frame {kind} to link {peer} went to the validator transport")


class LinkWire(Wire):
    """The observer's observer links: it asks its upstream, which answers as
    ``node.ops.observers.make_links`` wires it (through the links' ``send``)."""

    def __init__(self, nodes: dict[int, Driver], reply: Wire) -> None:
        super().__init__(OBSERVER, nodes)
        self.reply = reply

    def upstream(self) -> list[int]:
        return [UPSTREAM]

    def send(self, peer: int, kind: int, payload: bytes) -> bool:
        target, loop = self.nodes[peer], asyncio.get_running_loop()
        if kind == FRAME_SYNC_REQUEST:
            request = codec.decode(payload, SyncRequest)
            loop.call_soon(self.reply.send, OBSERVER, FRAME_SYNC_RESPONSE,
                           codec.encode(target.sync_response(request)))
        else:
            loop.call_soon(self._serve, target, codec.decode(payload, sp.StateSyncRequest))
        return True

    def _serve(self, target: Driver, request: Any) -> None:
        result = target.on_statesync_request(OBSERVER, request, send=self.reply.send)
        if asyncio.iscoroutine(result):
            task = asyncio.get_running_loop().create_task(result)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


async def _observer_pair(network: Path, tmp_path: Path, tamper: Any = None) -> tuple[Driver, Driver, Wire]:
    server = chaingen.open_driver(_home(network, SERVER))
    observer = _client(network, tmp_path / "observer", node_role="observer",
                       observer_peers=("ws://127.0.0.1:1/p2p/observer",))
    nodes = {UPSTREAM: server, OBSERVER: observer}
    reply = Wire(UPSTREAM, nodes, tamper)
    server.transport = _NoTransport()
    observer.transport = LinkWire(nodes, reply)
    return server, observer, reply


async def test_an_observer_restores_a_snapshot_served_over_its_links(network: Path, tmp_path: Path) -> None:
    server, observer, _ = await _observer_pair(network, tmp_path)
    assert await observer._state_sync() is True
    assert observer.exec is not None and observer.pruned_height() == 256
    assert observer.exec.root == server.storage.block(observer.exec.height).state_root  # type: ignore[union-attr]
    await _close(server, observer)


@pytest.mark.parametrize("tamper", [_flip_chunk, _ForgedState], ids=["bad_chunk", "forged_state"])
async def test_an_observer_refuses_a_bad_snapshot_and_stores_nothing(
        network: Path, tmp_path: Path, tamper: Any, caplog: pytest.LogCaptureFixture) -> None:
    server, observer, reply = await _observer_pair(network, tmp_path)
    for height, _root, size in server.storage.checkpoints():
        _SERVER_BYTES[height] = server.storage.snapshot_slice(height, 0, size) or b""
    reply.tamper = tamper() if isinstance(tamper, type) else tamper
    with caplog.at_level("WARNING", logger="gridchain.statesync"):
        assert await observer._state_sync() is False
    assert "refused" in caplog.text
    assert observer.metrics.dropped.labels(reason="bad_snapshot")._value.get() == 1
    _nothing_stored(observer)
    await _close(server, observer)


async def test_state_sync_frames_travel_only_their_way_on_observer_links() -> None:
    got: list[tuple[str, int]] = []
    links = ObserverLinks(
        config=NodeConfig(name="o", role="member", node_id=-1), chain_id="c", signer=None,  # type: ignore[arg-type]
        allowed=lambda key: True, on_txs=lambda p, v: None, on_sync_request=lambda p, v: None,
        on_sync_response=lambda p, v: None, on_head=lambda p, v: None,
        on_statesync_request=lambda p, v: got.append(("request", p)),
        on_statesync_response=lambda p, v: got.append(("response", p)))
    up = ObserverLink(link_id=UPSTREAM, public_key=b"", upstream=True, ws=None)
    down = ObserverLink(link_id=OBSERVER, public_key=b"", upstream=False, ws=None)
    request = bytes([sp.FRAME_STATESYNC_REQUEST]) + codec.encode(sp.ListSnapshots())
    response = bytes([sp.FRAME_STATESYNC_RESPONSE]) + codec.encode(sp.SnapshotList(snapshots=()))
    await links._on_frame(down, request)
    await links._on_frame(up, response)
    assert got == [("request", OBSERVER), ("response", UPSTREAM)]
    await links._on_frame(up, request)  # an upstream does not ask us for snapshots
    await links._on_frame(down, response)  # nor does a follower offer them unasked
    assert len(got) == 2 and up.bad_frames == 1 and down.bad_frames == 1
