"""Garbage into POST /v1/transactions: whatever the body, the answer is a 4xx with
a stable code (never a 5xx, never a crash) and nothing changes."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import executor
from contracts import transactions as txs
from node.api.app import STATUS_BY_CODE
from tests.unit.api_memory_backend import MemoryBackend, addr, make_genesis, signed
from tests.unit.test_api_cli import ServerThread

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    backend = MemoryBackend(make_genesis(t0_ms=time.time_ns() // 1_000_000))
    with ServerThread(backend, produce_blocks=False) as srv:
        yield srv


def post(url: str, body: bytes, content_type: str) -> tuple[int, Any]:
    req = urllib.request.Request(url + "/v1/transactions", data=body, method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def assert_rejected(server: ServerThread, body: bytes, content_type: str = "application/json") -> None:
    before = (server.backend.state.root, len(server.backend.pool))
    status, out = post(server.url, body, content_type)
    assert 400 <= status < 500, (status, out)
    assert out["error"]["code"] in STATUS_BY_CODE or status == 422, out
    assert (server.backend.state.root, len(server.backend.pool)) == before


VALID_TX = signed("cons", txs.Transfer(to=addr("gen"), amount_u=1), nonce=1,
                  expires_at_ms=time.time_ns() // 1_000_000 + 3_600_000)


def test_the_unflipped_transaction_is_admissible(server: ServerThread) -> None:
    executor.check_tx(server.backend.state, txs.decode_signed_tx(VALID_TX), now_ms=time.time_ns() // 1_000_000,
                      check_signature=True)


_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(value=json_values)
def test_arbitrary_json_is_rejected_cleanly(server: ServerThread, value: Any) -> None:
    assert_rejected(server, json.dumps(value).encode())


@_FUZZ
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_are_rejected_cleanly(server: ServerThread, data: bytes) -> None:
    assert_rejected(server, data)
    assert_rejected(server, data, "application/msgpack")
    assert_rejected(server, json.dumps({"raw": data.hex()}).encode())


@_FUZZ
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_in_a_signed_tx_is_rejected(server: ServerThread, position: int, bit: int) -> None:
    raw = bytearray(VALID_TX)
    raw[position % len(raw)] ^= 1 << bit
    assert_rejected(server, json.dumps({"raw": bytes(raw).hex()}).encode())
