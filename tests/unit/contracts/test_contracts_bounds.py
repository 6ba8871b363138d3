"""Bounds by construction (docs/BOUNDS.md): genesis refuses bounds that could leave the
64-bit range, contracts refuse values above them, debts stop at their bound, and no
transaction a participant can sign makes ``apply_block`` raise."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus import codec
from contracts import errors, executor
from contracts import records as rec
from contracts.executor import BlockInput, apply_block, check_tx
from contracts.genesis import SAFE_INT, GenesisError, LimitParams, TokenParams, bound_products
from contracts.state import decode_state, encode_state
from contracts.transactions import (
    AckDispatch,
    ApproveRegistration,
    Burn,
    CancelOrder,
    ChallengeChannel,
    ChannelState,
    CloseChannel,
    ForceCloseChannel,
    FundChannel,
    IssueDispatch,
    Mint,
    Notarize,
    OpenChannel,
    PlaceOrder,
    RegisterRequest,
    RejectRegistration,
    SetMeterKey,
    SetNodeKey,
    SettleChannel,
    SubmitReading,
    SuspendAccount,
    Transfer,
    decode_signed_tx,
    notary_statement_bytes,
    sign_channel_state,
)

from .helpers import CHAIN_ID, Chain, check_invariants, market_params

MAX_WIRE = 2**63 - 1


def _reading(chain: Chain, import_wh: int, *, slot: int = 0) -> bytes:
    return chain.tx("con", SubmitReading(slot=slot, import_wh=import_wh, export_wh=0), meter=True)


# --- genesis ------------------------------------------------------------------------------------

def test_default_bounds_are_accepted_and_far_inside_64_bits() -> None:
    chain = Chain(market=market_params())
    assert all(v <= SAFE_INT for v in bound_products(chain.genesis).values())


@pytest.mark.parametrize("overrides", [
    dict(market=market_params(max_reading_wh=2**62)),  # |Δ| × p_short
    dict(market=market_params(max_order_wh=2**40, max_orders_per_slot=2**30)),  # a slot's Wh
    dict(market=market_params(p_max=2**40, p_short=2**40)),  # a slot's payments
    dict(token=TokenParams(max_supply_u=2**62)),  # money: supply + rewards + debts
    dict(token=TokenParams(max_debt_u=2**50)),  # money: max_accounts × max_debt_u
    dict(token=TokenParams(block_reward_proposer_u=2**30)),  # money: lifetime rewards
    dict(limits=LimitParams(max_penalty_u=2**62 + 1)),
    dict(limits=LimitParams(registration_ttl_slots=2**60)),  # time span
    dict(limits=LimitParams(max_accounts=3)),  # fewer than the genesis accounts
    dict(token=TokenParams(max_supply_u=10)),  # below the genesis balances
])
def test_genesis_refuses_bounds_that_could_overflow(overrides: dict[str, Any]) -> None:
    with pytest.raises(GenesisError):
        Chain(**overrides)


# --- the reported attack and each bound at admission and in a block ---------------------------

def test_the_max_int_reading_is_refused_at_admission_and_in_a_block() -> None:
    """Issue: import 2^63−1 for the previous slot made settlement overflow on every node."""
    chain = Chain()
    chain.ok(at_ms=1_500)
    raw = _reading(chain, MAX_WIRE)
    with pytest.raises(errors.TxError) as caught:
        check_tx(chain.state, decode_signed_tx(raw), now_ms=1_500)
    assert caught.value.code == errors.BAD_QUANTITY
    chain.expect_rejected(raw, errors.BAD_QUANTITY, at_ms=1_600)
    bound = chain.genesis.market.max_reading_wh
    chain.ok(_reading(chain, bound), at_ms=1_700)
    _, result = chain.block(at_ms=2_000)  # settles slot 0 with the largest reading allowed
    check_invariants(chain.state)
    line = next(r for r in map(_record, result.leaves) if isinstance(r, rec.SettlementRecord))
    assert line.delta_wh == -bound and line.imbalance_u == -bound * chain.genesis.market.p_short


def _record(leaf: bytes) -> Any:
    return codec.decode(leaf, rec.Record)  # type: ignore[arg-type]


def test_dispatch_amount_and_penalty_bounds() -> None:
    chain = Chain()
    limits = chain.genesis.limits
    con = chain.addr("con")

    def dispatch(amount_wh: int, penalty_u: int) -> bytes:
        return chain.tx("grid", IssueDispatch(account=con, direction="curtail", amount_wh=amount_wh,
                                              deadline_ms=500, penalty_u=penalty_u))

    for raw, code in ((dispatch(limits.max_dispatch_wh + 1, 1), errors.BAD_QUANTITY),
                      (dispatch(1, limits.max_penalty_u + 1), errors.BAD_AMOUNT),
                      (dispatch(MAX_WIRE, MAX_WIRE), errors.BAD_QUANTITY)):
        with pytest.raises(errors.TxError) as caught:
            check_tx(chain.state, decode_signed_tx(raw), now_ms=0)
        assert caught.value.code == code
        chain.expect_rejected(raw, code)
    chain.ok(dispatch(limits.max_dispatch_wh, limits.max_penalty_u))


def test_mint_is_bounded_by_the_supply_bound_and_never_reaches_a_pending_account() -> None:
    chain = Chain(token=TokenParams(max_supply_u=10_000_000))
    token = chain.genesis.token
    per_block_u = token.block_reward_proposer_u + token.block_reward_voter_u  # minted before the txs
    headroom = 10_000_000 - chain.state.meta.supply_u - per_block_u
    raw = chain.tx("grid", Mint(to=chain.addr("gen"), amount_u=MAX_WIRE))
    with pytest.raises(errors.TxError) as caught:
        check_tx(chain.state, decode_signed_tx(raw), now_ms=0)
    assert caught.value.code == errors.BAD_AMOUNT
    chain.expect_rejected(chain.tx("grid", Mint(to=chain.addr("gen"), amount_u=headroom + 1)),
                          errors.LIMIT_REACHED)
    chain.ok(chain.tx("grid", Mint(to=chain.addr("gen"), amount_u=headroom - per_block_u)))
    assert chain.state.meta.supply_u == 10_000_000
    chain.ok(chain.tx("outsider", RegisterRequest(role="consumer", zone="Z1", name="x")))
    chain.expect_rejected(chain.tx("grid", Mint(to=chain.addr("outsider"), amount_u=1)),
                          errors.NOT_REGISTERED)


def test_registrations_stop_at_max_accounts() -> None:
    chain = Chain()
    n = len(chain.state.accounts)
    chain = Chain(limits=LimitParams(max_accounts=n + 1))
    chain.ok(chain.tx("outsider", RegisterRequest(role="consumer", zone="Z1", name="one")))
    chain.expect_rejected(chain.tx("meter", RegisterRequest(role="consumer", zone="Z1", name="two")),
                          errors.LIMIT_REACHED)


# --- debts stop at their bound ------------------------------------------------------------------

def test_an_imbalance_beyond_the_debt_bound_is_written_off_and_stays_zero_sum() -> None:
    """con (balance 10^6) reads 10^6 Wh imported with no contract: it owes 10^8 µ at
    p_short = 100. It pays its balance, owes max_debt_u, the rest is written off, and the
    grid operator receives exactly what was collected."""
    chain = Chain(token=TokenParams(max_debt_u=5_000),
                  market=market_params(max_reading_wh=1_000_000))
    grid_before = chain.account("grid").balance_u
    chain.ok(_reading(chain, 1_000_000), at_ms=1_500)
    _, result = chain.block(at_ms=2_000)
    con = chain.account("con")
    assert (con.balance_u, con.debt_u) == (0, 5_000)
    line = next(r for r in map(_record, result.leaves) if isinstance(r, rec.SettlementRecord))
    assert line.imbalance_u == -100_000_000 and line.debt_added_u == 5_000
    assert line.written_off_u == 100_000_000 - 1_000_000 - 5_000
    grid_gain = chain.account("grid").balance_u - grid_before
    assert grid_gain == 1_000_000 + 5_000
    settled = next(r for r in map(_record, result.leaves) if isinstance(r, rec.SlotSettled))
    assert settled.grid_u == grid_gain
    check_invariants(chain.state)
    # Another slot of the same: the debt stays at its bound.
    chain.ok(_reading(chain, 1_000_000, slot=2), at_ms=3_500)
    chain.ok(at_ms=4_000)
    assert chain.account("con").debt_u == 5_000
    check_invariants(chain.state)


def test_a_surplus_the_grid_operator_cannot_pay_is_written_off_beyond_its_debt_bound() -> None:
    chain = Chain(token=TokenParams(max_debt_u=700),
                  market=market_params(p_min=10, p_long=10, max_reading_wh=1_000))
    chain.ok(chain.tx("pro", SubmitReading(slot=0, import_wh=0, export_wh=1_000), meter=True), at_ms=1_500)
    _, result = chain.block(at_ms=2_000)
    line = next(r for r in map(_record, result.leaves) if isinstance(r, rec.SettlementRecord))
    assert line.imbalance_u == 10_000 and line.written_off_u == 10_000 - 700
    assert chain.account("grid").debt_u == 700
    assert chain.account("pro").balance_u == 1_000_000 + 700
    check_invariants(chain.state)


def test_a_missed_dispatch_penalty_beyond_the_debt_bound_is_written_off() -> None:
    chain = Chain(token=TokenParams(max_debt_u=100))
    gen = chain.addr("gen")  # balance 0
    chain.ok(chain.tx("grid", IssueDispatch(account=gen, direction="curtail", amount_wh=1, deadline_ms=10,
                                            penalty_u=1_000)))
    grid_before = chain.account("grid").balance_u
    _, result = chain.block(at_ms=10)
    resolved = next(r for r in map(_record, result.leaves) if isinstance(r, rec.DispatchResolved))
    assert (resolved.debt_added_u, resolved.written_off_u) == (100, 900)
    assert chain.account("gen").debt_u == 100
    assert chain.account("grid").balance_u - grid_before == 100
    check_invariants(chain.state)


# --- every field of every kind over its whole wire range ---------------------------------------

NAMES = ("grid", "gen", "gen2", "con", "con2", "pro", "ret", "reg", "outsider", "meter")
DEBT_BOUND_U = 50_000
READING_BOUND_WH = 100_000
PENALTY_BOUND_U = 2_000_000
SUPPLY_BOUND_U = 10**9


def _genesis_kwargs() -> dict[str, Any]:
    return dict(market=market_params(p_min=2, p_long=1, grid_fee=1, max_reading_wh=READING_BOUND_WH,
                                      max_orders_per_slot=50, history_slots=3),
                token=TokenParams(max_supply_u=SUPPLY_BOUND_U, max_debt_u=DEBT_BOUND_U),
                limits=LimitParams(max_pending_registrations=1, registration_ttl_slots=2,
                                   max_penalty_u=PENALTY_BOUND_U, max_dispatch_wh=10**6, max_accounts=11,
                                   max_open_dispatches=4, max_dispatch_horizon_ms=5_000))


def wide(low: int, *near: int) -> st.SearchStrategy[int]:
    """An int in [low, 2^63−1]: anywhere, at the edges, or just around the bounds ``near``."""
    edges = [low, low + 1, 2**31, 2**32, 2**62, MAX_WIRE]
    around = [v + d for v in near for d in (-1, 0, 1) if low <= v + d <= MAX_WIRE]
    return st.one_of(st.sampled_from(around + edges), st.integers(low, MAX_WIRE),
                     st.integers(low, low + 3 * max([1, *near])))


def half(a: st.SearchStrategy[Any], b: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.booleans().flatmap(lambda first: a if first else b)


def mostly(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``common`` three times in four, else ``rare`` (``one_of`` alone leans to its first branch)."""
    return st.integers(0, 3).flatmap(lambda k: rare if k == 0 else common)


class Plan:
    """What the drawing needs to know while it builds blocks: names, times, order ids."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.order_ids: list[str] = []
        self.channel_ids: list[str] = []


@st.composite
def bodies(draw: Any, plan: Plan, now_ms: int) -> tuple[str, Any, bool]:
    """(sender name, body, signed by the meter sequence) for one transaction at ``now_ms``."""
    chain = plan.chain
    slot_now = now_ms // 1_000
    addr = mostly(st.sampled_from([chain.addr(n) for n in NAMES]),
                  st.binary(min_size=20, max_size=20).map(bytes.hex))
    anyone = st.sampled_from(NAMES)
    order_slot = mostly(st.sampled_from([slot_now + 1, slot_now + 2, slot_now, slot_now + 11]), wide(0))
    kind = draw(st.sampled_from([
        "register", "approve", "reject", "suspend", "meter_key", "transfer", "mint", "burn", "order",
        "order", "cancel", "reading", "reading", "dispatch", "dispatch", "ack", "notarize", "node_key", "channel",
        "channel", "channel"]))
    grid_or_anyone = st.one_of(st.just("grid"), st.just("grid"), anyone)
    if kind == "register":
        role = draw(st.sampled_from(["generator", "consumer", "prosumer", "retailer", "grid", "regulator",
                                     "validator"]))
        key = draw(st.one_of(st.none(), st.binary(min_size=32, max_size=32)))
        applicant = st.sampled_from(("outsider", "meter"))
        sender = draw(st.one_of(applicant, applicant, anyone))
        return sender, RegisterRequest(role=role, zone="Z1", name="n", meter_key=key), False  # type: ignore[arg-type]
    if kind in ("approve", "reject", "suspend", "meter_key"):
        applicants = st.sampled_from([chain.addr("outsider"), chain.addr("meter")])
        who = draw(mostly(applicants, addr) if kind in ("approve", "reject") else addr)
        body: Any = {
            "approve": ApproveRegistration(account=who), "reject": RejectRegistration(account=who),
            "suspend": SuspendAccount(account=who, suspended=draw(st.booleans())),
            "meter_key": SetMeterKey(account=who, meter_key=draw(st.one_of(
                st.none(), st.sampled_from([chain.signers["meter"].public_key])))),
        }[kind]
        return draw(grid_or_anyone), body, False
    if kind == "node_key":
        # Mostly one shared key, so that a second account naming it meets ``key_in_use``.
        key = draw(mostly(st.just(chain.signers["meter"].public_key),
                          st.one_of(st.none(), st.binary(min_size=32, max_size=32))))
        return draw(anyone), SetNodeKey(node_key=key), False
    if kind in ("transfer", "mint"):
        amount = draw(half(st.integers(1, 100_000), wide(1, SUPPLY_BOUND_U, 1_000_000)))
        body = Transfer(to=draw(addr), amount_u=amount) if kind == "transfer" else Mint(to=draw(addr), amount_u=amount)
        return draw(grid_or_anyone if kind == "mint" else anyone), body, False
    if kind == "burn":
        return draw(grid_or_anyone), Burn(amount_u=draw(wide(1, 1_000_000))), False
    if kind == "order":
        p_max, max_wh = chain.genesis.market.p_max, chain.genesis.market.max_order_wh
        body = PlaceOrder(slot=draw(order_slot), side=draw(st.sampled_from(["buy", "sell"])),
                          price_u_per_wh=draw(mostly(st.integers(0, p_max), wide(0, p_max))),
                          quantity_wh=draw(half(st.integers(1, 2_000), wide(0, max_wh))))
        traders = ("con", "con2", "pro", "ret") if body.side == "buy" else ("gen", "gen2", "pro", "ret")
        return draw(st.one_of(st.sampled_from(traders), st.sampled_from(traders), anyone)), body, False
    if kind == "cancel":
        order_id = draw(st.one_of(st.sampled_from(plan.order_ids or ["0" * 64]),
                                  st.binary(min_size=32, max_size=32).map(bytes.hex)))
        return draw(anyone), CancelOrder(order_id=order_id), False
    if kind == "reading":
        # The acceptance window of slot s is [s + 1, s + 2) seconds: s = now − 1 is open.
        slot = draw(mostly(st.just(slot_now - 1), st.one_of(st.just(slot_now), wide(0))))
        value = half(st.integers(0, READING_BOUND_WH), wide(0, READING_BOUND_WH))
        body = SubmitReading(slot=max(slot, 0), import_wh=draw(value), export_wh=draw(value))
        metered = st.sampled_from(("con", "con2", "pro", "ret", "gen", "gen2"))
        return draw(st.one_of(metered, metered, anyone)), body, True
    if kind == "dispatch":
        deadline = draw(mostly(st.integers(now_ms + 1, now_ms + 6_000), wide(0)))
        body = IssueDispatch(account=draw(addr), direction=draw(st.sampled_from(["curtail", "increase"])),
                             amount_wh=draw(mostly(st.integers(1, 10**6), wide(1, 10**6))), deadline_ms=deadline,
                             penalty_u=draw(half(st.integers(0, PENALTY_BOUND_U), wide(0, PENALTY_BOUND_U))))
        return draw(grid_or_anyone), body, False
    if kind == "ack":
        return draw(anyone), AckDispatch(dispatch_id=draw(st.one_of(st.integers(0, 6), wide(0)))), False
    if kind == "channel":
        return draw(channel_bodies(plan))
    sender = draw(anyone)
    parties = tuple(sorted({chain.addr(sender), *draw(st.lists(st.sampled_from(
        [chain.addr(n) for n in NAMES]), max_size=3))}))
    doc = hashlib.sha256(b"doc%d" % draw(st.integers(0, 3))).digest()
    by_addr = {chain.addr(n): chain.signers[n] for n in NAMES}
    statement = notary_statement_bytes(chain_id=CHAIN_ID, doc_hash=doc, parties=parties)
    signatures = tuple(by_addr[p].sign(chain_id=CHAIN_ID, kind="NOTARY", message=statement)
                       if draw(st.integers(0, 4)) else bytes(64) for p in parties)
    return sender, Notarize(doc_hash=doc, parties=parties, signatures=signatures), False


@st.composite
def channel_bodies(draw: Any, plan: Plan) -> tuple[str, Any, bool]:
    """A channel transaction: wide values, real or forged signatures, known or unknown channels."""
    chain = plan.chain
    anyone = st.sampled_from(NAMES)
    channel_id = draw(st.one_of(st.sampled_from(plan.channel_ids or ["0" * 64]),
                                st.binary(min_size=32, max_size=32).map(bytes.hex)))
    which = draw(st.sampled_from(["open", "open", "fund", "close", "force", "force", "challenge", "settle"]))
    if which == "open":
        body: Any = OpenChannel(counterparty=chain.addr(draw(anyone)), deposit_u=draw(half(st.integers(1, 5_000),
                                                                                          wide(1))),
                                challenge_slots=draw(mostly(st.integers(1, 3), wide(1, 10_080))))
        return draw(anyone), body, False
    if which == "fund":
        return draw(anyone), FundChannel(channel_id=channel_id, deposit_u=draw(half(st.integers(1, 5_000), wide(1)))), False
    if which == "settle":
        return draw(anyone), SettleChannel(channel_id=channel_id), False
    known = chain.state.channels.get(channel_id)
    total = 0 if known is None else known.total_u
    balance_a = draw(mostly(st.integers(0, total), wide(0)))
    cs = ChannelState(channel_id=channel_id, seq=draw(mostly(st.integers(0, 5), wide(0))), balance_a_u=balance_a,
                      balance_b_u=draw(mostly(st.just(max(0, total - balance_a)), wide(0))),
                      energy_wh=draw(wide(0)), reading_slots=tuple(draw(st.lists(wide(0), max_size=3))),
                      final=draw(st.booleans()))
    by_addr = {chain.addr(n): n for n in NAMES}
    parties = [by_addr.get(known.party_a, "outsider"), by_addr.get(known.party_b, "outsider")] if known else [
        "outsider", "meter"]

    def signature(name: str) -> bytes:
        if draw(st.integers(0, 4)) == 0:
            return bytes(64)
        return sign_channel_state(cs, chain.signers[name], chain_id=CHAIN_ID)

    if which == "force":
        sender = draw(st.sampled_from([*parties, "con"]))
        other = parties[1] if sender == parties[0] else parties[0]
        return sender, ForceCloseChannel(state=cs, signature=draw(st.one_of(st.none(), st.just(signature(other))))), False
    sigs = dict(state=cs, signature_a=signature(parties[0]), signature_b=signature(parties[1]))
    if which == "close":
        return draw(st.sampled_from([*parties, "con"])), CloseChannel(**sigs), False
    return draw(anyone), ChallengeChannel(**sigs), False


@st.composite
def probes(draw: Any, plan: Plan, now_ms: int) -> list[bytes]:
    """Well-formed, authorised transactions, one per bound, each with its value at, just above
    or far above the bound, sent where it reaches its handler (the open reading window, an open
    slot), and a registration with its rejection: every history that draws them probes every
    bound, whatever else it draws."""
    chain = plan.chain
    m, limits = chain.genesis.market, chain.genesis.limits

    def pick(*values: int) -> int:
        return values[draw(st.integers(0, len(values) - 1))]

    reader = draw(st.sampled_from(["con", "pro", "gen"]))
    wh = pick(READING_BOUND_WH, READING_BOUND_WH + 1, MAX_WIRE)
    out = [
        chain.tx(reader, SubmitReading(slot=max(0, now_ms // 1_000 - 1), import_wh=wh if reader != "gen" else 0,
                                       export_wh=wh if reader == "gen" else 0), meter=True),
        chain.tx("gen", PlaceOrder(slot=now_ms // 1_000 + 1, side="sell", price_u_per_wh=10,
                                   quantity_wh=pick(m.max_order_wh, m.max_order_wh + 1, MAX_WIRE))),
        chain.tx("gen2", PlaceOrder(slot=now_ms // 1_000 + 1, side="sell", quantity_wh=100,
                                    price_u_per_wh=pick(m.p_max, m.p_max + 1, MAX_WIRE))),
        chain.tx("grid", Mint(to=chain.addr(draw(st.sampled_from(["con", "gen"]))),
                              amount_u=pick(1_000, SUPPLY_BOUND_U, MAX_WIRE))),
    ]
    for penalty, amount_wh in ((pick(PENALTY_BOUND_U, PENALTY_BOUND_U + 1, MAX_WIRE), 1),
                               (1, pick(limits.max_dispatch_wh, limits.max_dispatch_wh + 1, MAX_WIRE))):
        out.append(chain.tx("grid", IssueDispatch(account=chain.addr(draw(st.sampled_from(["con", "gen", "ret"]))),
                                                  direction="curtail", amount_wh=amount_wh,
                                                  deadline_ms=now_ms + 1 + draw(st.integers(0, 3_000)),
                                                  penalty_u=penalty)))
    applicant = draw(st.sampled_from(["outsider", "meter"]))
    out.append(chain.tx(applicant, RegisterRequest(role="consumer", zone="Z1", name="probe")))
    if draw(st.booleans()):
        out.append(chain.tx("grid", RejectRegistration(account=chain.addr(applicant))))
    return out


@st.composite
def histories(draw: Any) -> tuple[list[BlockInput], Chain]:
    chain = Chain(**_genesis_kwargs())
    plan = Plan(chain)
    blocks = []
    now_ms = 0
    for height in range(1, draw(st.integers(2, 9)) + 1):
        now_ms += draw(st.sampled_from([0, 1, 300, 700, 1_000, 1_500, 2_500]))
        txs = []
        if draw(st.integers(0, 2)) == 0:  # a crossing pair, so slots clear with trades to settle
            slot = now_ms // 1_000 + 1
            max_wh = chain.genesis.market.max_order_wh
            for name, side, price in (("pro", "buy", 60), (draw(st.sampled_from(["gen", "gen2"])), "sell", 40)):
                qty = draw(half(st.integers(1, 5_000), st.sampled_from([max_wh, max_wh + 1])))
                txs.append(chain.tx(name, PlaceOrder(slot=slot, side=side, price_u_per_wh=price,  # type: ignore[arg-type]
                                                     quantity_wh=qty)))
        if draw(st.booleans()):
            txs.extend(draw(probes(plan, now_ms)))
        for _ in range(draw(st.integers(0, 6))):
            if draw(st.integers(0, 19)) == 0:
                txs.append(draw(st.binary(max_size=64)))  # garbage bytes
                continue
            name, body, meter = draw(bodies(plan, now_ms))
            # Mostly the next nonce and a far expiry, so that most transactions reach their handler.
            nonce = draw(st.one_of(st.none(), wide(1))) if draw(st.integers(0, 9)) == 0 else None
            expires = draw(wide(0)) if draw(st.integers(0, 9)) == 0 else 10**12
            raw = chain.tx(name, body, meter=meter, nonce=nonce, expires_at_ms=expires)
            if isinstance(body, PlaceOrder):
                plan.order_ids.append(decode_signed_tx(raw).tx_hash.hex())
            if isinstance(body, OpenChannel):
                plan.channel_ids.append(decode_signed_tx(raw).tx_hash.hex())
            txs.append(raw)
            if draw(st.integers(0, 9)) == 0:
                txs.append(raw)  # the same bytes twice
        blocks.append(BlockInput(height=height, round=height, timestamp_ms=now_ms, proposer=0, voters=(0,),
                                 txs=txs))
    return blocks, chain


def _zero_sum(records: list[Any]) -> None:
    """Per settled slot: Σ what accounts gained + what the grid operator gained = 0."""
    gained: dict[int, int] = {}
    for r in records:
        if isinstance(r, rec.SettlementRecord):
            paid = r.imbalance_u + r.written_off_u if r.imbalance_u < 0 else r.imbalance_u - r.written_off_u
            gained[r.slot] = gained.get(r.slot, 0) + paid
        elif isinstance(r, rec.SlotSettled):
            assert gained.get(r.slot, 0) + r.grid_u == 0


def test_any_wire_value_of_any_field_never_breaks_a_block() -> None:
    """Every field of every kind drawn from its full wire range (and around its bound),
    from authorised and unauthorised senders, with random nonces, expiries, duplicates and
    garbage bytes: ``apply_block`` never raises, every invariant holds, settlement is
    zero-sum, and a replay from genesis (through a snapshot) gives the same roots.
    The counters show the draws reached the interesting windows, so the test is not vacuous."""
    seen: Counter[tuple[str, str]] = Counter()

    @settings(max_examples=200, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(history=histories())
    def run(history: tuple[list[BlockInput], Chain]) -> None:
        blocks, chain = history
        roots = []
        for block in blocks:
            _, receipts, result = apply_block(chain.state, block)
            roots.append(result.state_root)
            check_invariants(chain.state)
            records = [_record(leaf) for leaf in result.leaves]
            _zero_sum(records)
            seen.update((r.kind, r.code) for r in receipts)
            seen.update((type(r).__name__, "written_off" if getattr(r, "written_off_u", 0) else "")
                        for r in records)
        assert chain.state.meta.pending_registrations == len(chain.state.pending_until_ms) <= 1
        replay = Chain(**_genesis_kwargs()).state
        replay_roots = []
        for block in blocks:
            replay = decode_state(encode_state(replay))
            replay_roots.append(apply_block(replay, block)[2].state_root)
        assert replay_roots == roots

    run()
    for needed in [("submit_reading", "ok"), ("submit_reading", errors.BAD_QUANTITY),
                   ("place_order", "ok"), ("place_order", errors.BAD_QUANTITY),
                   ("place_order", errors.PRICE_OUT_OF_RANGE), ("mint", "ok"), ("mint", errors.LIMIT_REACHED),
                   ("issue_dispatch", "ok"), ("issue_dispatch", errors.BAD_AMOUNT),
                   ("register_request", "ok"), ("reject_registration", "ok"), ("transfer", "ok"),
                   ("set_node_key", "ok"), ("set_node_key", errors.KEY_IN_USE),
                   ("TradeRecord", ""), ("SettlementRecord", ""), ("SettlementRecord", "written_off"),
                   ("DispatchResolved", ""), ("RegistrationDropped", ""), ("open_channel", "ok"),
                   ("ChannelOpened", "")]:
        assert seen[needed] > 0, (needed, sorted(seen.items()))


def test_the_executor_handles_every_kind() -> None:
    """The property test above draws every body kind the wire knows."""
    drawn = {AckDispatch, ApproveRegistration, Burn, CancelOrder, IssueDispatch, Mint, Notarize, PlaceOrder,
             RegisterRequest, RejectRegistration, SetMeterKey, SetNodeKey, SubmitReading, SuspendAccount,
             Transfer,
             OpenChannel, FundChannel, CloseChannel, ForceCloseChannel, ChallengeChannel, SettleChannel}
    assert drawn == set(executor.HANDLERS)
