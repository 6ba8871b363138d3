"""A live devnet with observers (4 validators, 2 observers, LocalNet processes on 127.0.0.1):
transactions submitted to an observer commit; every observer's blocks and state roots equal
the validators'; kill -9 of a validator leaves the observers following; a third observer made
with ``gridchain join`` that follows observer-1 and also dials garbage peers — one with an
unregistered key, one with a registered key serving a forged block — refuses both, stores
nothing they sent, and follows the chain through observer-1."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from consensus import codec, crypto
from consensus.types import Block, BlockHeader, QuorumCert, VoteData, block_id, payload_root
from contracts.transactions import SetNodeKey, Tx, sign_tx
from node.devnet.localnet import LocalNet
from node.net.observer_links import ObserverLinks
from node.net.transport import FRAME_SYNC_RESPONSE, SyncRequest, SyncResponse
from node.ops import genesis as gen
from node.ops.config import NodeConfig
from node.ops.keys import load_key_file
from tests.integration.cluster_util import (
    Sender,
    all_committed,
    block_at,
    free_base_port,
    http_json,
    submit,
    tx_status,
    wait_until,
)

pytestmark = pytest.mark.timeout(420)

_RUN_CLI = "import sys; from node.cli import main; sys.exit(main())"


class GarbagePeer(threading.Thread):
    """Serves ``/p2p/observer`` with its own key and, asked for blocks, a forged block extending
    the real chain whose commit QC it signed itself (it is no validator)."""

    def __init__(self, port: int, signer: crypto.Signer, chain_id: str, api: str) -> None:
        super().__init__(daemon=True)
        self.port, self.signer, self.chain_id, self.api = port, signer, chain_id, api
        self.forged: list[tuple[int, str]] = []
        """(height, block id) of every forged block it served."""
        self.requests = 0
        self.linked = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self.started = threading.Event()

    def _forge(self, peer: int, request: SyncRequest) -> None:
        self.requests += 1
        height = request.from_height
        status, parent = http_json(f"{self.api}/v1/blocks/{height - 1}")
        if status != 200:
            return
        parent_id = bytes.fromhex(parent["block_id"])
        qc = QuorumCert(vote_data=VoteData(epoch=0, round=10**6, height=height - 1, block_id=parent_id,
                                           parent_id=bytes(32), parent_round=0))
        header = BlockHeader(epoch=0, round=10**6 + 1, height=height, parent_qc=qc, author=0,
                             timestamp_ms=int(time.time() * 1000), tx_root=payload_root(()),
                             executed_height=0, executed_state_root=bytes(32))
        block = Block(header=header)
        self.forged.append((height, block_id(header).hex()))
        data = VoteData(epoch=0, round=header.round + 1, height=height + 1, block_id=bytes(range(32)),
                        parent_id=block_id(header), parent_round=header.round)
        sig = self.signer.sign(chain_id=self.chain_id, kind=crypto.KIND_VOTE, message=codec.encode(data))
        commit = QuorumCert(vote_data=data, signers=(0, 1, 2), signatures=(sig, sig, sig))
        response = SyncResponse(blocks=(block,), commit_qc=commit, head_height=10**6)
        self.links.send(peer, FRAME_SYNC_RESPONSE, codec.encode(response))

    def _link(self, link: Any, up: bool) -> None:
        if up:
            self.linked += 1
            self.links.announce_head(10**6)

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from aiohttp import web

        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        config = NodeConfig(name="garbage", role="member", node_id=-1)
        self.links = ObserverLinks(config=config, chain_id=self.chain_id, signer=self.signer,
                                   allowed=lambda key: True, on_txs=lambda p, v: None,
                                   on_sync_request=self._forge, on_sync_response=lambda p, v: None,
                                   on_head=lambda p, v: None, on_link_change=self._link)
        app = web.Application()
        self.links.mount(app)
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self.started.set()
        await self._stop_event.wait()
        await self.links.stop()
        await runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        self.join(timeout=10)


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def _metrics(net: LocalNet, index: int) -> str:
    with urllib.request.urlopen(net.nodes[index]["metrics_url"], timeout=5) as response:
        return str(response.read().decode())


def _name_node_key(net: LocalNet, account: str, node_key: bytes) -> None:
    accounts = {a["name"]: a for a in json.loads((net.dir / "accounts.json").read_text())}
    key = load_key_file(accounts[account]["key_file"])
    now = int(time.time() * 1000)
    raw = sign_tx(Tx(chain_id=net.network["chain_id"], sender=key.address, public_key=key.public_key, nonce=now,
                     expires_at_ms=now + 600_000, body=SetNodeKey(node_key=node_key)), key.signer)
    [tx_hash] = submit(net, 0, [raw])
    wait_until("set_node_key committed", lambda: tx_status(net, 0, tx_hash) == "committed", timeout_s=30)


def _first_event(api: str, topics: str = "blocks") -> dict[str, Any]:
    """The first event of an API's /v1/events stream."""
    import aiohttp

    async def receive() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                api.replace("http://", "ws://") + f"/v1/events?topics={topics}") as ws:
            msg = await asyncio.wait_for(ws.receive(), 20)
            return json.loads(msg.data)  # type: ignore[no-any-return]

    return asyncio.run(receive())


def _same_chain(net: LocalNet, indexes: list[int], up_to: int) -> None:
    """Blocks (id, state root) equal on every node at a sample of heights up to ``up_to``."""
    step = max(1, up_to // 30)
    for height in sorted({*range(1, up_to + 1, step), up_to}):
        views = [block_at(net, i, height) for i in indexes]
        assert all(v is not None for v in views), (height, views)
        assert len({(v["block_id"], v["state_root"]) for v in views if v}) == 1, (height, views)


def test_observers_follow_verify_and_forward(tmp_path: Path) -> None:
    out = tmp_path / "net"
    base = free_base_port()
    gen.generate_network(out, nodes=gen.parse_nodes("4"), base_port=base, slot_ms=60_000,
                         chain_id="gridchain-test", observers=2)
    net = LocalNet(out)
    garbage: list[GarbagePeer] = []
    spy: subprocess.Popen[bytes] | None = None
    try:
        net.start_all()
        validators, observers = net.validators(), net.observers()
        assert (validators, observers) == ([0, 1, 2, 3], [4, 5])
        net.wait_ready(validators, timeout_s=60)
        # Before its key is named on chain, an observer is refused: it cannot become ready.
        time.sleep(1.0)
        assert not net.is_ready(4)
        assert _metric(_metrics(net, 0), 'gridchain_peer_messages_dropped_total{reason="handshake"}') >= 1
        net.register_observers()
        net.wait_ready(observers, timeout_s=60)
        status = net.status(4)
        assert status is not None and status["node_role"] == "observer" and status["epoch"] == 0
        assert [v["name"] for v in status["validators"]] == ["generator", "grid", "retailer", "user"]
        assert net.status(0)["node_role"] == "validator"  # type: ignore[index]
        # The observer serves the whole API: the web page, the event stream, its metrics.
        with urllib.request.urlopen(net.api(4) + "/", timeout=5) as page:
            assert page.status == 200 and b"<html" in page.read()
        assert _first_event(net.api(4))["type"] == "block"
        assert _metric(_metrics(net, 4), 'gridchain_node_role{role="observer"}') == 1.0

        # Transactions submitted to an observer commit everywhere.
        sender = Sender(net)
        hashes = submit(net, 4, [sender.sign() for _ in range(20)])
        wait_until("txs sent to an observer committed on every node",
                   lambda: all_committed(net, hashes, validators + observers), timeout_s=60)
        top = min(net.height(i) for i in validators + observers)
        _same_chain(net, validators + observers, top)

        # kill -9 of a validator: the observers keep following the other three.
        net.kill(1)
        hashes = submit(net, 5, [sender.sign() for _ in range(10)])
        wait_until("txs committed with a validator killed",
                   lambda: all_committed(net, hashes, [0, 2, 3, 4, 5]), timeout_s=90)
        mark = net.height(0)
        net.wait_height(mark + 3, [4, 5], timeout_s=60)
        _same_chain(net, [0, 2, 3, 4, 5], min(net.height(i) for i in (0, 2, 3, 4, 5)))
        # kill -9 of an observer: restarted, it reloads its chain and follows again.
        net.kill(5)
        net.start(5)
        net.wait_ready([5], timeout_s=60)
        net.wait_height(net.height(0), [5], timeout_s=60)

        # Garbage peers serving forged blocks: one with an unregistered key, one with a registered key.
        chain_id = net.network["chain_id"]
        stranger = GarbagePeer(base + 290, crypto.Signer(b"\x11" * 32), chain_id, net.api(0))
        forger_signer = crypto.Signer(b"\x22" * 32)
        forger = GarbagePeer(base + 291, forger_signer, chain_id, net.api(0))
        garbage += [stranger, forger]
        for peer in garbage:
            peer.start()
            assert peer.started.wait(10)
        _name_node_key(net, "retailer-1", forger_signer.public_key)
        spy_home = tmp_path / "spy"
        # The spy follows observer-1 (observers serve observers) besides the two garbage peers.
        peers = [f"ws://127.0.0.1:{base + 290}/p2p", f"ws://127.0.0.1:{base + 291}/p2p", net.nodes[4]["p2p_url"]]
        joined = subprocess.run(
            [sys.executable, "-c", _RUN_CLI, "join", "--genesis", str(out / "genesis.json"), "--peers",
             ",".join(peers), "--home", str(spy_home), "--p2p-port", str(base + 292), "--api-port",
             str(base + 293), "--metrics-port", str(base + 294)], capture_output=True, check=True)
        node_key = bytes.fromhex(json.loads(joined.stdout)["node_key"])
        _name_node_key(net, "prosumer-1", node_key)
        with open(spy_home / "node.log", "ab") as log:
            spy = subprocess.Popen([sys.executable, "-c", _RUN_CLI, "node", "--home", str(spy_home)],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        spy_api = f"http://127.0.0.1:{base + 293}"
        wait_until("both garbage peers were asked for blocks", lambda: forger.forged and stranger.forged,
                   timeout_s=60)
        spy_metrics = f"http://127.0.0.1:{base + 294}/metrics"

        def refused() -> float:
            with urllib.request.urlopen(spy_metrics, timeout=5) as response:
                text = response.read().decode()
            return _metric(text, 'gridchain_observer_blocks_refused_total{reason="bad_qc"}')

        wait_until("both forged blocks refused", lambda: refused() >= 2, timeout_s=30)
        # The spy follows the real chain through observer-1 regardless, and never stored a forged block.
        target = net.height(0)
        wait_until("the observer caught up", lambda: (http_json(spy_api + "/v1/status")[1] or {}).get(
            "height", 0) >= target, timeout_s=90)
        for height, forged_id in forger.forged + stranger.forged:
            mine = (http_json(f"{spy_api}/v1/blocks/{height}")[1] or {}).get("block_id")
            assert mine != forged_id and mine == (block_at(net, 0, height) or {}).get("block_id"), height
        assert (http_json(f"{spy_api}/v1/blocks/{target}")[1] or {}).get("block_id") == \
            (block_at(net, 0, target) or {}).get("block_id")
    finally:
        if spy is not None and spy.poll() is None:
            spy.terminate()
            try:
                spy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                spy.kill()
        for peer in garbage:
            peer.stop()
        net.stop_all()
