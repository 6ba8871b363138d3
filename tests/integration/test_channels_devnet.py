"""Payment channels on a live 4-process devnet (127.0.0.1), through the REST API only.

Setup: one 4-validator network; prosumer-1 (party a) keeps its states on node 0,
consumer-1 (party b) on node 1. Check 1: after opening and funding, the two parties
exchange 1,000 off-chain updates in both directions through their nodes, and not one
transaction reaches the chain until the cooperative close, which pays the newest state
to the µ. Check 2: party a closes a second channel with a state five updates old; party
b's node — only it holds the newer states — challenges on its own inside the challenge
period, and party a forfeits its whole channel balance; the settlement's trace proves
every record against the block's receipts root.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import transactions as txs
from contracts.traceability import Proof, verify_proof
from node.channel_client import ChannelParty, cooperative_close_body, exchange
from node.client import AsyncClient
from node.devnet.localnet import LocalNet
from node.ops.keys import load_key_file
from tests.integration.cluster_util import http_json, start_network, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("devnet_channels"), pytest.mark.timeout(300)]

UPDATES = 1_000


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    network = start_network(tmp_path_factory.mktemp("channels"))
    try:
        yield network
    finally:
        network.stop_all()


def _key(net: LocalNet, name: str) -> Any:
    accounts = {a["name"]: a for a in json.loads((net.dir / "accounts.json").read_text())}
    return load_key_file(accounts[name]["key_file"])


def _account(net: LocalNet, address: str) -> dict[str, Any]:
    status, body = http_json(net.api(2) + f"/v1/accounts/{address}")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def _open(net: LocalNet, own_a: AsyncClient, own_b: AsyncClient, *, deposit_a_u: int,
                deposit_b_u: int) -> tuple[ChannelParty, ChannelParty, int]:
    """The two parties of a new channel, and the height of its last setup transaction."""
    key_a, key_b = _key(net, "prosumer-1"), _key(net, "consumer-1")
    opened = await own_a.send(key_a.signer, txs.OpenChannel(counterparty=key_b.address, deposit_u=deposit_a_u,
                                                            challenge_slots=1), wait=True)
    channel_id, height = opened["tx_hash"], opened["height"]
    if deposit_b_u:
        funded = await own_b.send(key_b.signer, txs.FundChannel(channel_id=channel_id, deposit_u=deposit_b_u),
                                  wait=True)
        height = funded["height"]
    wait_until("both nodes executed the setup", lambda: min(net.height(0), net.height(1)) >= height)
    a = await ChannelParty.load(signer=key_a.signer, channel_id=channel_id, own=own_a)
    b = await ChannelParty.load(signer=key_b.signer, channel_id=channel_id, own=own_b)
    return a, b, height


def _tx_count(net: LocalNet, first: int, last: int) -> int:
    wait_until(f"node 3 at height {last}", lambda: net.height(3) >= last)
    total = 0
    for height in range(first, last + 1):
        status, block = http_json(net.api(3) + f"/v1/blocks/{height}")
        assert status == 200, (height, block)
        total += len(block["txs"])
    return total


def test_a_thousand_updates_off_chain_then_a_cooperative_close(net: LocalNet) -> None:
    async def run() -> tuple[ChannelParty, ChannelParty, int, int, float, dict[str, Any]]:
        async with AsyncClient(net.api(0)) as own_a, AsyncClient(net.api(1)) as own_b:
            a, b, setup_height = await _open(net, own_a, own_b, deposit_a_u=5_000_000, deposit_b_u=2_000_000)
            first_height = setup_height + 1
            rng = random.Random(15)
            started = time.monotonic()
            for i in range(UPDATES):
                payer, payee = (a, b) if i % 4 != 3 else (b, a)  # mostly a sells to b, sometimes back
                await exchange(payer, payee, rng.randint(1, 2_000), energy_wh=rng.randint(0, 10))
            elapsed_s = time.monotonic() - started
            last_height = max(net.height(i) for i in range(4))
            co_signed = await exchange(b, a, 0, final=True)
            closed = await own_b.send(b.signer, cooperative_close_body(co_signed), wait=True)
            # The balances are read from node 2: let it execute the close first.
            wait_until("node 2 executed the close", lambda: net.height(2) >= closed["height"])
            return a, b, first_height, last_height, elapsed_s, co_signed

    key_a, key_b = _key(net, "prosumer-1"), _key(net, "consumer-1")
    before_a, before_b = (_account(net, k.address)["balance_u"] for k in (key_a, key_b))
    a, b, first, last, elapsed_s, final = asyncio.run(run())
    print(f"\n{UPDATES} off-chain updates in {elapsed_s:.1f} s: {UPDATES / elapsed_s:.0f} updates/s "
          f"(3 HTTP calls and 2 fsyncs each)")
    assert a.latest.seq == b.latest.seq == UPDATES + 1
    assert _tx_count(net, first, last) == 0, "an off-chain update reached the chain"
    state = final["state"]
    assert state["balance_a_u"] + state["balance_b_u"] == 7_000_000
    # Open + fund + close are the only three transactions: balances moved by the final state.
    assert _account(net, key_a.address)["balance_u"] == before_a - 5_000_000 + state["balance_a_u"]
    assert _account(net, key_b.address)["balance_u"] == before_b - 2_000_000 + state["balance_b_u"]


def test_a_stale_close_is_punished_by_the_counterpartys_watchtower(net: LocalNet) -> None:
    async def run() -> str:
        async with AsyncClient(net.api(0)) as own_a, AsyncClient(net.api(1)) as own_b:
            a, b, _ = await _open(net, own_a, own_b, deposit_a_u=100_000, deposit_b_u=0)
            stale = None
            for seq in range(1, 7):  # a pays b; a keeps its own copy nowhere but here
                state = a.next_state(1_000)
                await a.propose(own_b, state)
                co_signed = await b.countersign()
                assert co_signed is not None
                a._keep(co_signed)
                if seq == 1:
                    stale = a.close_body()  # the state that paid b the least
            assert stale is not None and stale.state.seq == 1
            await own_a.send(a.signer, stale, wait=True)
            return a.channel_id

    channel_id = asyncio.run(run())
    settled = wait_until("the watchtower's challenge", lambda: _settled(net, channel_id), timeout_s=60)
    assert (settled["paid_a_u"], settled["paid_b_u"]) == (0, 100_000)
    status, trace = http_json(net.api(2) + f"/v1/trace/channels/{channel_id}")
    assert status == 200, trace
    roles = [entry["role"] for entry in trace["lineage"]]
    assert roles == ["opened", "close_started", "challenged", "settled"]
    challenged = trace["lineage"][2]["record"]
    assert challenged["penalty"] and challenged["seq"] == 6
    _, validators = http_json(net.api(2) + "/v1/validators")
    assert challenged["challenger"] == validators["validators"][1]["address"]  # party b's node
    for entry in trace["lineage"]:
        proof = Proof(index=entry["proof"]["index"], leaf_count=entry["proof"]["leaf_count"],
                      siblings=tuple(bytes.fromhex(s) for s in entry["proof"]["siblings"]))
        assert verify_proof(bytes.fromhex(entry["leaf"]), proof, bytes.fromhex(entry["block"]["receipts_root"]))
    assert trace["lineage"][3]["record"]["how"] == "penalty"


def _settled(net: LocalNet, channel_id: str) -> dict[str, Any] | None:
    status, info = http_json(net.api(2) + f"/v1/channels/{channel_id}")
    channel = info["channel"] if status == 200 else None
    return channel if channel is not None and channel["status"] == "settled" else None


def test_node_files_exist(net: LocalNet) -> None:
    """Each node keeps its channel store next to its chain database."""
    assert all((Path(net.home(i)) / "data" / "channels.sqlite3").exists() for i in range(4))
