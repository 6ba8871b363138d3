"""What a receipt names (order id, resolved slot) and the settlement-line indexes that
let the API list an account's or a slot's settlement lines without a scan."""

from __future__ import annotations

from consensus import codec
from contracts import records as rec
from contracts.state import decode_state, encode_state, pair_key
from contracts.transactions import CancelOrder, PlaceOrder, SubmitReading, Transfer
from tests.unit.contracts.helpers import Chain, market_params


def _leaf_receipt(leaves: tuple[bytes, ...], index: int) -> rec.TxReceipt:
    record = codec.decode(leaves[index], rec.Record)  # type: ignore[arg-type]
    assert isinstance(record, rec.TxReceipt)
    return record


def test_a_placed_order_receipt_names_its_order_id_and_slot_in_the_leaf_too() -> None:
    chain = Chain()
    raw = chain.tx("con", PlaceOrder(slot=3, side="buy", price_u_per_wh=30, quantity_wh=10))
    receipts, result = chain.block(raw)
    receipt = receipts[0]
    assert receipt.ok
    assert receipt.order_id == receipt.tx_hash.hex() and receipt.order_id in chain.state.orders
    assert receipt.slot == 3
    leaf = _leaf_receipt(result.leaves, receipt.location.index)
    assert (leaf.order_id, leaf.slot) == (receipt.order_id, 3)


def test_a_failed_order_receipt_names_its_slot_but_no_order() -> None:
    chain = Chain()
    chain.ok(at_ms=5_000)
    receipt = chain.expect_rejected(
        chain.tx("con", PlaceOrder(slot=2, side="buy", price_u_per_wh=30, quantity_wh=10)), "slot_closed")
    assert receipt.order_id is None and receipt.slot == 2


def test_cancel_and_reading_receipts_name_the_order_and_the_slot() -> None:
    chain = Chain()
    placed, _ = chain.block(chain.tx("con", PlaceOrder(slot=3, side="buy", price_u_per_wh=30, quantity_wh=10)))
    order_id = placed[0].order_id
    assert order_id is not None
    cancelled, _ = chain.block(chain.tx("con", CancelOrder(order_id=order_id)))
    assert cancelled[0].ok and (cancelled[0].order_id, cancelled[0].slot) == (order_id, None)
    reading, _ = chain.block(chain.tx("con", SubmitReading(slot=0, import_wh=5, export_wh=0), meter=True),
                             at_ms=1_500)
    assert reading[0].ok and (reading[0].order_id, reading[0].slot) == (None, 0)
    other, _ = chain.block(chain.tx("con", Transfer(to=chain.addr("gen"), amount_u=1)))
    assert (other[0].order_id, other[0].slot) == (None, None)


def _settle_two_slots(chain: Chain) -> None:
    for slot in (1, 2):
        chain.ok(chain.tx("con", PlaceOrder(slot=slot, side="buy", price_u_per_wh=30, quantity_wh=10)),
                 chain.tx("gen", PlaceOrder(slot=slot, side="sell", price_u_per_wh=20, quantity_wh=10)))
    chain.ok(at_ms=4_000)  # both slots cleared and settled (no readings: worst case)


def test_settlement_lines_are_indexed_by_account_and_by_slot() -> None:
    chain = Chain()
    _settle_two_slots(chain)
    state = chain.state
    con, gen = chain.addr("con"), chain.addr("gen")
    assert set(state.settlements_by_account[con]) == {1, 2}
    assert set(state.settlements_by_account[gen]) == {1, 2}
    assert set(state.settlements_by_slot[1]) == {con, gen}
    for slot in (1, 2):
        line = state.settlements[pair_key(slot, gen)]
        assert (line.contracted_wh, line.metered_wh, line.delta_wh) == (10, 0, -10)
        assert line.imbalance_u == -10 * state.genesis.market.p_short and line.proceeds_u == 250
    restored = decode_state(encode_state(state))
    assert restored.settlements_by_account == state.settlements_by_account
    assert restored.settlements_by_slot == state.settlements_by_slot


def test_pruned_settlement_lines_leave_the_indexes() -> None:
    chain = Chain(market=market_params(history_slots=1))
    _settle_two_slots(chain)
    state = chain.state
    assert state.meta.settled_slots == (2,)
    assert set(state.settlements_by_account[chain.addr("con")]) == {2}
    assert 1 not in state.settlements_by_slot and set(state.settlements_by_slot) == {2}
