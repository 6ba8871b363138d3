"""MARKET.md worked examples E1–E8, checked to the µ (pure rules and on chain)."""

from __future__ import annotations

from contracts.market import BookOrder, clear
from contracts.settlement import imbalance
from contracts.transactions import PlaceOrder, SubmitReading

from .helpers import Chain, market_params


def bid(name: str, price: int, qty: int, seq: int) -> BookOrder:
    return BookOrder(name, price, qty, (0, seq))


ask = bid


def fills(result) -> list[tuple[str | int, str | int, int]]:
    return [(f.buy_order, f.sell_order, f.quantity_wh) for f in result.fills]


def test_e1_partially_filled_marginal_order() -> None:
    result = clear([bid("B1", 30, 3, 1), bid("B2", 25, 2, 2), bid("B3", 10, 4, 3)],
                   [ask("S1", 5, 2, 4), ask("S2", 20, 4, 5), ask("S3", 28, 3, 6)],
                   p_min=0, p_max=100, fee=0)
    assert fills(result) == [("B1", "S1", 2), ("B1", "S2", 1), ("B2", "S2", 2)]
    assert result.price == 20
    paid = {b: 0 for b in ("B1", "B2", "B3")}
    earned = {s: 0 for s in ("S1", "S2", "S3")}
    for b, s, q in fills(result):
        paid[b] += result.price * q
        earned[s] += result.price * q
    assert paid == {"B1": 60, "B2": 40, "B3": 0}
    assert earned == {"S1": 40, "S2": 60, "S3": 0}


def test_e2_midpoint() -> None:
    result = clear([bid("b1", 40, 2, 1), bid("b2", 30, 2, 2), bid("b3", 15, 2, 3)],
                   [ask("a1", 10, 2, 4), ask("a2", 20, 2, 5), ask("a3", 35, 2, 6)],
                   p_min=0, p_max=100, fee=0)
    assert result.volume_wh == 4
    assert result.price == 25


def test_e3_time_priority() -> None:
    result = clear([bid("B", 30, 5, 1)], [ask("S1", 20, 3, 2), ask("S2", 20, 3, 3)],
                   p_min=0, p_max=100, fee=0)
    assert fills(result) == [("B", "S1", 3), ("B", "S2", 2)]
    assert result.price == 20
    swapped = clear([bid("B", 30, 5, 1)], [ask("S1", 20, 3, 3), ask("S2", 20, 3, 2)],
                    p_min=0, p_max=100, fee=0)
    assert fills(swapped) == [("B", "S2", 3), ("B", "S1", 2)]
    assert swapped.price == 20


def test_e4_grid_fee() -> None:
    bids = [bid("b1", 30, 2, 1), bid("b2", 22, 2, 2)]
    asks = [ask("a1", 15, 2, 3), ask("a2", 18, 2, 4)]
    result = clear(bids, asks, p_min=0, p_max=100, fee=5)
    assert fills(result) == [("b1", "a1", 2)]
    assert result.price == 22
    assert result.price * 2 == 44  # buyer pays
    assert (result.price - 5) * 2 == 34  # seller earns
    assert 5 * 2 == 44 - 34  # grid operator
    no_fee = clear(bids, asks, p_min=0, p_max=100, fee=0)
    assert no_fee.volume_wh == 4
    assert no_fee.price == 20


def test_e4_grid_fee_on_chain_to_the_micro() -> None:
    chain = Chain(market=market_params(grid_fee=5))
    con, con2, gen = (chain.account(n).balance_u for n in ("con", "con2", "gen"))
    chain.ok(chain.tx("con", PlaceOrder(slot=1, side="buy", price_u_per_wh=30, quantity_wh=2)),
             chain.tx("con2", PlaceOrder(slot=1, side="buy", price_u_per_wh=22, quantity_wh=2)),
             chain.tx("gen", PlaceOrder(slot=1, side="sell", price_u_per_wh=15, quantity_wh=2)),
             chain.tx("gen2", PlaceOrder(slot=1, side="sell", price_u_per_wh=18, quantity_wh=2)))
    chain.ok(at_ms=1_000)  # gate of slot 1 closes at 1000 ms
    slot = chain.state.slots["0000000000000001"]
    assert (slot.status, slot.price_u_per_wh, slot.volume_wh) == ("cleared", 22, 2)
    assert chain.account("con").balance_u == con - 44
    assert chain.account("con").locked_u == 0
    assert chain.account("con2").balance_u == con2  # unfilled: whole lock back
    assert chain.account("gen").pending_u == 34
    assert chain.account("gen2").pending_u == 0
    assert chain.account("grid").balance_u == 10
    chain.ok(at_ms=3_000)  # settle_time(1) = 2000 + 1000; no readings
    # gen is a net seller without a reading: exported nothing, pays 2 Wh × p_short(100).
    assert chain.account("gen").balance_u == gen + 34 - 34
    assert chain.account("gen").debt_u == 200 - 34


def test_e5_bounds() -> None:
    one = clear([bid("b", 30, 2, 1)], [ask("a", 20, 2, 2)], p_min=8, p_max=32, fee=0)
    assert one.price == 25
    two = clear([bid("b", 30, 5, 1)], [ask("a", 20, 3, 2)], p_min=8, p_max=32, fee=0)
    assert two.price == 30
    assert two.volume_wh == 3


def test_e6_escrow_locks_then_pays_and_returns_the_rest() -> None:
    """A bid (30, 3) locks 90. MARKET.md's "fills 2 at p = 20" cannot come out of one auction
    (a partially filled bid at 30 makes L >= 30), so the fill here is 2 at the reachable p = 30:
    it pays 60 and 30 returns; an unfilled bid gets its whole lock back."""
    chain = Chain(market=market_params(p_max=32))
    start = chain.account("con").balance_u
    chain.ok(chain.tx("con", PlaceOrder(slot=1, side="buy", price_u_per_wh=30, quantity_wh=3)),
             chain.tx("con2", PlaceOrder(slot=1, side="buy", price_u_per_wh=5, quantity_wh=3)),
             chain.tx("gen", PlaceOrder(slot=1, side="sell", price_u_per_wh=20, quantity_wh=2)))
    assert chain.account("con").locked_u == 90
    assert chain.account("con").balance_u == start - 90
    chain.ok(at_ms=1_000)
    assert chain.state.slots["0000000000000001"].price_u_per_wh == 30
    assert chain.account("con").locked_u == 0
    assert chain.account("con").balance_u == start - 60
    assert chain.account("con2").balance_u == 1_000_000  # unfilled: lock of 15 returned


def _e7_chain(seller_free_u: int = 0) -> Chain:
    chain = Chain(accounts={"grid": ("grid", 0), "S": ("generator", seller_free_u),
                            "B": ("consumer", 1_000)},
                  market=market_params(p_min=8, p_max=30, p_short=30, p_long=8))
    chain.ok(chain.tx("B", PlaceOrder(slot=1, side="buy", price_u_per_wh=20, quantity_wh=10)),
             chain.tx("S", PlaceOrder(slot=1, side="sell", price_u_per_wh=20, quantity_wh=10)))
    chain.ok(at_ms=1_000)
    assert chain.state.trades["1-0"].price_u_per_wh == 20
    assert chain.account("S").pending_u == 200
    return chain


def test_e7_imbalance_pure() -> None:
    s = imbalance(sold_wh=10, bought_wh=0, reading=(0, 7), p_short=30, p_long=8)
    assert (s.contracted_wh, s.metered_wh, s.delta_wh, s.imbalance_u) == (10, 7, -3, -90)
    b = imbalance(sold_wh=0, bought_wh=10, reading=(12, 0), p_short=30, p_long=8)
    assert (b.contracted_wh, b.metered_wh, b.delta_wh, b.imbalance_u) == (-10, -12, -2, -60)
    assert s.imbalance_u + b.imbalance_u + 150 == 0
    b8 = imbalance(sold_wh=0, bought_wh=10, reading=(8, 0), p_short=30, p_long=8)
    assert (b8.delta_wh, b8.imbalance_u) == (2, 16)


def test_e7_imbalance_on_chain() -> None:
    chain = _e7_chain()
    chain.ok(chain.tx("S", SubmitReading(slot=1, import_wh=0, export_wh=7), meter=True),
             chain.tx("B", SubmitReading(slot=1, import_wh=12, export_wh=0), meter=True),
             at_ms=2_000)
    chain.ok(at_ms=3_000)
    assert chain.account("S").balance_u == 0 + 200 - 90  # slot total +110
    assert chain.account("B").balance_u == 1_000 - 200 - 60  # slot total −260
    assert chain.account("grid").balance_u == 150
    assert chain.account("S").pending_u == 0
    lines = {ln.account: ln.imbalance_u for ln in chain.state.settlements.values()}
    assert lines == {chain.addr("S"): -90, chain.addr("B"): -60}


def test_e7_surplus_paid_by_the_grid_operator() -> None:
    chain = _e7_chain()
    chain.ok(chain.tx("S", SubmitReading(slot=1, import_wh=0, export_wh=7), meter=True),
             chain.tx("B", SubmitReading(slot=1, import_wh=8, export_wh=0), meter=True),
             at_ms=2_500)
    chain.ok(at_ms=3_000)
    assert chain.account("B").balance_u == 1_000 - 200 + 16
    assert chain.account("grid").balance_u == 90 - 16


def test_e8_missing_reading_takes_pending_then_free_balance() -> None:
    chain = _e7_chain(seller_free_u=100)
    chain.ok(chain.tx("B", SubmitReading(slot=1, import_wh=12, export_wh=0), meter=True), at_ms=2_000)
    chain.ok(at_ms=3_000)
    line = next(ln for ln in chain.state.settlements.values() if ln.account == chain.addr("S"))
    assert (line.delta_wh, line.imbalance_u, line.reading_missing) == (-10, -300, True)
    s = chain.account("S")
    assert (s.balance_u, s.pending_u, s.debt_u) == (0, 0, 0)  # pending 200 + 100 free
    assert chain.account("grid").balance_u == 300 + 60


def test_e8_missing_reading_records_debt_for_what_it_lacks() -> None:
    chain = _e7_chain(seller_free_u=40)
    chain.ok(at_ms=3_000)
    s = chain.account("S")
    assert (s.balance_u, s.pending_u, s.debt_u) == (0, 0, 60)
    line = next(ln for ln in chain.state.settlements.values() if ln.account == chain.addr("S"))
    assert line.debt_added_u == 60
