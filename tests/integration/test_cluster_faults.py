"""Process cluster: partition and rejoin, a peer sending garbage, accepted txs surviving kill -9.

Setup: 4 validator processes on 127.0.0.1 with the debug endpoint
(``POST /debug/partition`` on the metrics port) enabled.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from consensus import codec
from consensus.types import Vote, VoteData, VoteMsg
from node.devnet.localnet import LocalNet
from node.net.transport import FRAME_CONSENSUS, Auth, Challenge, PeerProof
from node.ops.config import KEY_FILE, load_config
from node.ops.keys import load_key_file, new_signer
from tests.integration.cluster_util import (
    Sender,
    all_committed,
    assert_same_chain,
    metric,
    start_network,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster_faults"), pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    network = start_network(tmp_path_factory.mktemp("faults"), debug=True)
    try:
        yield network
    finally:
        network.stop_all()


def _partition(net: LocalNet, index: int, on: bool) -> None:
    url = net.nodes[index]["metrics_url"].replace("/metrics", f"/debug/partition?on={int(on)}")
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5) as response:
        assert json.loads(response.read())["partitioned"] is on


def test_partitioned_node_rejoins_and_catches_up(net: LocalNet) -> None:
    victim, others = 3, [0, 1, 2]
    _partition(net, victim, True)
    wait_until("the victim to lose its peers", lambda: (net.status(victim) or {}).get("peers") == 0)
    cut_height = net.height(victim)
    sender = Sender(net, "consumer-1")
    hashes = submit(net, 0, [sender.sign() for _ in range(10)])
    wait_until("the majority to commit", lambda: all_committed(net, hashes, others))
    wait_until("the majority to move on", lambda: min(net.height(i) for i in others) >= cut_height + 10)
    assert net.height(victim) <= cut_height + 1, "a partitioned node cannot commit"
    _partition(net, victim, False)
    target = max(net.height(i) for i in others)
    wait_until("the victim to catch up", lambda: net.height(victim) >= target)
    wait_until("transfers visible on the victim", lambda: all_committed(net, hashes, [victim]))
    assert_same_chain(net, [0, 1, 2, 3], target)


async def _impersonate(net: LocalNet, *, as_node: int, target: int, key_path: Path | None) -> None:
    """Connect to ``target``'s p2p port as validator ``as_node`` and send garbage."""
    target_conf = load_config(net.home(target), env={})
    signer = load_key_file(key_path).signer if key_path is not None else new_signer()
    chain_id = net.network["chain_id"]
    url = f"ws://127.0.0.1:{target_conf.p2p_port}/p2p"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        challenge = codec.decode((await ws.receive()).data, Challenge)
        proof = codec.encode(PeerProof(chain_id=chain_id, signer=as_node, peer=target, nonce=challenge.nonce))
        signature = signer.sign(chain_id=chain_id, kind="PEER", message=proof)
        await ws.send_bytes(codec.encode(Auth(node_id=as_node, nonce=bytes(32), signature=signature)))
        reply = await ws.receive()
        if key_path is None:
            assert reply.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
            return
        codec.decode(reply.data, Auth)
        status = net.status(target) or {}
        qc = json.loads(urllib.request.urlopen(net.api(target) + "/v1/blocks/latest", timeout=5).read())
        forged = VoteMsg(
            vote=Vote(vote_data=VoteData(epoch=0, round=status.get("round", 1), height=qc["height"] + 1,
                                         block_id=bytes(32), parent_id=bytes(32), parent_round=0),
                      author=as_node, signature=bytes(64)),
            sync=codec.decode(codec.encode(_genesis_sync(net)), type(_genesis_sync(net))),
        )
        frames = [b"", b"\x09unknown", b"\x01\xc1\xc1", b"\x02not-a-batch",
                  bytes([FRAME_CONSENSUS]) + codec.encode(forged)]
        for _ in range(5):
            for frame in frames:
                if ws.closed:
                    return
                await ws.send_bytes(frame)
        # The node may still have its own broadcasts in flight to us; the connection must close soon.
        async with asyncio.timeout(10):
            while (msg := await ws.receive()).type == aiohttp.WSMsgType.BINARY:
                pass
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


def _genesis_sync(net: LocalNet) -> object:
    from consensus.core import genesis_qc, make_genesis_block
    from consensus.types import SyncInfo
    from node.ops.genesis import load_genesis

    genesis = load_genesis(net.dir / "genesis.json")
    qc = genesis_qc(make_genesis_block(genesis.chain_id, 0, genesis.genesis_time_ms))
    return SyncInfo(high_qc=qc, high_commit_qc=qc)


def test_garbage_and_forged_peers_are_dropped_and_the_node_keeps_going(net: LocalNet) -> None:
    target = 1
    # A key outside the consortium is refused at the handshake.
    refused_before = metric(net, target, "gridchain_peer_messages_dropped_total")
    asyncio.run(_impersonate(net, as_node=0, target=target, key_path=None))
    wait_until("the refusal to be counted",
               lambda: metric(net, target, "gridchain_peer_messages_dropped_total") > refused_before)
    # Validator 0's real key, but it sends garbage and a vote with a bad signature: dropped, then cut off.
    net.kill(0)
    before = metric(net, target, "gridchain_peer_messages_dropped_total")
    height = net.height(target)
    asyncio.run(_impersonate(net, as_node=0, target=target, key_path=net.home(0) / KEY_FILE))
    assert metric(net, target, "gridchain_peer_messages_dropped_total") >= before + 5
    wait_until("the node to keep committing", lambda: net.height(target) >= height + 5)
    net.start(0)
    net.wait_ready([0])


def test_accepted_transactions_survive_kill_9_of_the_accepting_node(net: LocalNet) -> None:
    victim, others = 3, [0, 1, 2]
    # Cut the victim off so the transactions it accepts can only survive through its journal.
    _partition(net, victim, True)
    wait_until("the victim to lose its peers", lambda: (net.status(victim) or {}).get("peers") == 0)
    sender = Sender(net, "regulator-1", to="consumer-1")
    hashes = submit(net, victim, [sender.sign() for _ in range(25)])
    time.sleep(0.2)
    net.kill(victim)  # SIGKILL right after the 202s
    net.start(victim)  # the partition switch is not persistent: it rejoins
    net.wait_ready([victim])
    wait_until("every accepted transaction to commit everywhere", lambda: all_committed(net, hashes, [*others, victim]))
