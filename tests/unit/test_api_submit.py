"""POST /v1/transactions: accepted input gets 202 with its hash; every kind of bad
input gets a 4xx with a stable code and changes nothing (state root, pool, nonce)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from consensus import codec
from contracts import transactions as txs
from node.api.app import create_api_app
from tests.unit.api_memory_backend import SIGNERS, SLOT_MS, T0_MS, MemoryBackend, addr, signed

MAX_BODY = 64 * 1024


@pytest.fixture
async def env() -> AsyncIterator[tuple[MemoryBackend, TestClient[Any, Any]]]:
    backend = MemoryBackend(capacity=50)
    app = create_api_app(backend, max_body_bytes=MAX_BODY, max_batch_txs=100)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield backend, client


def transfer(nonce: int, *, name: str = "cons", amount_u: int = 5, **kw: Any) -> bytes:
    return signed(name, txs.Transfer(to=addr("gen"), amount_u=amount_u), nonce=nonce, **kw)


def snapshot(backend: MemoryBackend) -> tuple[bytes, int, int]:
    return backend.state.root, len(backend.pool), backend.state.accounts[addr("cons")].nonce


async def post_json(client: TestClient[Any, Any], body: Any) -> tuple[int, Any]:
    resp = await client.post("/v1/transactions", data=orjson.dumps(body),
                             headers={"Content-Type": "application/json"})
    return resp.status, await resp.json()


async def expect_rejected(env: Any, body: Any, status: int, code: str, *, raw_body: bytes | None = None,
                          content_type: str = "application/json") -> dict[str, Any]:
    backend, client = env
    before = snapshot(backend)
    data = raw_body if raw_body is not None else orjson.dumps(body)
    resp = await client.post("/v1/transactions", data=data, headers={"Content-Type": content_type})
    out = await resp.json()
    assert resp.status == status, out
    assert out["error"]["code"] == code, out
    assert out["error"]["message"]
    assert snapshot(backend) == before
    return out  # type: ignore[no-any-return]


async def test_raw_and_json_forms_are_accepted_with_the_same_hash(env: Any) -> None:
    backend, client = env
    raw = transfer(1)
    status, out = await post_json(client, {"raw": raw.hex()})
    assert status == 202 and out == {"tx_hash": codec.digest(raw).hex()}
    stx = txs.decode_signed_tx(raw)
    status, out2 = await post_json(client, {"tx": txs.tx_to_json(stx.tx), "signature": stx.signature.hex()})
    assert status == 202 and out2 == out
    assert list(backend.pool) == [codec.digest(raw)]


async def test_batch_json_reports_each_transaction(env: Any) -> None:
    backend, client = env
    good, bad = transfer(1), transfer(2, chain_id="other-chain")
    status, out = await post_json(client, {"transactions": [{"raw": good.hex()}, {"raw": bad.hex()}]})
    assert status == 202
    assert out["accepted"] == 1 and out["rejected"] == 1
    assert out["results"][0] == {"tx_hash": codec.digest(good).hex()}
    assert out["results"][1]["error"]["code"] == "wrong_chain"
    assert backend.submit_calls == 1, "a batch reaches the backend in one call"


async def test_msgpack_batch_is_accepted(env: Any) -> None:
    backend, client = env
    raws = [transfer(n) for n in range(1, 11)]
    resp = await client.post("/v1/transactions", data=msgspec.msgpack.encode(raws),
                             headers={"Content-Type": "application/msgpack"})
    out = await resp.json()
    assert resp.status == 202 and out["accepted"] == 10
    assert [r["tx_hash"] for r in out["results"]] == [codec.digest(r).hex() for r in raws]
    assert len(backend.pool) == 10


async def test_malformed_json_is_400_malformed(env: Any) -> None:
    await expect_rejected(env, None, 400, "malformed", raw_body=b'{"raw": "00"')


async def test_malformed_msgpack_is_400_malformed(env: Any) -> None:
    await expect_rejected(env, None, 400, "malformed", raw_body=b"\xc1garbage",
                          content_type="application/msgpack")


async def test_wrong_types_are_400_malformed(env: Any) -> None:
    stx = txs.decode_signed_tx(transfer(1))
    tx = txs.tx_to_json(stx.tx)
    tx["nonce"] = "1"
    await expect_rejected(env, {"tx": tx, "signature": stx.signature.hex()}, 400, "malformed")
    await expect_rejected(env, {"raw": 12}, 400, "malformed")
    await expect_rejected(env, [1, 2, 3], 400, "malformed")
    await expect_rejected(env, {"raw": "zz"}, 400, "malformed")


async def test_floats_are_400_malformed(env: Any) -> None:
    stx = txs.decode_signed_tx(transfer(1))
    tx = txs.tx_to_json(stx.tx)
    tx["body"]["amount_u"] = 5.0
    await expect_rejected(env, {"tx": tx, "signature": stx.signature.hex()}, 400, "malformed")
    tx = txs.tx_to_json(stx.tx)
    tx["nonce"] = 1.5
    await expect_rejected(env, {"tx": tx, "signature": stx.signature.hex()}, 400, "malformed")


async def test_unknown_fields_are_400_malformed(env: Any) -> None:
    stx = txs.decode_signed_tx(transfer(1))
    tx = txs.tx_to_json(stx.tx)
    tx["body"]["extra"] = 1
    await expect_rejected(env, {"tx": tx, "signature": stx.signature.hex()}, 400, "malformed")


async def test_oversized_body_is_413_body_too_large(env: Any) -> None:
    await expect_rejected(env, None, 413, "body_too_large", raw_body=b'{"raw": "' + b"00" * MAX_BODY + b'"}')


async def test_too_many_transactions_is_400_batch_too_large(env: Any) -> None:
    raws = [{"raw": transfer(n).hex()} for n in range(1, 102)]
    await expect_rejected(env, {"transactions": raws}, 400, "batch_too_large")


async def test_bad_signature_is_400_bad_signature(env: Any) -> None:
    stx = txs.decode_signed_tx(transfer(1))
    forged = bytes([stx.signature[0] ^ 1]) + stx.signature[1:]
    raw = codec.encode(txs.SignedTxWire(tx_bytes=stx.tx_bytes, signature=forged))
    await expect_rejected(env, {"raw": raw.hex()}, 400, "bad_signature")


async def test_wrong_chain_id_is_400_wrong_chain(env: Any) -> None:
    await expect_rejected(env, {"raw": transfer(1, chain_id="other-chain").hex()}, 400, "wrong_chain")


async def test_expired_is_400_expired(env: Any) -> None:
    backend, _ = env
    await expect_rejected(env, {"raw": transfer(1, expires_at_ms=backend.now_ms).hex()}, 400, "expired")


async def test_replaying_a_committed_transaction_is_idempotent_and_reusing_its_nonce_is_409(env: Any) -> None:
    backend, client = env
    raw = transfer(1)
    assert (await post_json(client, {"raw": raw.hex()}))[0] == 202
    backend.commit_block()
    before = snapshot(backend)
    assert await post_json(client, {"raw": raw.hex()}) == (202, {"tx_hash": codec.digest(raw).hex()})
    assert snapshot(backend) == before, "a byte-identical replay changes nothing"
    await expect_rejected(env, {"raw": transfer(1, amount_u=6).hex()}, 409, "stale_nonce")


async def test_stale_nonce_is_409_stale_nonce(env: Any) -> None:
    backend, client = env
    assert (await post_json(client, {"raw": transfer(7).hex()}))[0] == 202
    backend.commit_block()
    await expect_rejected(env, {"raw": transfer(7, amount_u=9).hex()}, 409, "stale_nonce")
    await expect_rejected(env, {"raw": transfer(3).hex()}, 409, "stale_nonce")


async def test_unknown_account_is_403_not_registered(env: Any) -> None:
    await expect_rejected(env, {"raw": transfer(1, name="stranger").hex()}, 403, "not_registered")


async def test_signing_for_another_account_is_403_wrong_signer(env: Any) -> None:
    raw = signed("gen", txs.Transfer(to=addr("gen"), amount_u=1), nonce=1, sender=addr("cons"))
    await expect_rejected(env, {"raw": raw.hex()}, 403, "wrong_signer")


async def test_unauthorised_mint_is_403_unauthorized(env: Any) -> None:
    raw = signed("cons", txs.Mint(to=addr("cons"), amount_u=10**9), nonce=1)
    await expect_rejected(env, {"raw": raw.hex()}, 403, "unauthorized")


async def test_consumer_selling_is_rejected_at_admission(env: Any) -> None:
    raw = signed("cons", txs.PlaceOrder(slot=5, side="sell", price_u_per_wh=10, quantity_wh=5), nonce=1)
    out = await expect_rejected(env, {"raw": raw.hex()}, 422, "role_not_allowed")
    assert "sell" in out["error"]["message"] or out["error"]["message"]


def order(slot: int, *, nonce: int = 1, expires_at_ms: int = T0_MS + 10**9) -> bytes:
    return signed("cons", txs.PlaceOrder(slot=slot, side="buy", price_u_per_wh=10, quantity_wh=5),
                  nonce=nonce, expires_at_ms=expires_at_ms)


async def test_orders_that_can_never_succeed_are_refused_at_submit(env: Any) -> None:
    backend, client = env
    backend.commit_block(timestamp_ms=T0_MS + 3 * SLOT_MS)  # slot 3 is current, slot 4 still open
    horizon = 3 + backend.genesis.market.max_horizon_slots
    soon = T0_MS + 9 * SLOT_MS + 1  # the last block time it can run at is slot 9's first ms
    for slot in (0, 2, 3):
        out = await expect_rejected(env, {"raw": order(slot, expires_at_ms=soon).hex()}, 422, "slot_closed")
        assert f"slot {slot}" in out["error"]["message"]
    await expect_rejected(env, {"raw": order(horizon + 7, expires_at_ms=soon).hex()}, 422, "beyond_horizon")
    await expect_rejected(env, {"raw": order(10_000, expires_at_ms=soon).hex()}, 422, "beyond_horizon")
    # Within the horizon just before it expires: it may still succeed, so it is admitted.
    assert (await post_json(client, {"raw": order(horizon + 6, expires_at_ms=soon).hex()}))[0] == 202
    assert (await post_json(client, {"raw": order(4, nonce=2, expires_at_ms=soon).hex()}))[0] == 202


async def test_slots_beyond_the_horizon_are_404(env: Any) -> None:
    backend, client = env
    last = backend.genesis.market.max_horizon_slots
    assert (await client.get(f"/v1/market/slots/{last}")).status == 200
    resp = await client.get(f"/v1/market/slots/{last + 1}")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "beyond_horizon"
    resp = await client.get("/v1/market/slots/99999999")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "beyond_horizon"
    backend.commit_block(timestamp_ms=T0_MS + SLOT_MS)  # the horizon moves with block time
    assert (await client.get(f"/v1/market/slots/{last + 1}")).status == 200


async def test_full_mempool_is_503_mempool_full_with_retry_after(env: Any) -> None:
    backend, client = env
    backend.capacity = 0
    before = snapshot(backend)
    resp = await client.post("/v1/transactions", data=orjson.dumps({"raw": transfer(1).hex()}),
                             headers={"Content-Type": "application/json"})
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "mempool_full"
    assert resp.headers["Retry-After"] == "1"
    assert snapshot(backend) == before


async def test_unsupported_media_type_is_415(env: Any) -> None:
    await expect_rejected(env, None, 415, "unsupported_media_type", raw_body=b"x", content_type="text/plain")


async def test_resubmitting_a_pending_transaction_is_idempotent(env: Any) -> None:
    backend, client = env
    raw = transfer(1)
    first = await post_json(client, {"raw": raw.hex()})
    second = await post_json(client, {"raw": raw.hex()})
    assert first == second == (202, {"tx_hash": codec.digest(raw).hex()})
    assert len(backend.pool) == 1


async def test_committed_transaction_reads_back_with_its_receipt(env: Any) -> None:
    backend, client = env
    raw = transfer(1)
    tx_hash = codec.digest(raw).hex()
    await post_json(client, {"raw": raw.hex()})
    resp = await client.get(f"/v1/transactions/{tx_hash}")
    assert (await resp.json())["status"] == "pending"
    backend.commit_block()
    out = await (await client.get(f"/v1/transactions/{tx_hash}")).json()
    assert out["status"] == "committed" and out["height"] == 1 and out["index"] == 0
    assert out["receipt"]["ok"] is True and out["receipt"]["code"] == "ok"


async def test_failed_transaction_reads_back_as_failed_with_its_code(env: Any) -> None:
    backend, client = env
    raw = signed("cons", txs.Transfer(to=addr("gen"), amount_u=10**15), nonce=1)
    assert (await post_json(client, {"raw": raw.hex()}))[0] == 202
    backend.commit_block()
    out = await (await client.get(f"/v1/transactions/{codec.digest(raw).hex()}")).json()
    assert out["status"] == "failed"
    assert out["receipt"]["code"] == "insufficient_balance"
    # A failed tx uses up its nonce: its bytes can never be included again.
    assert backend.state.accounts[addr("cons")].nonce == 1


async def test_unknown_and_bad_transaction_hashes(env: Any) -> None:
    _, client = env
    resp = await client.get("/v1/transactions/" + "ab" * 32)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await client.get("/v1/transactions/xyz")
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_request"


def test_signers_are_distinct() -> None:
    assert len({s.public_key for s in SIGNERS.values()}) == len(SIGNERS)


async def test_large_json_batch_and_full_block_render_off_the_loop() -> None:
    backend = MemoryBackend(capacity=1_000)
    raws = [transfer(n) for n in range(1, 301)]
    body = orjson.dumps({"transactions": [{"raw": r.hex()} for r in raws]})
    assert len(body) > 200 * 512, "large enough to take the worker-thread path"
    async with TestClient(TestServer(create_api_app(backend), host="127.0.0.1")) as client:
        resp = await client.post("/v1/transactions", data=body, headers={"Content-Type": "application/json"})
        assert resp.status == 202 and (await resp.json())["accepted"] == 300
        backend.commit_block()
        block = await (await client.get("/v1/blocks/1?txs=full")).json()
    assert block["tx_count"] == 300
    assert [t["hash"] for t in block["txs"]] == [codec.digest(r).hex() for r in raws]
