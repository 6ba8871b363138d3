"""docs/TRANSACTIONS.md and its test vectors agree with the node, and the document
alone is enough to sign.

Three checks: (1) the vector file is exactly what ``tests.unit.tx_vectors`` derives
from the project's code today, and the node's JSON path turns each request into the
documented raw bytes; (2) the document's field schema is the one the contracts
decode; (3) an encoder written here from the document (MessagePack by hand,
``hashlib``, Ed25519 from ``cryptography``, nothing of this project) reproduces every
vector's canonical bytes, signature, raw bytes and hash, and the notary co-signatures.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.unit import tx_vectors

DOC = Path(__file__).resolve().parents[2] / "docs" / "TRANSACTIONS.md"
VECTORS: dict[str, Any] = orjson.loads(tx_vectors.VECTORS_PATH.read_bytes())


def _vector_ids() -> list[str]:
    return [v["name"] for v in VECTORS["vectors"]]


# --- (1) the file is what the project derives ---------------------------------------------


def test_vector_file_is_what_the_project_derives_today() -> None:
    assert tx_vectors.VECTORS_PATH.read_bytes() == tx_vectors.render(), (
        "docs/test-vectors/transactions.json is stale: python -m tests.unit.tx_vectors")


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=_vector_ids())
def test_the_node_turns_each_json_request_into_the_documented_raw_bytes(vector: dict[str, Any]) -> None:
    from contracts import transactions as txs

    raw = txs.signed_raw_from_json(vector["request"])
    assert raw.hex() == vector["raw"]
    stx = txs.decode_signed_tx(raw)
    assert stx.tx_hash.hex() == vector["tx_hash"] and txs.verify_signature(stx)


def test_vectors_cover_several_kinds_and_three_rfc8032_keys() -> None:
    kinds = {v["kind"] for v in VECTORS["vectors"]}
    assert len(kinds) >= 6
    assert {v["seed_source"] for v in VECTORS["vectors"]} == {
        f"RFC 8032 section 7.1, TEST {n}" for n in (1, 2, 3)}


# --- (2) the document's schema is the contracts' ---------------------------------------------


def doc_schema() -> dict[str, list[tuple[str, str]]]:
    """``{type name: [(field, type), ...]}`` from the ```gridchain-tx-schema block."""
    match = re.search(r"```gridchain-tx-schema\n(.*?)```", DOC.read_text(), re.S)
    assert match, "TRANSACTIONS.md has no gridchain-tx-schema block"
    schema = {}
    for line in match.group(1).strip().splitlines():
        name, *fields = line.split()
        schema[name] = [tuple(f.split(":", 1)) for f in fields]
    return schema  # type: ignore[return-value]


def _type_word(info: Any) -> str:
    mi = msgspec.inspect
    if isinstance(info, mi.Metadata):
        return _type_word(info.type)
    if isinstance(info, (mi.StrType, mi.LiteralType)):
        return "str"
    if isinstance(info, mi.IntType):
        return "uint"
    if isinstance(info, mi.BoolType):
        return "bool"
    if isinstance(info, mi.StructType) and info.tag is None:
        return info.cls.__name__
    if isinstance(info, mi.BytesType):
        return "bin"
    if isinstance(info, (mi.VarTupleType, mi.ListType)):
        return f"[{_type_word(info.item_type)}]"
    if isinstance(info, mi.UnionType):
        if all(isinstance(t, mi.StructType) for t in info.types):
            return "Body"
        (word,) = [_type_word(t) for t in info.types if not isinstance(t, mi.NoneType)]
        return word + "?"
    raise AssertionError(f"no schema word for {info}")


def test_the_documented_schema_is_what_the_contracts_decode() -> None:
    from contracts import transactions as txs

    mi = msgspec.inspect
    actual: dict[str, list[tuple[str, str]]] = {}
    for struct_type in (txs.Tx, txs.NotaryStatement, txs.ChannelState, *txs.Body.__args__):  # type: ignore[attr-defined]
        info = mi.type_info(struct_type)
        assert isinstance(info, mi.StructType)
        fields = [(f.encode_name, _type_word(f.type)) for f in info.fields]
        if info.tag is not None:
            actual[str(info.tag)] = [(str(info.tag_field), "str"), *fields]
        else:
            actual[struct_type.__name__] = fields
    assert doc_schema() == actual


# --- (3) an independent implementation from the document alone -----------------------------


def mp_uint(n: int) -> bytes:
    assert 0 <= n < 2**64
    if n < 0x80:
        return bytes([n])
    if n < 2**8:
        return b"\xcc" + struct.pack(">B", n)
    if n < 2**16:
        return b"\xcd" + struct.pack(">H", n)
    if n < 2**32:
        return b"\xce" + struct.pack(">I", n)
    return b"\xcf" + struct.pack(">Q", n)


def mp_str(s: str) -> bytes:
    data = s.encode()
    n = len(data)
    if n < 32:
        return bytes([0xA0 | n]) + data
    if n < 2**8:
        return b"\xd9" + struct.pack(">B", n) + data
    if n < 2**16:
        return b"\xda" + struct.pack(">H", n) + data
    return b"\xdb" + struct.pack(">I", n) + data


def mp_bin(b: bytes) -> bytes:
    n = len(b)
    if n < 2**8:
        return b"\xc4" + struct.pack(">B", n) + b
    if n < 2**16:
        return b"\xc5" + struct.pack(">H", n) + b
    return b"\xc6" + struct.pack(">I", n) + b


def mp_array_header(n: int) -> bytes:
    return bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)


def mp_map_header(n: int) -> bytes:
    return bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)


def encode_as(type_word: str, value: Any, schema: dict[str, list[tuple[str, str]]]) -> bytes:
    """MessagePack of a JSON value (bytes as hex) by the document's schema and rules."""
    if type_word.endswith("?"):
        return b"\xc0" if value is None else encode_as(type_word[:-1], value, schema)
    if type_word.startswith("["):
        return mp_array_header(len(value)) + b"".join(encode_as(type_word[1:-1], v, schema) for v in value)
    if type_word == "str":
        return mp_str(value)
    if type_word == "uint":
        return mp_uint(value)
    if type_word == "bool":
        return b"\xc3" if value else b"\xc2"
    if type_word == "bin":
        return mp_bin(bytes.fromhex(value))
    if type_word == "Body":
        return encode_map(schema[value["kind"]], value, schema)
    return encode_map(schema[type_word], value, schema)


def encode_map(fields: list[tuple[str, str]], value: dict[str, Any], schema: dict[str, list[tuple[str, str]]]) -> bytes:
    assert set(value) == {name for name, _ in fields}, "the vectors give every field"
    out = mp_map_header(len(fields))
    for name, type_word in fields:
        out += mp_str(name) + encode_as(type_word, value[name], schema)
    return out


def domain(chain_id: str, kind: str) -> bytes:
    return (chain_id + "/" + kind + "/v1").encode() + b"\x00"


def ed25519_key(seed_hex: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=_vector_ids())
def test_the_document_alone_reproduces_each_vector(vector: dict[str, Any]) -> None:
    schema = doc_schema()
    tx = vector["request"]["tx"]
    key = ed25519_key(vector["seed"])
    assert public_bytes(key).hex() == vector["public_key"] == tx["public_key"]

    tx_bytes = encode_as("Tx", tx, schema)
    assert tx_bytes.hex() == vector["tx_bytes"]
    message = domain(tx["chain_id"], "TX") + tx_bytes
    assert domain(tx["chain_id"], "TX").hex() == vector["signing_domain"]
    signature = key.sign(message)  # Ed25519 is deterministic: the vector pins the signature
    assert signature.hex() == vector["signature"] == vector["request"]["signature"]

    raw = b"\x92" + mp_bin(tx_bytes) + mp_bin(signature)
    assert raw.hex() == vector["raw"]
    assert hashlib.sha256(raw).hexdigest() == vector["tx_hash"]


def test_the_document_alone_reproduces_the_notary_co_signatures() -> None:
    schema = doc_schema()
    (vector,) = [v for v in VECTORS["vectors"] if v["kind"] == "notarize"]
    tx, body = vector["request"]["tx"], vector["request"]["tx"]["body"]
    statement = encode_as("NotaryStatement", {"chain_id": tx["chain_id"], "doc_hash": body["doc_hash"],
                                              "parties": body["parties"]}, schema)
    assert statement.hex() == vector["notary_statement"]
    assert body["parties"] == sorted(set(body["parties"])) and tx["sender"] in body["parties"]
    for party, signature in zip(body["parties"], body["signatures"], strict=True):
        key = ed25519_key(vector["party_seeds"][party])
        assert hashlib.sha256(public_bytes(key)).digest()[:20].hex() == party  # address rule of §1
        Ed25519PublicKey.from_public_bytes(public_bytes(key)).verify(
            bytes.fromhex(signature), domain(tx["chain_id"], "NOTARY") + statement)


def test_the_document_alone_reproduces_the_channel_co_signatures() -> None:
    schema = doc_schema()
    (opening,) = [v for v in VECTORS["vectors"] if v["kind"] == "open_channel"]
    (vector,) = [v for v in VECTORS["vectors"] if v["kind"] == "close_channel"]
    tx, body = vector["request"]["tx"], vector["request"]["tx"]["body"]
    assert body["state"]["channel_id"] == opening["tx_hash"]  # the channel's id is the opening tx's hash
    state = encode_as("ChannelState", body["state"], schema)
    assert state.hex() == vector["channel_state"]
    assert domain(tx["chain_id"], "CHANNEL").hex() == vector["channel_domain"]
    for name, field in (("alice", "signature_a"), ("bob", "signature_b")):
        key = ed25519_key(vector["party_seeds"][name])
        signature = key.sign(domain(tx["chain_id"], "CHANNEL") + state)
        assert signature.hex() == body[field]


def test_addresses_follow_the_documented_rule() -> None:
    for account in VECTORS["accounts"].values():
        key = ed25519_key(account["seed"])
        assert public_bytes(key).hex() == account["public_key"]
        assert hashlib.sha256(public_bytes(key)).digest()[:20].hex() == account["address"]


def test_a_reading_is_signed_by_the_meter_key_for_another_sender() -> None:
    (vector,) = [v for v in VECTORS["vectors"] if v["kind"] == "submit_reading"]
    tx = vector["request"]["tx"]
    assert tx["sender"] == VECTORS["accounts"]["bob"]["address"]
    assert tx["public_key"] == VECTORS["accounts"]["carol"]["public_key"]


def test_cancel_names_the_order_by_the_placing_tx_hash() -> None:
    by_kind = {v["kind"]: v for v in VECTORS["vectors"]}
    assert by_kind["cancel_order"]["request"]["tx"]["body"]["order_id"] == by_kind["place_order"]["tx_hash"]
