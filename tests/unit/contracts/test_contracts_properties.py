"""Property tests (hypothesis) for every MARKET.md invariant, on the pure auction and on
random markets run through apply_block."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus import codec
from contracts import records as rec
from contracts.executor import BlockInput, apply_block
from contracts.market import BookOrder, clear
from contracts.state import decode_state, encode_state, pair_key
from contracts.transactions import (
    Burn,
    CancelOrder,
    Mint,
    PlaceOrder,
    SubmitReading,
    Transfer,
    decode_signed_tx,
)

from .helpers import Chain, check_invariants, market_params

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def books(draw):
    p_min = draw(st.integers(0, 20))
    p_max = draw(st.integers(p_min, 60))
    fee = draw(st.integers(0, 8))
    price = st.integers(p_min, p_max)
    bids = draw(st.lists(st.tuples(price, st.integers(1, 40)), max_size=25))
    asks = draw(st.lists(st.tuples(price, st.integers(1, 40)), max_size=25))
    seqs = draw(st.permutations(range(len(bids) + len(asks))))
    b = [BookOrder(f"b{i}", p, q, (0, seqs[i])) for i, (p, q) in enumerate(bids)]
    a = [BookOrder(f"a{i}", p, q, (0, seqs[len(bids) + i])) for i, (p, q) in enumerate(asks)]
    return b, a, p_min, p_max, fee


@PROPS
@given(book=books(), data=st.data())
def test_auction_invariants_and_permutation_invariance(book, data) -> None:
    bids, asks, p_min, p_max, fee = book
    result = clear(bids, asks, p_min=p_min, p_max=p_max, fee=fee)
    by_id = {o.order_id: o for o in [*bids, *asks]}
    filled: dict[str | int, int] = {}
    for f in result.fills:
        filled[f.buy_order] = filled.get(f.buy_order, 0) + f.quantity_wh
        filled[f.sell_order] = filled.get(f.sell_order, 0) + f.quantity_wh
        assert f.quantity_wh > 0
    bought = sum(q for i, q in filled.items() if str(i).startswith("b"))
    sold = sum(q for i, q in filled.items() if str(i).startswith("a"))
    assert bought == sold == result.volume_wh  # Σ bought = Σ sold
    assert all(q <= by_id[i].quantity_wh for i, q in filled.items())
    if result.price is None:
        assert result.fills == ()
    else:
        p = result.price
        assert p_min <= p <= p_max
        for i in filled:
            o = by_id[i]
            assert p <= o.price if str(i).startswith("b") else p >= o.price + fee  # within every limit
        # Σ buyer payments = Σ seller earnings + grid fees.
        assert p * bought == (p - fee) * sold + fee * result.volume_wh
    # Nothing tradeable is left: the best unfilled bid is below the best unfilled ask's effective price.
    open_bids = [o.price for o in bids if filled.get(o.order_id, 0) < o.quantity_wh]
    open_asks = [o.price + fee for o in asks if filled.get(o.order_id, 0) < o.quantity_wh]
    if open_bids and open_asks:
        assert max(open_bids) < min(open_asks)
    # Same orders with the same sequences, submitted in any order: same trades and digest.
    shuffled_bids = data.draw(st.permutations(bids))
    shuffled_asks = data.draw(st.permutations(asks))
    assert clear(shuffled_bids, shuffled_asks, p_min=p_min, p_max=p_max, fee=fee) == result


TRADERS = ("con", "con2", "pro", "ret", "gen", "gen2")
SIDES = {"con": ("buy",), "con2": ("buy",), "gen": ("sell",), "gen2": ("sell",),
         "pro": ("buy", "sell"), "ret": ("buy", "sell")}


@st.composite
def markets(draw):
    p_min = draw(st.integers(0, 10))
    p_max = draw(st.integers(p_min, 60))
    params = dict(p_min=p_min, p_max=p_max, grid_fee=draw(st.integers(0, 5)),
                  p_short=draw(st.integers(p_max, 80)), p_long=draw(st.integers(0, p_min)),
                  history_slots=draw(st.sampled_from([0, 1, 10_080])))
    orders = []
    for _ in range(draw(st.integers(0, 30))):
        who = draw(st.sampled_from(TRADERS))
        orders.append((who, draw(st.sampled_from(SIDES[who])), draw(st.integers(p_min, p_max)),
                       draw(st.integers(1, 300)), draw(st.integers(1, 2)), draw(st.integers(0, 1)),
                       draw(st.booleans()) and draw(st.booleans())))  # cancelled in block 2
    readings = {}
    for who in TRADERS:
        for slot in (1, 2):
            if draw(st.booleans()):
                readings[(who, slot)] = (draw(st.integers(0, 400)), draw(st.integers(0, 400)))
    money = (draw(st.integers(1, 5_000)), draw(st.integers(1, 5_000)), draw(st.integers(1, 5_000)))
    return params, orders, readings, money


def build_blocks(chain: Chain, orders, readings, money) -> list[BlockInput]:
    mint_u, transfer_u, burn_u = money
    placing: list[list[bytes]] = [
        [chain.tx("grid", Mint(to=chain.addr("gen"), amount_u=mint_u)),
         chain.tx("con", Transfer(to=chain.addr("gen2"), amount_u=transfer_u))], []]
    cancels = []
    for who, side, price, qty, slot, block, cancel in orders:
        raw = chain.tx(who, PlaceOrder(slot=slot, side=side, price_u_per_wh=price, quantity_wh=qty))
        placing[block].append(raw)
        if cancel and block == 0:
            cancels.append((who, decode_signed_tx(raw).tx_hash.hex()))
    placing[1] += [chain.tx(who, CancelOrder(order_id=order_id)) for who, order_id in cancels]
    reads = {slot: [chain.tx(who, SubmitReading(slot=slot, import_wh=i, export_wh=e), meter=True)
                    for (who, s), (i, e) in sorted(readings.items()) if s == slot] for slot in (1, 2)}
    burn = [chain.tx("grid", Burn(amount_u=burn_u))]  # may fail: grid income is random
    plan = [(placing[0], 100), (placing[1], 200), ([], 1_000), (reads[1], 2_000), (reads[2], 3_000),
            (burn, 4_000)]
    return [BlockInput(height=h, round=h, timestamp_ms=at, proposer=0, voters=(0,), txs=txs)
            for h, (txs, at) in enumerate(plan, start=1)]


@PROPS
@given(market=markets())
def test_random_markets_keep_every_invariant_and_replay_identically(market) -> None:
    params, orders, readings, money = market
    chain = Chain(market=market_params(**params))
    blocks = build_blocks(chain, orders, readings, money)
    verified = {decode_signed_tx(raw).tx_hash for b in blocks for raw in b.txs}
    roots = []
    for block in blocks:
        _, _, result = apply_block(chain.state, block, verified=verified)
        roots.append(result.state_root)
        check_invariants(chain.state)  # no negatives, locks = Σ open bids, supply conserved
        records = [codec.decode(leaf, rec.Record) for leaf in result.leaves]  # type: ignore[arg-type]
        lines: dict[int, int] = {}
        for r in records:
            if isinstance(r, rec.SettlementRecord):
                lines[r.slot] = lines.get(r.slot, 0) + r.imbalance_u
            if isinstance(r, rec.SlotSettled):
                assert lines.get(r.slot, 0) + r.grid_u == 0  # settlement is zero-sum
    state = chain.state
    fee = params["grid_fee"]
    for slot in (1, 2):
        record = state.slots.get(f"{slot:016d}")
        positions = [p for p in state.positions.values() if p.slot == slot]
        assert sum(p.bought_wh for p in positions) == sum(p.sold_wh for p in positions)
        if record is not None and record.volume_wh:
            assert sum(p.paid_u for p in positions) == (
                sum(p.proceeds_u for p in positions) + fee * record.volume_wh)
            for p in positions:
                line = state.settlements[pair_key(slot, p.account)]
                assert line.contracted_wh == p.sold_wh - p.bought_wh
    # Replaying the same blocks from genesis gives the same roots, whatever the signature path,
    # also when the node restarts from a snapshot between blocks.
    replay = Chain(market=market_params(**params)).state
    replay_roots = []
    for block in blocks:
        replay = decode_state(encode_state(replay))
        replay_roots.append(apply_block(replay, block)[2].state_root)
    assert replay_roots == roots
    assert encode_state(replay) == encode_state(state)
