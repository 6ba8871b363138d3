"""The OpenAPI document tells the truth about encodings, and the server is as strict as the
document: unknown or repeated query parameters, upper-case or spaced hex, out-of-range
integers are 400; a wrong method is 405 with Allow. (Response conformance against a live
node: tests/integration/test_openapi_schemathesis.py.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from contracts import transactions as txs
from node.api.app import create_api_app
from node.api.openapi import openapi_document
from tests.unit.api_memory_backend import MemoryBackend, addr, signed


def test_byte_fields_are_documented_as_lowercase_hex() -> None:
    doc = openapi_document()
    assert "base64" not in json.dumps(doc)
    schemas = doc["components"]["schemas"]
    assert schemas["Tx"]["properties"]["public_key"]["pattern"] == "^[0-9a-f]{64}$"
    assert schemas["SignedTxJson"]["properties"]["signature"]["pattern"] == "^[0-9a-f]{128}$"
    assert schemas["RawTx"]["properties"]["raw"]["pattern"] == "^(?:[0-9a-f]{2})*$"
    assert schemas["Notarize"]["properties"]["doc_hash"]["pattern"] == "^[0-9a-f]{64}$"
    assert schemas["SlotView"]["properties"]["trades_digest"]["pattern"] == "^(?:[0-9a-f]{2})*$"


def test_every_operation_documents_its_errors() -> None:
    for path, item in openapi_document()["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            assert {"400", "405"} <= codes, (path, method)
            assert "Allow" in op["responses"]["405"]["headers"]
            for param in op.get("parameters", []):
                assert param["schema"], (path, param)
    submit = openapi_document()["paths"]["/v1/transactions"]["post"]["responses"]
    assert {"202", "400", "403", "409", "413", "415", "422", "429", "503"} <= set(submit)
    assert "beyond_horizon" in submit["422"]["description"]


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    app = create_api_app(MemoryBackend())
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


@pytest.mark.parametrize("path", [
    "/v1/status?x=1", "/v1/trades?slot=1&slot=2", "/v1/trades?slot=", "/v1/trades?account=",
    "/v1/trades?limit=10001", "/v1/trades?slot=9223372036854775808", "/v1/market/slots/%C2%B2",
    "/v1/blocks/1?txs=all", "/v1/blocks/latest?full=1", "/v1/accounts/" + "A" * 40,
    "/v1/orders/" + "AB" * 32, "/v1/transactions/" + "ab " * 21 + "a", "/v1/dispatch?account=",
    "/v1/events?topics=blocks,", "/v1/events?topics=blocks", "/v1/trace/trades/x", "/healthz?y",
])
async def test_invalid_parameters_are_400_bad_request(client: TestClient[Any, Any], path: str) -> None:
    resp = await client.get(path)
    body = await resp.json()
    assert resp.status == 400, body
    assert body["error"]["code"] == "bad_request"


async def test_wrong_method_is_405_with_allow(client: TestClient[Any, Any]) -> None:
    resp = await client.put("/v1/transactions", data=b"{}")
    assert resp.status == 405 and "POST" in resp.headers["Allow"]
    assert (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_hex_in_transactions_is_lowercase_only(client: TestClient[Any, Any]) -> None:
    raw = signed("cons", txs.Transfer(to=addr("gen"), amount_u=1), nonce=1)
    stx = txs.decode_signed_tx(raw)
    for body in ({"raw": raw.hex().upper()}, {"raw": raw.hex()[:2] + " " + raw.hex()[2:]},
                 {"tx": txs.tx_to_json(stx.tx), "signature": stx.signature.hex().upper()},
                 {"tx": {**txs.tx_to_json(stx.tx), "public_key": stx.tx.public_key.hex().upper()},
                  "signature": stx.signature.hex()}):
        resp = await client.post("/v1/transactions", json=body)
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "malformed", body
    assert (await client.post("/v1/transactions", json={"raw": raw.hex()})).status == 202
