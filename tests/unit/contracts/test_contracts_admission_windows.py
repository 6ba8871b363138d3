"""Time windows judged by one function each, shared by execution and admission
(``check_tx``): ``market.check_order_slot`` (an order's slot), ``market.check_cancellable``,
``metering.check_reading_window``. What admission refuses could never succeed in a block."""

from __future__ import annotations

import pytest

from contracts import errors, market, metering
from contracts.executor import check_tx
from contracts.state import encode_state
from contracts.transactions import CancelOrder, PlaceOrder, SubmitReading, decode_signed_tx

from .helpers import Chain, market_params


def code(fn: object, *args: object, **kwargs: object) -> str | None:
    try:
        fn(*args, **kwargs)  # type: ignore[operator]
    except errors.TxError as exc:
        return exc.code
    return None


def buy(slot: int) -> PlaceOrder:
    return PlaceOrder(slot=slot, side="buy", price_u_per_wh=10, quantity_wh=5)


@pytest.fixture
def chain() -> Chain:
    # slot_ms 1,000, gate_lead 200, horizon 10 slots, T0 = 0.
    return Chain(market=market_params(gate_lead_ms=200))


def test_gate_closes_gate_lead_before_the_slot(chain: Chain) -> None:
    g = chain.genesis
    assert code(market.check_order_slot, g, 5, now_ms=4_799) is None
    assert code(market.check_order_slot, g, 5, now_ms=4_800) == errors.SLOT_CLOSED
    assert code(market.check_order_slot, g, 4, now_ms=4_799) == errors.SLOT_CLOSED  # current slot
    assert code(market.check_order_slot, g, 0, now_ms=4_799) == errors.SLOT_CLOSED  # past slot


def test_horizon_counts_from_the_current_slot(chain: Chain) -> None:
    g = chain.genesis
    assert market.horizon_slot(g, 4_999) == 14
    assert code(market.check_order_slot, g, 14, now_ms=4_999) is None
    assert code(market.check_order_slot, g, 15, now_ms=4_999) == errors.BEYOND_HORIZON
    assert code(market.check_order_slot, g, 15, now_ms=5_000) is None


def test_horizon_is_judged_at_the_latest_time_the_tx_can_execute(chain: Chain) -> None:
    g = chain.genesis
    assert code(market.check_order_slot, g, 20, now_ms=1_000, latest_ms=9_999) == errors.BEYOND_HORIZON
    assert code(market.check_order_slot, g, 20, now_ms=1_000, latest_ms=10_000) is None
    # A latest time before now means now (the tx cannot run earlier than the latest block).
    assert code(market.check_order_slot, g, 12, now_ms=2_000, latest_ms=0) is None
    # The gate is judged at now even when the tx could run later: later is only worse.
    assert code(market.check_order_slot, g, 3, now_ms=2_800, latest_ms=10**9) == errors.SLOT_CLOSED


def test_execution_receipts_carry_the_codes(chain: Chain) -> None:
    chain.expect_rejected(chain.tx("con", buy(slot=1)), errors.SLOT_CLOSED, at_ms=800)
    chain.expect_rejected(chain.tx("con", buy(slot=12)), errors.BEYOND_HORIZON, at_ms=1_000)
    chain.ok(chain.tx("con", buy(slot=11)), at_ms=1_000)


def test_admission_refuses_orders_that_can_never_succeed(chain: Chain) -> None:
    chain.ok(at_ms=3_000)  # latest block time: slot 3 is current, slot 4's gate closes at 3,800

    def admit(raw: bytes, now_ms: int = 3_500) -> str | None:
        return code(check_tx, chain.state, decode_signed_tx(raw), now_ms=now_ms)

    before = encode_state(chain.state)
    assert admit(chain.tx("con", buy(slot=2))) == errors.SLOT_CLOSED
    assert admit(chain.tx("con", buy(slot=3))) == errors.SLOT_CLOSED
    assert admit(chain.tx("con", buy(slot=4))) is None
    # Beyond the horizon even in the last millisecond before expiry.
    assert admit(chain.tx("con", buy(slot=20), expires_at_ms=10_000)) == errors.BEYOND_HORIZON
    # Within the horizon by then: it may still succeed in a later block.
    assert admit(chain.tx("con", buy(slot=20), expires_at_ms=10_001)) is None
    assert admit(chain.tx("con", buy(slot=10_000))) is None  # default expiry is far away
    assert encode_state(chain.state) == before


def test_admission_refuses_cancelling_a_closed_order(chain: Chain) -> None:
    raw = chain.tx("con", buy(slot=4))
    chain.ok(raw, at_ms=3_000)
    order_id = decode_signed_tx(raw).tx_hash.hex()

    def admit(raw: bytes) -> str | None:
        return code(check_tx, chain.state, decode_signed_tx(raw), now_ms=chain.now_ms)

    assert admit(chain.tx("con", CancelOrder(order_id=order_id))) is None
    assert admit(chain.tx("con", CancelOrder(order_id="00" * 32))) is None  # may be placed later
    chain.ok(at_ms=3_800)  # gate of slot 4 closed, the slot cleared
    assert admit(chain.tx("con", CancelOrder(order_id=order_id))) == errors.SLOT_CLOSED


def test_reading_window_at_execution_and_admission(chain: Chain) -> None:
    g = chain.genesis  # slot 2 ends at 3,000; it settles at 4,000 (meter window 1,000)
    assert code(metering.check_reading_window, g, 2, now_ms=2_999) == errors.READING_WINDOW_CLOSED
    assert code(metering.check_reading_window, g, 2, now_ms=3_000) is None
    assert code(metering.check_reading_window, g, 2, now_ms=3_999) is None
    assert code(metering.check_reading_window, g, 2, now_ms=4_000) == errors.READING_WINDOW_CLOSED
    # At admission: too early now, but the window opens before the tx expires.
    assert code(metering.check_reading_window, g, 2, now_ms=1_000, latest_ms=3_000) is None
    assert code(metering.check_reading_window, g, 2, now_ms=1_000, latest_ms=2_999) == errors.READING_WINDOW_CLOSED

    def admit(raw: bytes) -> str | None:
        return code(check_tx, chain.state, decode_signed_tx(raw), now_ms=chain.now_ms)

    reading = SubmitReading(slot=2, import_wh=1, export_wh=0)
    chain.ok(at_ms=1_000)
    assert admit(chain.tx("con", reading, meter=True)) is None
    assert admit(chain.tx("con", reading, meter=True, expires_at_ms=3_000)) == errors.READING_WINDOW_CLOSED
    chain.ok(at_ms=4_000)
    assert admit(chain.tx("con", reading, meter=True)) == errors.READING_WINDOW_CLOSED
    chain.expect_rejected(chain.tx("con", reading, meter=True), errors.READING_WINDOW_CLOSED, at_ms=4_001)
