"""Signing test vectors of docs/TRANSACTIONS.md, built with the project's own code.

``python -m tests.unit.tx_vectors`` rewrites ``docs/test-vectors/transactions.json``;
``tests/unit/test_tx_vectors.py`` re-derives every vector and checks it both against
this project code and against an encoder written from the document alone.

Keys are the secret keys (seeds) of RFC 8032 §7.1 TEST 1, 2 and 3, so anyone can
check the public keys against the RFC. Everything else is fixed: chain id, nonces,
expiry (2100-01-01T00:00:00Z), so the vectors never change unless the format does.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import orjson

from consensus import codec, crypto
from contracts import transactions as txs

VECTORS_PATH = Path(__file__).resolve().parents[2] / "docs" / "test-vectors" / "transactions.json"
CHAIN_ID = "gridchain-vectors"
EXPIRES_AT_MS = 4_102_444_800_000
"""2100-01-01T00:00:00Z: far enough that a live chain still accepts the vectors."""

RFC8032_SEEDS: dict[str, tuple[str, str]] = {
    # name: (seed hex, where it comes from)
    "alice": ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "RFC 8032 section 7.1, TEST 1"),
    "bob": ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb", "RFC 8032 section 7.1, TEST 2"),
    "carol": ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7", "RFC 8032 section 7.1, TEST 3"),
}
GENESIS_ROLES: dict[str, tuple[str, int]] = {"alice": ("consumer", 10**9), "bob": ("consumer", 10**9)}
"""Accounts a chain needs in its genesis for the committable vectors (carol registers herself)."""
COMMITTABLE = ("transfer", "register_request", "notarize")
"""Vectors a fresh chain with GENESIS_ROLES and chain id CHAIN_ID commits, in this order."""
DOC_TEXT = b"GridChain test vector document"


def signer(name: str) -> crypto.Signer:
    return crypto.Signer(bytes.fromhex(RFC8032_SEEDS[name][0]))


def address(name: str) -> str:
    return crypto.address(signer(name).public_key)


def _tx(name: str, body: Any, *, nonce: int, key: str | None = None) -> txs.Tx:
    return txs.Tx(chain_id=CHAIN_ID, sender=address(name), public_key=signer(key or name).public_key,
                  nonce=nonce, expires_at_ms=EXPIRES_AT_MS, body=body)


def _bodies() -> list[tuple[str, str, txs.Tx, tuple[str, ...]]]:
    """(vector name, signing key, tx, notary co-signers) in a fixed order."""
    place = _tx("bob", txs.PlaceOrder(slot=29_000_000, side="buy", price_u_per_wh=120, quantity_wh=500), nonce=1)
    order_id = codec.digest(txs.sign_tx(place, signer("bob"))).hex()
    parties = tuple(sorted((address("alice"), address("bob"))))
    doc_hash = hashlib.sha256(DOC_TEXT).digest()
    statement = txs.notary_statement_bytes(chain_id=CHAIN_ID, doc_hash=doc_hash, parties=parties)
    by_address = {address(n): n for n in ("alice", "bob")}
    co_signatures = tuple(signer(by_address[p]).sign(chain_id=CHAIN_ID, kind=txs.KIND_NOTARY, message=statement)
                          for p in parties)
    opening = _tx("alice", txs.OpenChannel(counterparty=address("bob"), deposit_u=5_000_000, challenge_slots=60),
                  nonce=5)
    channel_state = txs.ChannelState(
        channel_id=codec.digest(txs.sign_tx(opening, signer("alice"))).hex(), seq=1_000,
        balance_a_u=3_750_000, balance_b_u=1_250_000, energy_wh=12_500, reading_slots=(29_000_000,), final=True)
    channel_signatures = {n: txs.sign_channel_state(channel_state, signer(n), chain_id=CHAIN_ID)
                          for n in ("alice", "bob")}
    return [
        ("transfer", "alice", _tx("alice", txs.Transfer(to=address("bob"), amount_u=1_000_000), nonce=1), ()),
        ("register_request", "carol",
         _tx("carol", txs.RegisterRequest(role="prosumer", zone="Z1", name="carol"), nonce=1), ()),
        ("notarize", "alice", _tx("alice", txs.Notarize(doc_hash=doc_hash, parties=parties,
                                                        signatures=co_signatures, title="supply contract 42"),
                                  nonce=2), ("alice", "bob")),
        ("place_order", "bob", place, ()),
        ("cancel_order", "bob", _tx("bob", txs.CancelOrder(order_id=order_id), nonce=2), ()),
        # A reading of bob's account signed by its meter key (carol's key here): sender != signer.
        ("submit_reading", "carol",
         _tx("bob", txs.SubmitReading(slot=29_000_000, import_wh=0, export_wh=1_250), nonce=1, key="carol"), ()),
        ("set_meter_key", "alice",
         _tx("alice", txs.SetMeterKey(account=address("bob"), meter_key=signer("carol").public_key), nonce=3), ()),
        ("suspend_account", "alice", _tx("alice", txs.SuspendAccount(account=address("carol")), nonce=4), ()),
        ("open_channel", "alice", opening, ()),
        ("close_channel", "bob", _tx("bob", txs.CloseChannel(
            state=channel_state, signature_a=channel_signatures["alice"], signature_b=channel_signatures["bob"]),
            nonce=3), ("alice", "bob")),
    ]


def build_vectors() -> dict[str, Any]:
    """The whole vectors document (what ``transactions.json`` holds)."""
    out = []
    for name, key, tx, cosigners in _bodies():
        s = signer(key)
        tx_bytes = codec.encode(tx)
        raw = txs.sign_tx(tx, s)
        stx = txs.decode_signed_tx(raw)
        assert stx.tx_bytes == tx_bytes and txs.verify_signature(stx)
        vector: dict[str, Any] = {
            "name": name,
            "kind": tx.kind,
            "signer": key,
            "seed": RFC8032_SEEDS[key][0],
            "seed_source": RFC8032_SEEDS[key][1],
            "public_key": s.public_key.hex(),
            "request": {"tx": txs.tx_to_json(tx), "signature": stx.signature.hex()},
            "signing_domain": crypto.domain(CHAIN_ID, crypto.KIND_TX).hex(),
            "tx_bytes": tx_bytes.hex(),
            "signature": stx.signature.hex(),
            "raw": raw.hex(),
            "tx_hash": stx.tx_hash.hex(),
        }
        if cosigners and isinstance(tx.body, txs.CloseChannel):
            vector["channel_state"] = txs.channel_state_bytes(tx.body.state).hex()
            vector["channel_domain"] = crypto.domain(CHAIN_ID, txs.KIND_CHANNEL).hex()
            vector["party_seeds"] = {n: RFC8032_SEEDS[n][0] for n in cosigners}
        elif cosigners:
            body = tx.body
            assert isinstance(body, txs.Notarize)
            vector["notary_statement"] = txs.notary_statement_bytes(
                chain_id=CHAIN_ID, doc_hash=body.doc_hash, parties=body.parties).hex()
            vector["notary_domain"] = crypto.domain(CHAIN_ID, txs.KIND_NOTARY).hex()
            vector["party_seeds"] = {address(n): RFC8032_SEEDS[n][0] for n in cosigners}
        out.append(vector)
    return {
        "description": "GridChain transaction signing vectors; see docs/TRANSACTIONS.md. "
                       "All hex is lowercase. Regenerate with: python -m tests.unit.tx_vectors",
        "chain_id": CHAIN_ID,
        "accounts": {n: {"seed": RFC8032_SEEDS[n][0], "public_key": signer(n).public_key.hex(),
                         "address": address(n)} for n in RFC8032_SEEDS},
        "genesis_accounts": {n: {"role": r, "balance_u": b} for n, (r, b) in GENESIS_ROLES.items()},
        "committable_in_order": list(COMMITTABLE),
        "vectors": out,
    }


def render() -> bytes:
    return orjson.dumps(build_vectors(), option=orjson.OPT_INDENT_2) + b"\n"


def main() -> int:
    VECTORS_PATH.parent.mkdir(parents=True, exist_ok=True)
    VECTORS_PATH.write_bytes(render())
    print(f"wrote {VECTORS_PATH.name}: {len(build_vectors()['vectors'])} vectors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
