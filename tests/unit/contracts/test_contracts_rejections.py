"""Every rejection code and every authorisation rule: a failed receipt with the
stable code, and the state exactly as if the transaction had not been in the
block (``Chain.expect_rejected`` compares full encoded states, root included)."""

from __future__ import annotations

import pytest

from consensus import codec, crypto
from contracts import errors
from contracts import records as rec
from contracts.genesis import LimitParams
from contracts.state import decode_state, encode_state
from contracts.transactions import (
    KIND_NOTARY,
    MAX_TX_BYTES,
    AckDispatch,
    ApproveRegistration,
    Burn,
    CancelOrder,
    IssueDispatch,
    Mint,
    Notarize,
    PlaceOrder,
    RegisterRequest,
    RejectRegistration,
    SetMeterKey,
    SignedTxWire,
    SubmitReading,
    SuspendAccount,
    Transfer,
    decode_signed_tx,
    notary_statement_bytes,
)

from .helpers import CHAIN_ID, Chain, market_params


@pytest.fixture
def chain() -> Chain:
    return Chain()


def buy(price: int = 10, qty: int = 5, slot: int = 1) -> PlaceOrder:
    return PlaceOrder(slot=slot, side="buy", price_u_per_wh=price, quantity_wh=qty)


def sell(price: int = 10, qty: int = 5, slot: int = 1) -> PlaceOrder:
    return PlaceOrder(slot=slot, side="sell", price_u_per_wh=price, quantity_wh=qty)


# --- envelope ---------------------------------------------------------------------------

def test_garbage_bytes_are_malformed(chain: Chain) -> None:
    chain.expect_rejected(b"\x93\x01\x02", errors.MALFORMED)


def test_non_canonical_encoding_is_malformed(chain: Chain) -> None:
    raw = chain.tx("con", buy())
    wire = codec.decode(raw, SignedTxWire)
    padded = codec.encode(SignedTxWire(tx_bytes=wire.tx_bytes + b"\xc0", signature=wire.signature))
    chain.expect_rejected(padded, errors.MALFORMED)


def test_oversized_tx_is_too_large(chain: Chain) -> None:
    chain.expect_rejected(b"\x00" * (MAX_TX_BYTES + 1), errors.TOO_LARGE)


def test_bad_signature(chain: Chain) -> None:
    raw = chain.tx("con", Transfer(to=chain.addr("pro"), amount_u=1))
    wire = codec.decode(raw, SignedTxWire)
    forged = codec.encode(SignedTxWire(tx_bytes=wire.tx_bytes, signature=bytes(64)))
    chain.expect_rejected(forged, errors.BAD_SIGNATURE)


def test_wrong_chain(chain: Chain) -> None:
    chain.expect_rejected(chain.tx("con", Transfer(to=chain.addr("pro"), amount_u=1), chain_id="other"),
                          errors.WRONG_CHAIN)


def test_expired(chain: Chain) -> None:
    chain.expect_rejected(chain.tx("con", Transfer(to=chain.addr("pro"), amount_u=1), expires_at_ms=500),
                          errors.EXPIRED, at_ms=500)


def test_stale_nonce_replay_is_rejected(chain: Chain) -> None:
    raw = chain.tx("con", Transfer(to=chain.addr("pro"), amount_u=1))
    chain.ok(raw)
    chain.expect_rejected(raw, errors.STALE_NONCE)
    chain.expect_rejected(chain.tx("con", Transfer(to=chain.addr("pro"), amount_u=1), nonce=1),
                          errors.STALE_NONCE)


def test_a_failed_tx_consumes_its_nonce_and_cannot_be_replayed_later(chain: Chain) -> None:
    """A transfer fails for want of funds; after the sender is topped up, the same raw
    bytes included again (a Byzantine leader, gossip) are stale, not a late success."""
    raw = chain.tx("con", Transfer(to=chain.addr("pro"), amount_u=2_000_000))
    receipt = chain.expect_rejected(raw, errors.INSUFFICIENT_BALANCE)
    assert receipt.nonce_consumed
    assert chain.account("con").nonce == 1
    chain.ok(chain.tx("grid", Mint(to=chain.addr("con"), amount_u=5_000_000)))
    replay = chain.expect_rejected(raw, errors.STALE_NONCE)
    assert not replay.nonce_consumed
    assert chain.account("con").balance_u == 6_000_000


def test_a_failed_reading_consumes_the_meter_nonce_only(chain: Chain) -> None:
    raw = chain.tx("con", SubmitReading(slot=5, import_wh=1, export_wh=0), meter=True)
    chain.expect_rejected(raw, errors.READING_WINDOW_CLOSED)
    assert (chain.account("con").meter_nonce, chain.account("con").nonce) == (1, 0)
    chain.expect_rejected(raw, errors.STALE_NONCE, at_ms=6_500)


def test_an_unauthenticated_failure_consumes_nothing(chain: Chain) -> None:
    """Bad signature: not attributable to the sender, so its nonce stays free."""
    raw = chain.tx("con", Transfer(to=chain.addr("pro"), amount_u=1), signer="outsider")
    receipt = chain.expect_rejected(raw, errors.WRONG_SIGNER)
    assert not receipt.nonce_consumed and chain.account("con").nonce == 0


def test_unknown_sender_is_not_registered(chain: Chain) -> None:
    chain.expect_rejected(chain.tx("outsider", Transfer(to=chain.addr("pro"), amount_u=1)),
                          errors.NOT_REGISTERED)


def test_someone_elses_key_is_wrong_signer(chain: Chain) -> None:
    chain.expect_rejected(chain.tx("con", Transfer(to=chain.addr("pro"), amount_u=1), signer="pro"),
                          errors.WRONG_SIGNER)


# --- registry ---------------------------------------------------------------------------

def test_registration_flow_and_only_grid_approves(chain: Chain) -> None:
    chain.ok(chain.tx("outsider", RegisterRequest(role="consumer", zone="Z2", name="newcomer")))
    assert chain.account("outsider").status == "pending"
    chain.expect_rejected(chain.tx("outsider", buy()), errors.NOT_REGISTERED)
    chain.expect_rejected(chain.tx("con", ApproveRegistration(account=chain.addr("outsider"))),
                          errors.UNAUTHORIZED)
    chain.ok(chain.tx("grid", ApproveRegistration(account=chain.addr("outsider"))))
    assert chain.account("outsider").status == "active"
    chain.expect_rejected(chain.tx("grid", ApproveRegistration(account=chain.addr("outsider"))),
                          errors.NOT_PENDING)


def test_register_twice_is_already_registered(chain: Chain) -> None:
    chain.expect_rejected(chain.tx("con", RegisterRequest(role="consumer", zone="Z1", name="again")),
                          errors.ALREADY_REGISTERED)


def test_register_as_grid_is_bad_role(chain: Chain) -> None:
    chain.expect_rejected(chain.tx("outsider", RegisterRequest(role="grid", zone="Z1", name="x")),
                          errors.BAD_ROLE)


def test_approve_unknown_account(chain: Chain) -> None:
    chain.expect_rejected(chain.tx("grid", ApproveRegistration(account="ab" * 20)), errors.UNKNOWN_ACCOUNT)


def test_only_grid_suspends_and_suspended_accounts_cannot_act(chain: Chain) -> None:
    chain.expect_rejected(chain.tx("pro", SuspendAccount(account=chain.addr("con"))), errors.UNAUTHORIZED)
    chain.ok(chain.tx("grid", SuspendAccount(account=chain.addr("con"))))
    chain.expect_rejected(chain.tx("con", buy()), errors.NOT_REGISTERED)
    chain.ok(chain.tx("grid", SuspendAccount(account=chain.addr("con"), suspended=False)))
    chain.ok(chain.tx("con", buy()))


def test_only_grid_sets_meter_keys(chain: Chain) -> None:
    key = chain.signers["meter"].public_key
    chain.expect_rejected(chain.tx("con", SetMeterKey(account=chain.addr("con"), meter_key=key)),
                          errors.UNAUTHORIZED)


# --- token ------------------------------------------------------------------------------

def test_transfer_moves_balance(chain: Chain) -> None:
    chain.ok(chain.tx("con", Transfer(to=chain.addr("pro"), amount_u=7)))
    assert chain.account("con").balance_u == 1_000_000 - 7
    assert chain.account("pro").balance_u == 1_000_000 + 7


@pytest.mark.parametrize(("body", "code"), [
    (lambda c: Transfer(to=c.addr("pro"), amount_u=1_000_001), errors.INSUFFICIENT_BALANCE),
    (lambda c: Transfer(to="cd" * 20, amount_u=1), errors.UNKNOWN_ACCOUNT),
    (lambda c: Transfer(to=c.addr("con"), amount_u=1), errors.BAD_AMOUNT),
])
def test_transfer_rejections(chain: Chain, body, code: str) -> None:
    chain.expect_rejected(chain.tx("con", body(chain)), code)


def test_only_grid_mints_and_burns(chain: Chain) -> None:
    chain.expect_rejected(chain.tx("con", Mint(to=chain.addr("con"), amount_u=5)), errors.UNAUTHORIZED)
    chain.expect_rejected(chain.tx("con", Burn(amount_u=5)), errors.UNAUTHORIZED)
    before = chain.state.meta
    chain.ok(chain.tx("grid", Mint(to=chain.addr("grid"), amount_u=50)))
    chain.ok(chain.tx("grid", Burn(amount_u=20)))
    after = chain.state.meta
    assert chain.account("grid").balance_u == 30
    assert (after.minted_u - before.minted_u, after.burned_u - before.burned_u) == (50, 20)
    assert after.supply_u - before.supply_u == 30 + after.rewards_u - before.rewards_u
    chain.expect_rejected(chain.tx("grid", Burn(amount_u=31)), errors.INSUFFICIENT_BALANCE)


# --- market -----------------------------------------------------------------------------

@pytest.mark.parametrize(("who", "body"), [
    ("con", sell()), ("gen", buy()), ("grid", buy()), ("reg", sell()),
])
def test_role_not_allowed(chain: Chain, who: str, body: PlaceOrder) -> None:
    chain.expect_rejected(chain.tx(who, body), errors.ROLE_NOT_ALLOWED)


def test_slot_closed_at_gate_and_beyond_horizon(chain: Chain) -> None:
    chain.expect_rejected(chain.tx("con", buy(slot=1)), errors.SLOT_CLOSED, at_ms=1_000)
    chain.expect_rejected(chain.tx("con", buy(slot=12)), errors.BEYOND_HORIZON, at_ms=1_000)
    chain.ok(chain.tx("con", buy(slot=11)))


@pytest.mark.parametrize("price", [101, 2**40])
def test_price_out_of_range(chain: Chain, price: int) -> None:
    chain.expect_rejected(chain.tx("con", buy(price=price)), errors.PRICE_OUT_OF_RANGE)


def test_price_below_p_min() -> None:
    chain = Chain(market=market_params(p_min=5))
    chain.expect_rejected(chain.tx("gen", sell(price=4)), errors.PRICE_OUT_OF_RANGE)


@pytest.mark.parametrize("qty", [0, 1_000_001])
def test_bad_quantity(chain: Chain, qty: int) -> None:
    chain.expect_rejected(chain.tx("gen", sell(qty=qty)), errors.BAD_QUANTITY)


def test_self_trade(chain: Chain) -> None:
    chain.ok(chain.tx("pro", buy()))
    chain.expect_rejected(chain.tx("pro", sell()), errors.SELF_TRADE)
    chain.ok(chain.tx("pro", buy(price=11)))  # same side is fine
    chain.ok(chain.tx("pro", sell(slot=2)))  # other slot is fine


def test_bid_above_free_balance(chain: Chain) -> None:
    chain.ok(chain.tx("con", buy(price=100, qty=9_000)))  # locks 900,000
    chain.expect_rejected(chain.tx("con", buy(price=100, qty=1_001)), errors.INSUFFICIENT_BALANCE)


def test_account_with_debt_cannot_order(chain: Chain) -> None:
    chain.ok(chain.tx("gen", sell(price=1, qty=10)), chain.tx("con", buy(price=1, qty=10)))
    chain.ok(at_ms=3_000)  # cleared, and settled without a reading: gen owes 10 Wh × 100 − 10
    assert chain.account("gen").debt_u == 990
    chain.expect_rejected(chain.tx("gen", sell(slot=5)), errors.HAS_DEBT)
    chain.ok(chain.tx("con", Transfer(to=chain.addr("gen"), amount_u=1_000)))
    assert (chain.account("gen").debt_u, chain.account("gen").balance_u) == (0, 10)
    chain.ok(chain.tx("gen", sell(slot=5)))


def test_orders_per_slot_limit() -> None:
    chain = Chain(market=market_params(max_orders_per_slot=1))
    chain.ok(chain.tx("con", buy()))
    chain.expect_rejected(chain.tx("con2", buy()), errors.LIMIT_REACHED)


def test_cancel_only_by_owner_while_open(chain: Chain) -> None:
    raw = chain.tx("con", buy(price=10, qty=5))
    chain.ok(raw)
    order_id = decode_signed_tx(raw).tx_hash.hex()
    chain.expect_rejected(chain.tx("con2", CancelOrder(order_id=order_id)), errors.NOT_OWNER)
    chain.expect_rejected(chain.tx("con", CancelOrder(order_id="00" * 32)), errors.UNKNOWN_ORDER)
    chain.ok(chain.tx("con", CancelOrder(order_id=order_id)))
    assert chain.account("con").locked_u == 0
    assert chain.account("con").balance_u == 1_000_000
    chain.expect_rejected(chain.tx("con", CancelOrder(order_id=order_id)), errors.SLOT_CLOSED)


def test_cancel_after_gate_is_slot_closed(chain: Chain) -> None:
    raw = chain.tx("con", buy())
    chain.ok(raw)
    chain.ok(at_ms=1_000)
    chain.expect_rejected(chain.tx("con", CancelOrder(order_id=decode_signed_tx(raw).tx_hash.hex())),
                          errors.SLOT_CLOSED)


# --- metering ---------------------------------------------------------------------------

def test_reading_window(chain: Chain) -> None:
    chain.expect_rejected(chain.tx("con", SubmitReading(slot=1, import_wh=1, export_wh=0), meter=True),
                          errors.READING_WINDOW_CLOSED, at_ms=1_999)
    chain.expect_rejected(chain.tx("con", SubmitReading(slot=1, import_wh=1, export_wh=0), meter=True),
                          errors.READING_WINDOW_CLOSED, at_ms=3_000)


def test_duplicate_reading(chain: Chain) -> None:
    chain.ok(chain.tx("con", SubmitReading(slot=1, import_wh=1, export_wh=0), meter=True), at_ms=2_000)
    chain.expect_rejected(chain.tx("con", SubmitReading(slot=1, import_wh=2, export_wh=0), meter=True),
                          errors.DUPLICATE_READING)


def test_only_the_meter_key_reads(chain: Chain) -> None:
    chain.ok(chain.tx("grid", SetMeterKey(account=chain.addr("con"), meter_key=chain.signers["meter"].public_key)))
    chain.expect_rejected(chain.tx("con", SubmitReading(slot=1, import_wh=1, export_wh=0), meter=True),
                          errors.WRONG_SIGNER, at_ms=2_000)
    chain.ok(chain.tx("con", SubmitReading(slot=1, import_wh=1, export_wh=0), meter=True, signer="meter"))
    # The meter key signs nothing else for the account.
    chain.expect_rejected(chain.tx("con", Transfer(to=chain.addr("pro"), amount_u=1), signer="meter"),
                          errors.WRONG_SIGNER)


def test_grid_operator_has_no_meter(chain: Chain) -> None:
    chain.expect_rejected(chain.tx("grid", SubmitReading(slot=1, import_wh=0, export_wh=0), meter=True),
                          errors.ROLE_NOT_ALLOWED, at_ms=2_000)


# --- dispatch ---------------------------------------------------------------------------

def issue(chain: Chain, deadline_ms: int = 5_000, penalty_u: int = 500) -> IssueDispatch:
    return IssueDispatch(account=chain.addr("gen"), direction="curtail", amount_wh=100,
                         deadline_ms=deadline_ms, penalty_u=penalty_u)


def test_only_grid_dispatches(chain: Chain) -> None:
    chain.expect_rejected(chain.tx("con", issue(chain)), errors.UNAUTHORIZED)
    chain.expect_rejected(chain.tx("grid", issue(chain, deadline_ms=0)), errors.BAD_DEADLINE)


def test_ack_rules(chain: Chain) -> None:
    chain.ok(chain.tx("grid", issue(chain)))
    chain.expect_rejected(chain.tx("gen", AckDispatch(dispatch_id=9)), errors.UNKNOWN_DISPATCH)
    chain.expect_rejected(chain.tx("gen2", AckDispatch(dispatch_id=1)), errors.UNAUTHORIZED)
    chain.ok(chain.tx("gen", AckDispatch(dispatch_id=1)))
    chain.expect_rejected(chain.tx("gen", AckDispatch(dispatch_id=1)), errors.ALREADY_ACKNOWLEDGED)
    assert chain.state.dispatches["0000000000000001"].status == "acknowledged"
    chain.ok(at_ms=6_000)
    assert chain.account("gen").debt_u == 0


def test_missed_deadline_pays_penalty_and_late_ack_is_rejected(chain: Chain) -> None:
    chain.ok(chain.tx("grid", issue(chain, deadline_ms=5_000, penalty_u=500)))
    chain.ok(at_ms=5_000)
    assert chain.state.dispatches["0000000000000001"].status == "missed"
    assert chain.account("gen").debt_u == 500
    assert chain.account("grid").balance_u == 500
    chain.expect_rejected(chain.tx("gen", AckDispatch(dispatch_id=1)), errors.DEADLINE_PASSED)


# --- notary -----------------------------------------------------------------------------

def cosign(chain: Chain, names: list[str], doc: bytes, *, signers: list[str] | None = None) -> Notarize:
    parties = tuple(sorted(chain.addr(n) for n in names))
    by_addr = {chain.addr(n): n for n in names}
    message = notary_statement_bytes(chain_id=CHAIN_ID, doc_hash=doc, parties=parties)
    sig_names = signers or [by_addr[p] for p in parties]
    sigs = tuple(chain.signers[n].sign(chain_id=CHAIN_ID, kind=KIND_NOTARY, message=message)
                 for n in sig_names)
    return Notarize(doc_hash=doc, parties=parties, signatures=sigs, title="PPA")


def test_notarize_and_duplicate(chain: Chain) -> None:
    doc = crypto.hashlib.sha256(b"agreement").digest()
    chain.ok(chain.tx("gen", cosign(chain, ["gen", "con"], doc)))
    assert doc.hex() in chain.state.notary
    chain.expect_rejected(chain.tx("con", cosign(chain, ["gen", "con"], doc)), errors.DUPLICATE_DOCUMENT)


def test_notarize_needs_every_party(chain: Chain) -> None:
    doc = bytes(32)
    body = cosign(chain, ["gen", "con"], doc)
    chain.expect_rejected(chain.tx("pro", body), errors.BAD_PARTIES)  # sender not a party
    unsorted = Notarize(doc_hash=doc, parties=body.parties[::-1], signatures=body.signatures[::-1])
    chain.expect_rejected(chain.tx("gen", unsorted), errors.BAD_PARTIES)
    short = Notarize(doc_hash=doc, parties=body.parties, signatures=body.signatures[:1])
    chain.expect_rejected(chain.tx("gen", short), errors.BAD_PARTIES)
    parties = sorted(["gen", "con"], key=chain.addr)
    forged = cosign(chain, ["gen", "con"], doc, signers=[parties[0], parties[0]])
    chain.expect_rejected(chain.tx("gen", forged), errors.BAD_COSIGNATURE)
    chain.expect_rejected(chain.tx("gen", cosign(chain, ["gen", "outsider"], doc)), errors.NOT_REGISTERED)


# --- registration: reject and expiry ---------------------------------------------------------

def _apply(chain: Chain) -> bytes:
    return chain.tx("outsider", RegisterRequest(role="consumer", zone="Z1", name="newcomer"))


def test_grid_operator_rejects_a_pending_request_and_frees_its_place() -> None:
    chain = Chain(limits=LimitParams(max_pending_registrations=1))
    chain.ok(_apply(chain))
    chain.expect_rejected(chain.tx("meter", RegisterRequest(role="consumer", zone="Z1", name="late")),
                          errors.LIMIT_REACHED)
    _, result = chain.block(chain.tx("grid", RejectRegistration(account=chain.addr("outsider"))))
    assert chain.addr("outsider") not in chain.state.accounts
    assert chain.state.meta.pending_registrations == 0
    dropped = [codec.decode(leaf, rec.Record) for leaf in result.leaves]
    assert rec.RegistrationDropped(account=chain.addr("outsider"), reason="rejected") in dropped
    chain.ok(chain.tx("meter", RegisterRequest(role="consumer", zone="Z1", name="late"), nonce=1))
    assert chain.state.accounts[chain.addr("meter")].status == "pending"


def test_only_the_grid_operator_rejects_and_only_pending_requests(chain: Chain) -> None:
    chain.ok(_apply(chain))
    chain.expect_rejected(chain.tx("con", RejectRegistration(account=chain.addr("outsider"))),
                          errors.UNAUTHORIZED)
    chain.expect_rejected(chain.tx("grid", RejectRegistration(account=chain.addr("con"))), errors.NOT_PENDING)
    chain.expect_rejected(chain.tx("grid", RejectRegistration(account=chain.addr("meter"))),
                          errors.UNKNOWN_ACCOUNT)


def test_a_pending_request_expires_after_the_ttl() -> None:
    """TTL of 3 slots of 1 s: a request included at 500 ms is dropped by the first block at
    or after 3 500 ms, not before; approval before then keeps it."""
    chain = Chain(limits=LimitParams(registration_ttl_slots=3))
    chain.ok(_apply(chain), at_ms=500)
    chain.ok(chain.tx("meter", RegisterRequest(role="consumer", zone="Z1", name="kept")), at_ms=600)
    chain.ok(at_ms=3_499)
    assert chain.state.accounts[chain.addr("outsider")].status == "pending"
    chain.ok(chain.tx("grid", ApproveRegistration(account=chain.addr("meter"))), at_ms=3_499)
    _, result = chain.block(at_ms=3_500)
    assert chain.addr("outsider") not in chain.state.accounts
    assert chain.state.accounts[chain.addr("meter")].status == "active"
    assert chain.state.meta.pending_registrations == 0 and chain.state.pending_until_ms == {}
    assert rec.RegistrationDropped(account=chain.addr("outsider"), reason="expired") in [
        codec.decode(leaf, rec.Record) for leaf in result.leaves]
    chain.expect_rejected(chain.tx("grid", ApproveRegistration(account=chain.addr("outsider"))),
                          errors.UNKNOWN_ACCOUNT)


def test_pending_expiry_index_survives_a_snapshot() -> None:
    chain = Chain(limits=LimitParams(registration_ttl_slots=2))
    chain.ok(_apply(chain), at_ms=100)
    restored = decode_state(encode_state(chain.state))
    assert restored.pending_until_ms == chain.state.pending_until_ms == {chain.addr("outsider"): 2_100}
