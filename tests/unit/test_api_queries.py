"""Read side of the REST API over a real contracts state: a trading day through
the API (orders, clearing, readings, settlement), then every query endpoint, the
trade lineage with inclusion proofs, the event stream, health and documents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from consensus import codec
from contracts import traceability as tr
from contracts import transactions as txs
from node.api.app import EVENT_HUB_KEY, EventHub, create_api_app
from node.cli.proof import proof_from_json, verify_trace
from tests.unit.api_memory_backend import SLOT_MS, T0_MS, MemoryBackend, addr, signed

SLOT = 2
GATE_MS = T0_MS + SLOT * SLOT_MS - 2_000
END_MS = T0_MS + (SLOT + 1) * SLOT_MS
SETTLE_MS = END_MS + 10_000


@pytest.fixture
async def env() -> AsyncIterator[tuple[MemoryBackend, TestClient[Any, Any]]]:
    backend = MemoryBackend()
    async with TestClient(TestServer(create_api_app(backend), host="127.0.0.1")) as client:
        yield backend, client


async def submit(client: TestClient[Any, Any], raw: bytes) -> str:
    resp = await client.post("/v1/transactions", json={"raw": raw.hex()})
    assert resp.status == 202, await resp.text()
    return str((await resp.json())["tx_hash"])


async def get(client: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    resp = await client.get(path)
    body = await resp.json()
    assert resp.status == status, body
    return body


async def trading_day(backend: MemoryBackend, client: TestClient[Any, Any]) -> dict[str, str]:
    """gen sells 100 Wh at 10, cons buys 60 Wh at 20 in SLOT; both read; the slot settles."""
    ask = await submit(client, signed("gen", txs.PlaceOrder(slot=SLOT, side="sell", price_u_per_wh=10,
                                                            quantity_wh=100), nonce=1))
    bid = await submit(client, signed("cons", txs.PlaceOrder(slot=SLOT, side="buy", price_u_per_wh=20,
                                                             quantity_wh=60), nonce=1))
    backend.commit_block(timestamp_ms=T0_MS + 1_000)
    backend.commit_block(timestamp_ms=GATE_MS)
    await submit(client, signed("gen", txs.SubmitReading(slot=SLOT, import_wh=0, export_wh=60), nonce=2))
    await submit(client, signed("cons", txs.SubmitReading(slot=SLOT, import_wh=60, export_wh=0), nonce=2))
    backend.commit_block(timestamp_ms=END_MS + 1_000)
    backend.commit_block(timestamp_ms=SETTLE_MS)
    return {"ask": ask, "bid": bid}


async def test_trading_day_reads_back_through_every_query(env: Any) -> None:
    backend, client = env
    ids = await trading_day(backend, client)

    slot = await get(client, f"/v1/market/slots/{SLOT}")
    assert slot["status"] == "settled"
    assert slot["price_u_per_wh"] == 10 and slot["volume_wh"] == 60
    assert len(slot["trades"]) == 1 and slot["gate_close_ms"] == GATE_MS

    bid = await get(client, f"/v1/orders/{ids['bid']}")
    assert bid["owner"] == addr("cons") and bid["filled_wh"] == 60

    trades = (await get(client, f"/v1/trades?account={addr('cons')}"))["trades"]
    assert [t["quantity_wh"] for t in trades] == [60]
    assert (await get(client, f"/v1/trades?slot={SLOT}"))["trades"] == trades
    assert (await get(client, f"/v1/trades?account={addr('cons')}&slot={SLOT + 1}"))["trades"] == []

    cons = await get(client, f"/v1/accounts/{addr('cons')}")
    assert cons["balance_u"] == 10**12 - 600 and cons["locked_u"] == 0 and cons["debt_u"] == 0
    assert cons["nonce"] == 1 and cons["meter_nonce"] == 2

    status = await get(client, "/v1/status")
    assert status["chain_id"] == "test-chain" and status["height"] == 4
    assert status["state_root"] == backend.state.root.hex()
    assert status["market"]["slot_ms"] == SLOT_MS

    latest = await get(client, "/v1/blocks/latest")
    assert latest["height"] == 4 and latest["state_root"] == backend.state.root.hex()
    first = await get(client, "/v1/blocks/1?txs=full")
    assert first["tx_count"] == 2 and first["txs"][0]["tx"]["body"]["kind"] == "place_order"
    await get(client, "/v1/blocks/99", 404)
    await get(client, "/v1/blocks/-1", 400)

    validators = (await get(client, "/v1/validators"))["validators"]
    assert [v["index"] for v in validators] == [0, 1, 2, 3]
    assert validators[0]["blocks_proposed"] == 4 and validators[0]["leader_share_ppm"] == 1_000_000
    assert validators[0]["credit"] == backend.state.credit.credits[0]
    assert validators[0]["window_led"] == 4 and validators[0]["window_failed"] == 0


async def test_trace_returns_lineage_whose_proofs_verify_against_block_roots(env: Any) -> None:
    backend, client = env
    await trading_day(backend, client)
    trade_id = next(iter(backend.state.trades))
    trace = await get(client, f"/v1/trace/trades/{trade_id}")
    roles = [e["role"] for e in trace["lineage"]]
    assert roles == ["buy_order", "sell_order", "clearing", "trade", "buyer_reading", "seller_reading",
                     "buyer_settlement", "seller_settlement"]
    for entry in trace["lineage"]:
        proof = proof_from_json(entry["proof"])
        root = bytes.fromhex(entry["block"]["receipts_root"])
        leaf = bytes.fromhex(entry["leaf"])
        assert root == backend.blocks[entry["location"]["height"] - 1].receipts_root
        assert tr.verify_proof(leaf, proof, root), entry["role"]
        assert not tr.verify_proof(leaf[:-1] + bytes([leaf[-1] ^ 1]), proof, root)
    assert trace["lineage"][3]["record"]["quantity_wh"] == 60
    assert all(r["ok"] for r in verify_trace(trace))
    tampered = orjson.loads(orjson.dumps(trace))
    tampered["lineage"][3]["record"]["quantity_wh"] = 61
    results = verify_trace(tampered)
    assert [r["ok"] for r in results].count(False) == 1
    assert results[3]["reason"] == "displayed record differs from the proven leaf"
    wrong_root = {e["location"]["height"]: b"\1" * 32 for e in trace["lineage"]}
    assert not any(r["ok"] for r in verify_trace(trace, roots=wrong_root))
    await get(client, "/v1/trace/trades/99-0", 404)
    assert (await get(client, "/v1/trace/trades/no-such-trade", 400))["error"]["code"] == "bad_request"


async def test_dispatch_query_filters_by_account(env: Any) -> None:
    backend, client = env
    await submit(client, signed("grid", txs.IssueDispatch(
        account=addr("gen"), direction="curtail", amount_wh=50, deadline_ms=T0_MS + 60_000, penalty_u=7),
        nonce=1))
    backend.commit_block(timestamp_ms=T0_MS + 1_000)
    found = (await get(client, f"/v1/dispatch?account={addr('gen')}"))["dispatch"]
    assert [(d["account"], d["amount_wh"], d["status"]) for d in found] == [(addr("gen"), 50, "issued")]
    assert (await get(client, f"/v1/dispatch?account={addr('cons')}"))["dispatch"] == []


async def test_bad_query_parameters_are_400_and_unknown_records_404(env: Any) -> None:
    _, client = env
    for path in ("/v1/accounts/xyz", "/v1/market/slots/abc", "/v1/orders/12", "/v1/trades?slot=-3",
                 "/v1/trades?account=ABC", "/v1/dispatch?account=1", "/v1/events?topics=nope"):
        body = await get(client, path, 400)
        assert body["error"]["code"] == "bad_request", path
    assert (await get(client, "/v1/accounts/" + "0" * 40, 404))["error"]["code"] == "not_found"
    assert (await get(client, "/v1/orders/" + "0" * 64, 404))["error"]["code"] == "not_found"
    assert (await get(client, "/v1/nothing", 404))["error"]["code"] == "not_found"
    resp = await client.delete("/v1/status")
    assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_health_readiness_openapi_and_web_page(env: Any) -> None:
    backend, client = env
    assert (await get(client, "/healthz"))["status"] == "ok"
    assert (await get(client, "/readyz"))["status"] == "ready"
    backend.is_ready = False
    assert (await get(client, "/readyz", 503))["error"]["code"] == "not_ready"
    doc = await get(client, "/openapi.json")
    assert doc["openapi"].startswith("3.")
    assert "/v1/transactions" in doc["paths"] and "Tx" in doc["components"]["schemas"]
    assert "/v1/trace/trades/{trade_id}" in doc["paths"]
    page = await client.get("/")
    assert page.status == 200 and "GridChain" in await page.text()
    js = await client.get("/web/app.js")
    assert js.status == 200 and "/web/view_market.js" in await js.text()
    api = await client.get("/web/api.js")
    assert api.headers["Content-Type"].startswith("text/javascript") and "/v1/status" in await api.text()
    for missing in ("/web/../api.py", "/web/nope.js", "/web/__init__.py", "/web/.hidden.js"):
        assert (await client.get(missing)).status == 404, missing


async def test_event_stream_filters_by_topic_and_account(env: Any) -> None:
    backend, client = env
    async with client.ws_connect(f"/v1/events?topics=txs,trades&account={addr('cons')}") as ws:
        await trading_day(backend, client)
        seen = []
        while len(seen) < 3:
            msg = await ws.receive(timeout=5)
            assert msg.type == WSMsgType.TEXT
            seen.append(orjson.loads(msg.data))
    assert [e["type"] for e in seen] == ["tx", "trade", "tx"]
    assert all(e["sender"] == addr("cons") for e in seen if e["type"] == "tx")
    assert seen[1]["buyer"] == addr("cons") and seen[1]["quantity_wh"] == 60
    assert client.app[EVENT_HUB_KEY] is not None


async def test_blocks_topic_streams_every_block(env: Any) -> None:
    backend, client = env
    async with client.ws_connect("/v1/events?topics=blocks") as ws:
        committed = backend.commit_block(timestamp_ms=T0_MS + 5)
        msg = orjson.loads((await ws.receive(timeout=5)).data)
    assert msg == {"type": "block", "height": 1, "block_id": committed.block_id.hex(), "round": 1,
                   "timestamp_ms": T0_MS + 5, "tx_count": 0, "state_root": committed.state_root.hex()}


async def test_slow_subscriber_is_dropped_not_waited_for() -> None:
    backend = MemoryBackend()
    hub = EventHub(queue_size=2, max_subscribers=4)
    slow = hub.subscribe(topics=frozenset({"blocks"}), account=None)
    fast = hub.subscribe(topics=frozenset({"blocks"}), account=None)
    backend.add_listener(hub.on_block)
    for i in range(2):
        backend.commit_block(timestamp_ms=T0_MS + i + 1)
        await fast.queue.get()
    backend.commit_block(timestamp_ms=T0_MS + 10)
    assert slow.dropped and not fast.dropped
    assert len(hub) == 1 and hub.dropped_total == 1
    items = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert items[-1] is None, "the dropped subscriber's stream ends with the end marker"


async def test_subscriber_limit_is_503() -> None:
    backend = MemoryBackend()
    server = TestServer(create_api_app(backend, max_subscribers=1), host="127.0.0.1")
    async with TestClient(server) as client, client.ws_connect("/v1/events"):
        resp = await client.get("/v1/events")
        assert resp.status == 503
        assert (await resp.json())["error"]["code"] == "too_many_subscribers"


def test_block_ids_are_digests_of_headers() -> None:
    backend = MemoryBackend()
    committed = backend.commit_block(timestamp_ms=T0_MS + 1)
    assert committed.block_id == codec.digest_of(committed.block.header)


async def test_closed_event_connection_unsubscribes(env: Any) -> None:
    backend, client = env
    hub = client.app[EVENT_HUB_KEY]
    async with client.ws_connect("/v1/events?topics=blocks") as ws:
        backend.commit_block(timestamp_ms=T0_MS + 1)
        await ws.receive(timeout=5)
        assert len(hub) == 1
    for _ in range(100):
        if len(hub) == 0:
            break
        await asyncio.sleep(0.01)
    assert len(hub) == 0, "a closed connection must not keep its subscription"


async def test_trades_limit_returns_the_most_recent_oldest_first(env: Any) -> None:
    backend, client = env
    nonce = 0
    for slot in (2, 3):
        for qty in (10, 20):
            nonce += 1
            await submit(client, signed("gen", txs.PlaceOrder(slot=slot, side="sell", price_u_per_wh=5,
                                                              quantity_wh=qty), nonce=nonce))
            await submit(client, signed("cons", txs.PlaceOrder(slot=slot, side="buy", price_u_per_wh=9,
                                                               quantity_wh=qty), nonce=nonce))
    backend.commit_block(timestamp_ms=T0_MS + 1_000)
    backend.commit_block(timestamp_ms=T0_MS + 3 * SLOT_MS)
    every = (await get(client, "/v1/trades"))["trades"]
    assert [(t["slot"], t["quantity_wh"]) for t in every] == [(2, 10), (2, 20), (3, 10), (3, 20)]
    last = (await get(client, f"/v1/trades?account={addr('gen')}&limit=3"))["trades"]
    assert last == every[1:]
    assert (await get(client, "/v1/trades?slot=3&limit=1"))["trades"] == every[3:]


async def test_account_stream_includes_transactions_naming_the_account(env: Any) -> None:
    backend, client = env
    async with client.ws_connect(f"/v1/events?topics=txs&account={addr('gen')}") as ws:
        await submit(client, signed("cons", txs.Transfer(to=addr("gen"), amount_u=3), nonce=1))
        await submit(client, signed("cons", txs.Transfer(to=addr("pros"), amount_u=3), nonce=2))
        await submit(client, signed("grid", txs.Mint(to=addr("gen"), amount_u=3), nonce=1))
        backend.commit_block(timestamp_ms=T0_MS + 1)
        got = [orjson.loads((await ws.receive(timeout=5)).data) for _ in range(2)]
    assert [(e["kind"], e["sender"]) for e in got] == [("transfer", addr("cons")), ("mint", addr("grid"))]


async def test_a_slot_without_orders_reads_its_status_from_block_time(env: Any) -> None:
    backend, client = env
    assert (await get(client, f"/v1/market/slots/{SLOT}"))["status"] == "open"
    backend.commit_block(timestamp_ms=GATE_MS)
    assert (await get(client, f"/v1/market/slots/{SLOT}"))["status"] == "cleared"
    backend.commit_block(timestamp_ms=SETTLE_MS)
    empty = await get(client, f"/v1/market/slots/{SLOT}")
    assert empty["status"] == "settled" and empty["volume_wh"] == 0 and empty["trades"] == []


def test_openapi_document_lists_every_route() -> None:
    from node.api.openapi import openapi_document

    app = create_api_app(MemoryBackend())
    routes = {r.canonical for r in app.router.resources()}
    documented = set(openapi_document()["paths"])
    assert routes - {"/", "/web/{name}", "/openapi.json"} == documented
