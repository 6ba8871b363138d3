"""The account and slot endpoints list settlement lines, paged; an order's receipt
names its order id and slot. Real contracts behind the API, time driven by the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from contracts import transactions as txs
from node.api.app import create_api_app
from tests.unit.api_memory_backend import SLOT_MS, T0_MS, MemoryBackend, addr, signed

SLOTS = (2, 3)


@pytest.fixture
async def env() -> AsyncIterator[tuple[MemoryBackend, TestClient[Any, Any]]]:
    backend = MemoryBackend()
    async with TestClient(TestServer(create_api_app(backend), host="127.0.0.1")) as client:
        yield backend, client


async def get(client: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    resp = await client.get(path)
    body = await resp.json()
    assert resp.status == status, body
    return body


async def submit(client: TestClient[Any, Any], raw: bytes) -> str:
    resp = await client.post("/v1/transactions", json={"raw": raw.hex()})
    assert resp.status == 202, await resp.text()
    return str((await resp.json())["tx_hash"])


async def two_settled_slots(backend: MemoryBackend, client: TestClient[Any, Any]) -> list[str]:
    """In each of SLOTS gen sells 100 Wh at 10 and cons buys 60 at 20; no readings; both settle.
    Returns the hashes of cons's bids."""
    bids = []
    for nonce, slot in enumerate(SLOTS, start=1):
        await submit(client, signed("gen", txs.PlaceOrder(slot=slot, side="sell", price_u_per_wh=10,
                                                          quantity_wh=100), nonce=nonce))
        bids.append(await submit(client, signed("cons", txs.PlaceOrder(
            slot=slot, side="buy", price_u_per_wh=20, quantity_wh=60), nonce=nonce)))
    backend.commit_block(timestamp_ms=T0_MS + 1_000)
    backend.commit_block(timestamp_ms=T0_MS + (SLOTS[-1] + 2) * SLOT_MS + 1)  # both settled
    return bids


async def test_an_order_receipt_names_its_order_id_and_slot(env: Any) -> None:
    backend, client = env
    bids = await two_settled_slots(backend, client)
    found = await get(client, f"/v1/transactions/{bids[1]}")
    assert found["status"] == "committed"
    assert found["receipt"]["order_id"] == bids[1] and found["receipt"]["slot"] == SLOTS[1]


async def test_account_lists_its_settlement_lines_newest_first_with_paging(env: Any) -> None:
    backend, client = env
    await two_settled_slots(backend, client)
    acc = await get(client, f"/v1/accounts/{addr('gen')}")
    assert [line["slot"] for line in acc["settlements"]] == [3, 2] and acc["settlements_next"] is None
    line = acc["settlements"][0]
    # Sold 60 Wh, no reading: taken to have exported nothing, so Δ = −60 at p_short.
    assert (line["contracted_wh"], line["metered_wh"], line["delta_wh"]) == (60, 0, -60)
    assert line["imbalance_u"] == -60 * backend.genesis.market.p_short
    assert line["proceeds_u"] == 600 and line["reading_missing"] is True
    assert len(line["location"]) == 2  # [height, leaf index]: provable like any record

    first = await get(client, f"/v1/accounts/{addr('gen')}?settlements_limit=1")
    assert [x["slot"] for x in first["settlements"]] == [3] and first["settlements_next"] == 3
    second = await get(client, f"/v1/accounts/{addr('gen')}?settlements_limit=1"
                               f"&settlements_before_slot={first['settlements_next']}")
    assert [x["slot"] for x in second["settlements"]] == [2] and second["settlements_next"] is None
    fresh = await get(client, f"/v1/accounts/{addr('ret')}")
    assert fresh["settlements"] == [] and fresh["settlements_next"] is None


async def test_slot_lists_its_settlement_lines_by_account_with_paging(env: Any) -> None:
    backend, client = env
    await two_settled_slots(backend, client)
    whole = await get(client, f"/v1/market/slots/{SLOTS[0]}")
    accounts = sorted((addr("gen"), addr("cons")))
    assert [x["account"] for x in whole["settlements"]] == accounts and whole["settlements_next"] is None
    buyer = next(x for x in whole["settlements"] if x["account"] == addr("cons"))
    # A net buyer without a reading is taken to have taken exactly its contract: Δ = 0.
    assert (buyer["contracted_wh"], buyer["delta_wh"], buyer["imbalance_u"]) == (-60, 0, 0)

    first = await get(client, f"/v1/market/slots/{SLOTS[0]}?settlements_limit=1")
    assert [x["account"] for x in first["settlements"]] == accounts[:1]
    assert first["settlements_next"] == accounts[0]
    rest = await get(client, f"/v1/market/slots/{SLOTS[0]}?settlements_limit=1"
                             f"&settlements_after_account={first['settlements_next']}")
    assert [x["account"] for x in rest["settlements"]] == accounts[1:] and rest["settlements_next"] is None
    empty = await get(client, f"/v1/market/slots/{SLOTS[-1] + 1}")
    assert empty["settlements"] == [] and empty["settlements_next"] is None


@pytest.mark.parametrize("query", ["settlements_limit=0", "settlements_limit=1001", "settlements_limit=x",
                                   "settlements_before_slot=-1"])
async def test_bad_settlement_paging_is_400(env: Any, query: str) -> None:
    _, client = env
    body = await get(client, f"/v1/accounts/{addr('gen')}?{query}", status=400)
    assert body["error"]["code"] == "bad_request"


async def test_bad_slot_paging_cursor_is_400(env: Any) -> None:
    _, client = env
    body = await get(client, "/v1/market/slots/2?settlements_after_account=XYZ", status=400)
    assert body["error"]["code"] == "bad_request"
