"""The browse lists over a real contracts state: a slot with three trades pages back newest
first without repeats, an account's open orders and readings, a slot's book, the price
history, and accounts filtered by status; every answer matches its OpenAPI schema's fields."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from contracts import transactions as txs
from node.api.app import create_api_app
from node.api.openapi import openapi_document
from tests.unit.api_memory_backend import T0_MS, MemoryBackend, addr, signed
from tests.unit.test_api_queries import END_MS, GATE_MS, SETTLE_MS, SLOT, get, submit


@pytest.fixture
async def env() -> AsyncIterator[tuple[MemoryBackend, TestClient[Any, Any]]]:
    backend = MemoryBackend()
    async with TestClient(TestServer(create_api_app(backend), host="127.0.0.1")) as client:
        yield backend, client


async def three_trades(backend: MemoryBackend, client: TestClient[Any, Any]) -> None:
    """gen sells 30 Wh as three asks that three bids of cons and pros take; one bid of cons
    for a later slot stays open; gen and cons read, the slot settles."""
    for n, price in enumerate((10, 11, 12), start=1):
        await submit(client, signed("gen", txs.PlaceOrder(slot=SLOT, side="sell", price_u_per_wh=price,
                                                          quantity_wh=10), nonce=n))
    await submit(client, signed("cons", txs.PlaceOrder(slot=SLOT, side="buy", price_u_per_wh=20,
                                                       quantity_wh=20), nonce=1))
    await submit(client, signed("pros", txs.PlaceOrder(slot=SLOT, side="buy", price_u_per_wh=20,
                                                       quantity_wh=10), nonce=1))
    await submit(client, signed("cons", txs.PlaceOrder(slot=SLOT + 5, side="buy", price_u_per_wh=5,
                                                       quantity_wh=7), nonce=2))
    backend.commit_block(timestamp_ms=T0_MS + 1_000)
    backend.commit_block(timestamp_ms=GATE_MS)
    await submit(client, signed("cons", txs.SubmitReading(slot=SLOT, import_wh=20, export_wh=0), nonce=3))
    backend.commit_block(timestamp_ms=END_MS + 1_000)
    backend.commit_block(timestamp_ms=SETTLE_MS)


async def test_recent_trades_page_newest_first_without_repeats(env: Any) -> None:
    backend, client = env
    await three_trades(backend, client)
    seen: list[str] = []
    page = await get(client, "/v1/market/trades?limit=2")
    seen += [t["trade_id"] for t in page["trades"]]
    assert page["next"] == seen[-1]
    page = await get(client, f"/v1/market/trades?limit=2&before={page['next']}")
    seen += [t["trade_id"] for t in page["trades"]]
    assert page["next"] is None
    count = (await get(client, f"/v1/market/slots/{SLOT}"))["trade_count"]
    assert seen == [f"{SLOT}-{k}" for k in reversed(range(count))] and count >= 3


async def test_account_lists_and_slot_book(env: Any) -> None:
    backend, client = env
    await three_trades(backend, client)
    open_orders = (await get(client, f"/v1/accounts/{addr('cons')}/orders"))["orders"]
    assert [(o["slot"], o["quantity_wh"], o["status"]) for o in open_orders] == [(SLOT + 5, 7, "open")]
    readings = (await get(client, f"/v1/accounts/{addr('cons')}/readings"))["readings"]
    assert [(r["slot"], r["import_wh"]) for r in readings] == [(SLOT, 20)]
    book = await get(client, f"/v1/market/slots/{SLOT}/orders")
    assert sorted(o["side"] for o in book["orders"]) == ["buy", "buy", "sell", "sell", "sell"]
    history = (await get(client, "/v1/market/history"))["slots"]
    assert [(h["slot"], h["status"], h["volume_wh"]) for h in history] == [(SLOT, "settled", 30)]


async def test_accounts_filter_by_status_and_page_by_address(env: Any) -> None:
    _, client = env
    everyone = await get(client, "/v1/accounts?limit=1000")
    addresses = [a["address"] for a in everyone["accounts"]]
    assert addresses == sorted(addresses) and everyone["next"] is None
    first = await get(client, "/v1/accounts?limit=2&status=active")
    rest = await get(client, f"/v1/accounts?limit=1000&status=active&after={first['next']}")
    assert [a["address"] for a in first["accounts"] + rest["accounts"]] == addresses
    assert (await get(client, "/v1/accounts?status=pending"))["accounts"] == []
    assert [a["address"] for a in (await get(client, f"/v1/accounts?address={addr('cons')}"))["accounts"]] \
        == [addr("cons")]
    assert (await get(client, f"/v1/accounts?address={'0' * 40}"))["accounts"] == []
    assert (await get(client, "/v1/accounts?in_debt=true"))["accounts"] == []
    for bad in ("status=gone", "in_debt=1", "limit=0", "limit=1001", "after=xyz", "after=", "address="):
        await get(client, f"/v1/accounts?{bad}", status=400)
    await get(client, "/v1/market/trades?before=7", status=400)


async def test_an_accounts_channels_list_the_channels_it_is_a_party_of_newest_first(env: Any) -> None:
    backend, client = env
    first = await submit(client, signed("cons", txs.OpenChannel(counterparty=addr("pros"), deposit_u=100,
                                                                challenge_slots=3), nonce=1))
    backend.commit_block(timestamp_ms=T0_MS + 1_000)
    second = await submit(client, signed("gen", txs.OpenChannel(counterparty=addr("cons"), deposit_u=50,
                                                               challenge_slots=2), nonce=1))
    backend.commit_block(timestamp_ms=T0_MS + 2_000)
    mine = (await get(client, f"/v1/accounts/{addr('cons')}/channels"))["channels"]
    assert [(c["channel_id"], c["party_a"], c["deposit_a_u"]) for c in mine] == [
        (second, addr("gen"), 50), (first, addr("cons"), 100)]
    assert [c["channel_id"] for c in (await get(client, f"/v1/accounts/{addr('pros')}/channels"))["channels"]] \
        == [first]
    assert (await get(client, f"/v1/accounts/{addr('cons')}/channels?limit=1"))["channels"][0]["channel_id"] \
        == second
    await get(client, f"/v1/accounts/{addr('cons')}/channels?limit=0", status=400)
    await get(client, "/v1/accounts/XYZ/channels", status=400)


def test_browse_answers_are_documented() -> None:
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    for path, name in (("/v1/accounts", "AccountsPage"), ("/v1/market/trades", "TradesPage"),
                       ("/v1/market/history", "SlotHistory"), ("/v1/market/slots/{slot}/orders", "SlotBook"),
                       ("/v1/accounts/{address}/channels", "ChannelList")):
        op = doc["paths"][path]["get"]
        assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(name)
        assert name in schemas
