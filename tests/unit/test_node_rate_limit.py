"""node.api.rate_limit and its use by the API and the backend: token buckets per client
address and per unregistered sender, 429 rate_limited with Retry-After, bounded memory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from consensus import codec, crypto
from contracts.transactions import RegisterRequest, Transfer, Tx, sign_tx
from node.api.app import create_api_app
from node.api.rate_limit import RateLimiter, TokenBuckets, retry_after_header
from node.chain.backend import Backend
from node.ops.config import NodeConfig
from node.ops.keys import load_key_file
from tests.unit.api_memory_backend import MemoryBackend, addr, signed
from tests.unit.node_harness import make_node


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_min=6, burst=3, max_buckets=10, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(10.0)  # one token per 10 s
    assert buckets.take("b") == 0.0  # another key has its own bucket
    clock.t += 9.0
    assert buckets.take("a") == pytest.approx(1.0)  # a refusal spends nothing
    clock.t += 1.0
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    clock.t += 3_600
    assert [buckets.take("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # refill stops at the burst


def test_buckets_are_bounded_least_recently_used_first() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_min=6, burst=1, max_buckets=100, clock=clock)
    assert buckets.take("hot") == 0.0
    for i in range(10_000):
        buckets.take(f"key-{i}")
        if i % 50 == 0:
            buckets.take("hot")  # kept: recently used
    assert len(buckets) == 100
    assert buckets.take("hot") > 0, "an active bucket was evicted"


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [retry_after_header(w) for w in (0.01, 1.0, 1.2, 59.5)] == ["1", "1", "2", "60"]


def test_limits_come_from_the_node_config_and_zero_turns_one_off() -> None:
    config = NodeConfig(name="n", role="grid", node_id=0)
    assert (config.rate_limit_client_per_min, config.rate_limit_client_burst) == (600, 100)
    assert (config.rate_limit_sender_per_min, config.rate_limit_sender_burst) == (6, 3)
    limiter = RateLimiter.from_config(msgspec.structs.replace(config, rate_limit_sender_per_min=0))
    assert limiter.client is not None and limiter.sender is None


async def test_the_api_answers_429_with_retry_after_per_client_address() -> None:
    """Setup: 60/min burst 2 per client. Check: two submissions pass, the third is 429
    rate_limited with Retry-After and reaches nothing; reads are never limited."""
    backend = MemoryBackend(capacity=50)
    limiter = RateLimiter(client=TokenBuckets(per_min=60, burst=2, max_buckets=10), sender=None)
    app = create_api_app(backend, rate_limiter=limiter)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        statuses = []
        for nonce in (1, 2, 3):
            raw = signed("cons", Transfer(to=addr("gen"), amount_u=1), nonce=nonce)
            resp = await client.post("/v1/transactions", data=orjson.dumps({"raw": raw.hex()}),
                                     headers={"Content-Type": "application/json"})
            statuses.append(resp.status)
            body = await resp.json()
        assert statuses == [202, 202, 429]
        assert body["error"]["code"] == "rate_limited"
        assert resp.headers["Retry-After"] == "1"
        assert len(backend.pool) == 2
        for _ in range(5):
            assert (await client.get("/healthz")).status == 200


@pytest.fixture
async def node(tmp_path: Path) -> Any:
    n = make_node(tmp_path, capacity=1000, account_limit=100, rate_limit_client_per_min=60,
                  rate_limit_client_burst=5)
    backend = n.backend
    backend.start()
    async with TestClient(TestServer(create_api_app(backend, rate_limiter=backend.rate_limiter),
                                     host="127.0.0.1")) as client:
        yield backend, client, n.accounts
    await backend.stop()
    await n.driver.stop()
    await n.storage.close()


def _registration(backend: Backend, seed: bytes, *, expires_ms: int, nonce: int = 1) -> bytes:
    signer = crypto.Signer(codec.digest(seed))
    tx = Tx(chain_id=backend.chain_id, sender=crypto.address(signer.public_key), public_key=signer.public_key,
            nonce=nonce, expires_at_ms=expires_ms, body=RegisterRequest(role="consumer", zone="z1", name="newcomer"))
    return sign_tx(tx, signer)


async def _post(client: Any, raws: list[bytes]) -> tuple[int, Any, Any]:
    resp = await client.post("/v1/transactions", data=orjson.dumps({"transactions": [{"raw": r.hex()} for r in raws]}),
                             headers={"Content-Type": "application/json"})
    return resp.status, await resp.json(), resp.headers


async def test_an_unregistered_key_gets_its_burst_then_429(node: Any) -> None:
    """Setup: one fresh key sends 5 registration requests (nonces 1..5: the mempool takes
    one per nonce), one per request. Check: 3 are admitted (sender burst), the 4th and 5th are
    429 rate_limited with Retry-After 10 s (6/min), the pool holds 3, the metric counts 2."""
    backend, client, _ = node
    backend.rate_limiter.client = None  # this test is about the per-sender limit alone
    expires = int(time.time() * 1000) + 60_000
    answers = []
    for i in range(5):
        raw = _registration(backend, b"applicant", expires_ms=expires, nonce=i + 1)
        status, body, headers = await _post(client, [raw])
        answers.append((status, body["results"][0].get("error", {}).get("code")))
    assert answers == [(202, None)] * 3 + [(429, "rate_limited")] * 2
    assert headers["Retry-After"] == "10"
    assert len(backend.mempool) == 3
    assert backend.metrics.rate_limited.labels(limit="sender")._value.get() == 2


async def test_fresh_keys_from_one_address_are_bounded_members_are_not(node: Any) -> None:
    """Setup: client burst 5. One batch of 20 registrations from 20 fresh keys, then a
    member's batch of transfers. Check: 4 registrations pass (1 token for the request, 1
    per fresh key), 16 are rate_limited inside a 202 with Retry-After; the member's batch is
    then refused as a whole only once the address' bucket is empty, never per transaction."""
    backend, client, accounts = node
    expires = int(time.time() * 1000) + 60_000
    raws = [_registration(backend, f"key-{i}".encode(), expires_ms=expires) for i in range(20)]
    status, body, headers = await _post(client, raws)
    assert status == 202 and body["accepted"] == 4, body
    codes = [item.get("error", {}).get("code") for item in body["results"]]
    assert codes.count("rate_limited") == 16 and "Retry-After" in headers
    assert len(backend.mempool) == 4
    # The address' bucket is empty now: the next request is refused before parsing.
    key = load_key_file(accounts["consumer-1"]["key_file"])
    transfers = [sign_tx(Tx(chain_id=backend.chain_id, sender=key.address, public_key=key.public_key, nonce=n,
                            expires_at_ms=expires, body=Transfer(to=accounts["consumer-2"]["address"], amount_u=1)),
                         key.signer) for n in range(1, 31)]
    status, body, headers = await _post(client, transfers)
    assert status == 429 and body["error"]["code"] == "rate_limited" and int(headers["Retry-After"]) >= 1
    # A minute later the bucket is full again; a member's batch of 30 costs one token.
    buckets = backend.rate_limiter.client
    assert buckets is not None
    buckets.clock = lambda: time.monotonic() + 60
    status, body, _ = await _post(client, transfers)
    assert status == 202 and body["accepted"] == 30


async def test_unknown_senders_buy_no_signature_checks(node: Any) -> None:
    """Setup: a batch of 300 transfers signed by throw-away keys, half with a broken
    signature. Check: all are 403 not_registered and not one signature is verified."""
    backend, client, accounts = node
    calls: list[int] = []
    real = backend._verify

    async def counting(stxs: Any) -> Any:
        calls.append(len(stxs))
        return await real(stxs)

    backend._verify = counting
    expires = int(time.time() * 1000) + 60_000
    raws = []
    for i in range(300):
        signer = crypto.Signer(codec.digest(f"junk-{i}".encode()))
        tx = Tx(chain_id=backend.chain_id, sender=crypto.address(signer.public_key), public_key=signer.public_key,
                nonce=1, expires_at_ms=expires, body=Transfer(to=accounts["consumer-2"]["address"], amount_u=1))
        raw = bytearray(sign_tx(tx, signer))
        if i % 2:
            raw[-1] ^= 1
        raws.append(bytes(raw))
    status, body, _ = await _post(client, raws)
    assert status == 403 and body["rejected"] == 300
    assert {item["error"]["code"] for item in body["results"]} == {"not_registered"}
    assert calls == [] and len(backend.mempool) == 0
