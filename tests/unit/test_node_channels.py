"""Payment channels on a node, in process (no sockets beyond the test client): proposals and
countersignatures through the REST API, the store keeping the newest co-signed state across a
reopen, refusals with stable codes, the watchtower punishing a stale close on its own, and a
channel's trace with inclusion proofs that verify."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from consensus import codec
from contracts import transactions as txs
from contracts.traceability import Proof, verify_proof
from node.api.app import create_api_app
from node.chain.channels import ChannelService
from node.chain.channels_store import ChannelStore
from tests.unit.api_memory_backend import SIGNERS, MemoryBackend, addr, signed


class Setup:
    def __init__(self, backend: MemoryBackend, service: ChannelService, client: TestClient[Any, Any],
                 channel_id: str) -> None:
        self.backend, self.service, self.client, self.channel_id = backend, service, client, channel_id

    def state(self, seq: int, balance_a_u: int, balance_b_u: int, **kw: Any) -> txs.ChannelState:
        return txs.ChannelState(channel_id=self.channel_id, seq=seq, balance_a_u=balance_a_u,
                                balance_b_u=balance_b_u, energy_wh=seq * 10, **kw)

    def sign(self, name: str, cs: txs.ChannelState) -> str:
        return txs.sign_channel_state(cs, SIGNERS[name], chain_id=self.backend.chain_id).hex()

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        resp = await self.client.post(f"/v1/channels/{self.channel_id}/{path}", json=body)
        return resp.status, await resp.json()

    async def update(self, seq: int, balance_a_u: int, balance_b_u: int) -> Any:
        """cons proposes, pros countersigns, both through this node."""
        cs = self.state(seq, balance_a_u, balance_b_u)
        status, body = await self.post("proposals", {"state": codec.to_builtins(cs), "signature": self.sign("cons", cs)})
        assert status == 200, body
        status, body = await self.post("countersign", {"seq": seq, "signature": self.sign("pros", cs)})
        assert status == 200, body
        return body


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    backend = MemoryBackend()
    opening = signed("cons", txs.OpenChannel(counterparty=addr("pros"), deposit_u=1_000, challenge_slots=2), nonce=1)
    await backend.submit([opening])
    backend.commit_block()
    service = ChannelService(backend=backend, store=await ChannelStore.open(tmp_path / "channels.sqlite3"),
                             signer=SIGNERS["val0"])
    await service.start()
    async with TestClient(TestServer(create_api_app(backend, channels=service), host="127.0.0.1")) as client:
        yield Setup(backend, service, client, codec.digest(opening).hex())
    await service.stop()


async def test_updates_through_the_node_are_stored_and_survive_a_reopen(setup: Setup, tmp_path: Path) -> None:
    await setup.update(1, 900, 100)
    co_signed = await setup.update(2, 850, 150)
    assert co_signed["state"]["seq"] == 2
    info = await (await setup.client.get(f"/v1/channels/{setup.channel_id}")).json()
    assert info["latest"] == co_signed and info["proposal"] is None
    assert info["channel"]["status"] == "open"
    store = await ChannelStore.open(tmp_path / "channels.sqlite3")
    try:
        latest = await store.latest(setup.channel_id)
        assert latest is not None and latest.seq == 2
    finally:
        await store.close()


async def test_stale_forged_and_ill_formed_updates_are_refused(setup: Setup) -> None:
    await setup.update(3, 700, 300)
    stale = setup.state(3, 600, 400)
    status, body = await setup.post("proposals", {"state": codec.to_builtins(stale), "signature": setup.sign("cons", stale)})
    assert (status, body["error"]["code"]) == (409, "stale_state")
    newer = setup.state(4, 600, 400)
    status, body = await setup.post("proposals", {"state": codec.to_builtins(newer),
                                                  "signature": setup.sign("ret", newer)})
    assert (status, body["error"]["code"]) == (422, "bad_cosignature")
    beyond = setup.state(4, 600, 401)
    status, body = await setup.post("proposals", {"state": codec.to_builtins(beyond),
                                                  "signature": setup.sign("cons", beyond)})
    assert (status, body["error"]["code"]) == (422, "bad_channel_state")
    await setup.post("proposals", {"state": codec.to_builtins(newer), "signature": setup.sign("cons", newer)})
    status, body = await setup.post("countersign", {"seq": 4, "signature": setup.sign("cons", newer)})
    assert (status, body["error"]["code"]) == (422, "bad_cosignature")
    status, body = await setup.post("states", {"state": codec.to_builtins(newer)})
    assert (status, body["error"]["code"]) == (400, "malformed")


async def test_the_watchtower_punishes_a_stale_close_by_itself(setup: Setup) -> None:
    await setup.update(1, 900, 100)
    await setup.update(2, 500, 500)
    # pros closes with the opening state (seq 0), though it signed seq 2, which pays it less.
    close = signed("pros", txs.ForceCloseChannel(state=setup.state(0, 1_000, 0), signature=None), nonce=1)
    assert (await setup.backend.submit([close]))[0].code is None
    setup.backend.commit_block()
    for _ in range(200):
        if setup.backend.pool:
            break
        await asyncio.sleep(0.01)
    assert setup.backend.pool, "the watchtower submitted nothing"
    setup.backend.commit_block()
    channel = setup.backend.state.channels[setup.channel_id]
    assert (channel.status, channel.paid_a_u, channel.paid_b_u) == ("settled", 1_000, 0)
    assert setup.service.challenges_submitted == 1

    trace = await (await setup.client.get(f"/v1/trace/channels/{setup.channel_id}")).json()
    roles = [entry["role"] for entry in trace["lineage"]]
    assert roles == ["opened", "close_started", "challenged", "settled"]
    for entry in trace["lineage"]:
        proof = Proof(index=entry["proof"]["index"], leaf_count=entry["proof"]["leaf_count"],
                      siblings=tuple(bytes.fromhex(s) for s in entry["proof"]["siblings"]))
        assert verify_proof(bytes.fromhex(entry["leaf"]), proof, bytes.fromhex(entry["block"]["receipts_root"]))
    assert trace["lineage"][-1]["record"]["how"] == "penalty"


async def test_a_node_without_a_channel_store_answers_503() -> None:
    app = create_api_app(MemoryBackend())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.post("/v1/channels/" + "ab" * 32 + "/proposals", json={})
        assert resp.status == 503 and (await resp.json())["error"]["code"] == "channels_unavailable"
        resp = await client.get("/v1/channels/" + "ab" * 32)
        assert resp.status == 404
