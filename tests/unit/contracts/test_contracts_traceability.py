"""Merkle proofs over block records, and the full lineage of a trade."""

from __future__ import annotations

import pytest

from consensus import codec
from contracts import records as rec
from contracts.traceability import EMPTY_ROOT, Proof, lineage, merkle_root, prove, verify_proof
from contracts.transactions import PlaceOrder, SubmitReading

from .helpers import Chain


@pytest.mark.parametrize("n", range(1, 18))
def test_every_leaf_of_every_tree_size_proves(n: int) -> None:
    leaves = [bytes([i]) * (i + 1) for i in range(n)]
    root = merkle_root(leaves)
    for i in range(n):
        proof = prove(leaves, i)
        assert verify_proof(leaves[i], proof, root)
        assert not verify_proof(leaves[(i + 1) % n] + b"x", proof, root)
        if n > 1:
            assert not verify_proof(leaves[i], Proof(index=(i + 1) % n, leaf_count=n,
                                                     siblings=proof.siblings), root)


def test_empty_tree_root_and_out_of_range_proofs() -> None:
    assert merkle_root([]) == EMPTY_ROOT
    with pytest.raises(IndexError):
        prove([b"a"], 1)
    assert not verify_proof(b"a", Proof(index=1, leaf_count=1, siblings=()), merkle_root([b"a"]))


def test_trade_lineage_proves_every_record_and_any_byte_change_breaks_it() -> None:
    chain = Chain()
    results = {}
    results[1] = chain.ok(chain.tx("con", PlaceOrder(slot=1, side="buy", price_u_per_wh=30, quantity_wh=10)),
                          chain.tx("gen", PlaceOrder(slot=1, side="sell", price_u_per_wh=20, quantity_wh=10)))
    results[2] = chain.ok(at_ms=1_000)
    results[3] = chain.ok(chain.tx("con", SubmitReading(slot=1, import_wh=10, export_wh=0), meter=True),
                          chain.tx("gen", SubmitReading(slot=1, import_wh=0, export_wh=9), meter=True),
                          at_ms=2_000)
    results[4] = chain.ok(at_ms=3_000)
    where = lineage(chain.state, "1-0")
    assert where is not None
    expected = {
        "buy_order": rec.OrderPlaced, "sell_order": rec.OrderPlaced, "clearing": rec.SlotCleared,
        "trade": rec.TradeRecord, "buyer_reading": rec.ReadingRecord,
        "seller_reading": rec.ReadingRecord, "buyer_settlement": rec.SettlementRecord,
        "seller_settlement": rec.SettlementRecord,
    }
    assert set(where) == set(expected)
    for role, loc in where.items():
        result = results[loc.height]
        leaf = result.leaves[loc.index]
        record = codec.decode(leaf, rec.Record)  # type: ignore[arg-type]
        assert isinstance(record, expected[role]), role
        proof = prove(result.leaves, loc.index)
        assert verify_proof(leaf, proof, result.receipts_root)
    trade_loc = where["trade"]
    result = results[trade_loc.height]
    leaf = result.leaves[trade_loc.index]
    record = codec.decode(leaf, rec.Record)  # type: ignore[arg-type]
    assert isinstance(record, rec.TradeRecord)
    assert (record.quantity_wh, record.price_u_per_wh) == (10, 25)
    proof = prove(result.leaves, trade_loc.index)
    for i in range(len(leaf)):
        tampered = bytearray(leaf)
        tampered[i] ^= 0x01
        assert not verify_proof(bytes(tampered), proof, result.receipts_root), i
    for k, sibling in enumerate(proof.siblings):
        bad = bytearray(sibling)
        bad[0] ^= 0x80
        siblings = (*proof.siblings[:k], bytes(bad), *proof.siblings[k + 1:])
        assert not verify_proof(leaf, Proof(proof.index, proof.leaf_count, siblings), result.receipts_root)
    bad_root = bytes([result.receipts_root[0] ^ 1]) + result.receipts_root[1:]
    assert not verify_proof(leaf, proof, bad_root)


def test_unknown_trade_has_no_lineage() -> None:
    assert lineage(Chain().state, "9-9") is None
