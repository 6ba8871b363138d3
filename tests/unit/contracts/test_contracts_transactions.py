"""Transaction envelope: canonical bytes, signatures, JSON form, admission checks."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus import codec, crypto
from contracts import errors
from contracts.executor import check_tx
from contracts.state import encode_state
from contracts.transactions import (
    AckDispatch,
    ApproveRegistration,
    Burn,
    CancelOrder,
    IssueDispatch,
    Mint,
    Notarize,
    PlaceOrder,
    RegisterRequest,
    SetMeterKey,
    SignedTxWire,
    SubmitReading,
    SuspendAccount,
    Transfer,
    Tx,
    decode_signed_tx,
    sign_tx,
    signed_raw_from_json,
    tx_from_json,
    tx_to_json,
    verify_signature,
)

from .helpers import CHAIN_ID, Chain, signer_for

SIGNER = signer_for("alice")
A = crypto.address(SIGNER.public_key)

BODIES = [
    RegisterRequest(role="prosumer", zone="Z1", name="alice", meter_key=bytes(range(32))),
    RegisterRequest(role="consumer", zone="Z1", name="alice"),
    ApproveRegistration(account="ab" * 20),
    SuspendAccount(account="ab" * 20, suspended=False),
    SetMeterKey(account="ab" * 20, meter_key=None),
    Transfer(to="cd" * 20, amount_u=5),
    Mint(to="cd" * 20, amount_u=5),
    Burn(amount_u=5),
    PlaceOrder(slot=3, side="sell", price_u_per_wh=7, quantity_wh=9, energy_type="solar"),
    CancelOrder(order_id="ef" * 32),
    SubmitReading(slot=3, import_wh=0, export_wh=12),
    IssueDispatch(account="ab" * 20, direction="increase", amount_wh=4, deadline_ms=99, penalty_u=1),
    AckDispatch(dispatch_id=4),
    Notarize(doc_hash=bytes(32), parties=("ab" * 20,), signatures=(bytes(64),), title="t"),
]


def make(body: object, **kw: object) -> Tx:
    fields: dict[str, object] = dict(chain_id=CHAIN_ID, sender=A, public_key=SIGNER.public_key, nonce=1,
                                     expires_at_ms=10**6, body=body)
    fields.update(kw)
    return Tx(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_every_kind_round_trips_raw_and_json_to_identical_bytes(body: object) -> None:
    tx = make(body)
    raw = sign_tx(tx, SIGNER)
    stx = decode_signed_tx(raw)
    assert stx.tx == tx
    assert stx.tx_hash == codec.digest(raw)
    assert verify_signature(stx)
    as_json = {"tx": tx_to_json(tx), "signature": stx.signature.hex()}
    assert as_json["tx"]["body"]["kind"] == tx.kind
    assert signed_raw_from_json(as_json) == raw
    assert signed_raw_from_json({"raw": raw.hex()}) == raw
    assert tx_from_json(tx_to_json(tx)) == tx


@pytest.mark.parametrize("mutate", [
    lambda d: d.__setitem__("nonce", 1.0),
    lambda d: d.__setitem__("nonce", -1),
    lambda d: d.__setitem__("extra", 1),
    lambda d: d.__delitem__("expires_at_ms"),
    lambda d: d.__setitem__("public_key", "zz" * 32),
    lambda d: d.__setitem__("public_key", "00" * 31),
    lambda d: d["body"].__setitem__("kind", "steal"),
    lambda d: d["body"].__setitem__("side", "hold"),
    lambda d: d["body"].__setitem__("price_u_per_wh", 1.5),
    lambda d: d["body"].__setitem__("quantity_wh", "5"),
    lambda d: d.__setitem__("sender", "XYZ"),
])
def test_bad_json_is_malformed(mutate) -> None:
    data = tx_to_json(make(PlaceOrder(slot=1, side="buy", price_u_per_wh=1, quantity_wh=1)))
    mutate(data)
    with pytest.raises(errors.TxError) as info:
        tx_from_json(data)
    assert info.value.code == errors.MALFORMED


@pytest.mark.parametrize("obj", [
    [], {"raw": "zz"}, {"raw": "00", "tx": {}}, {"tx": {}}, {"tx": {}, "signature": "00"},
])
def test_bad_submit_forms_are_malformed(obj: object) -> None:
    with pytest.raises(errors.TxError) as info:
        signed_raw_from_json(obj)
    assert info.value.code == errors.MALFORMED


def test_trailing_bytes_and_short_signature_are_malformed() -> None:
    raw = sign_tx(make(Burn(amount_u=1)), SIGNER)
    for bad in (raw + b"\x00", codec.encode(SignedTxWire(tx_bytes=codec.decode(raw, SignedTxWire).tx_bytes,
                                                          signature=b"\x01" * 63))):
        with pytest.raises(errors.TxError) as info:
            decode_signed_tx(bad)
        assert info.value.code == errors.MALFORMED


def test_signature_is_domain_separated() -> None:
    tx = make(Burn(amount_u=1))
    tx_bytes = codec.encode(tx)
    vote_sig = SIGNER.sign(chain_id=CHAIN_ID, kind=crypto.KIND_VOTE, message=tx_bytes)
    stx = decode_signed_tx(codec.encode(SignedTxWire(tx_bytes=tx_bytes, signature=vote_sig)))
    assert not verify_signature(stx)
    other_chain = SIGNER.sign(chain_id="other", kind=crypto.KIND_TX, message=tx_bytes)
    assert not verify_signature(decode_signed_tx(codec.encode(SignedTxWire(tx_bytes, other_chain))))


@given(slot=st.integers(0, 2**63 - 1), price=st.integers(0, 2**63 - 1), qty=st.integers(0, 2**63 - 1),
       side=st.sampled_from(["buy", "sell"]), nonce=st.integers(1, 2**63 - 1))
def test_place_order_round_trip_property(slot: int, price: int, qty: int, side: str, nonce: int) -> None:
    tx = make(PlaceOrder(slot=slot, side=side, price_u_per_wh=price, quantity_wh=qty), nonce=nonce)  # type: ignore[arg-type]
    raw = sign_tx(tx, SIGNER)
    assert decode_signed_tx(raw).tx == tx
    assert tx_from_json(msgspec.json.decode(msgspec.json.encode(tx_to_json(tx)))) == tx


def test_check_tx_codes_and_no_side_effects() -> None:
    chain = Chain()
    before = encode_state(chain.state)

    def code_of(raw: bytes, now_ms: int = 0, check_signature: bool = False) -> str | None:
        try:
            check_tx(chain.state, decode_signed_tx(raw), now_ms=now_ms, check_signature=check_signature)
        except errors.TxError as exc:
            return exc.code
        return None

    t = Transfer(to=chain.addr("pro"), amount_u=1)
    assert code_of(chain.tx("con", t)) is None
    assert code_of(chain.tx("con", t, chain_id="x")) == errors.WRONG_CHAIN
    assert code_of(chain.tx("con", t, expires_at_ms=10), now_ms=10) == errors.EXPIRED
    assert code_of(chain.tx("outsider", t)) == errors.NOT_REGISTERED
    assert code_of(chain.tx("con", t, signer="pro")) == errors.WRONG_SIGNER
    chain.ok(chain.tx("con", t, nonce=5))
    before = encode_state(chain.state)
    assert code_of(chain.tx("con", t, nonce=5)) == errors.STALE_NONCE
    wire = codec.decode(chain.tx("con", t, nonce=6), SignedTxWire)
    forged = codec.encode(SignedTxWire(wire.tx_bytes, bytes(64)))
    assert code_of(forged) is None  # the signature is the caller's job unless asked
    assert code_of(forged, check_signature=True) == errors.BAD_SIGNATURE
    assert encode_state(chain.state) == before


def test_verified_hashes_skip_signature_checks_and_others_are_verified() -> None:
    from contracts.executor import apply_block

    chain = Chain()
    wire = codec.decode(chain.tx("con", Transfer(to=chain.addr("pro"), amount_u=1)), SignedTxWire)
    forged = codec.encode(SignedTxWire(wire.tx_bytes, bytes(64)))
    h = decode_signed_tx(forged).tx_hash
    _, receipts, _ = apply_block(chain.state, chain.block_input([forged]))
    assert receipts[0].code == errors.BAD_SIGNATURE
    chain.height += 1
    _, receipts, _ = apply_block(chain.state, chain.block_input([forged]), verified={h})
    assert receipts[0].ok  # the node vouched for it: not verified a second time


def test_check_tx_refuses_unauthorised_kinds_at_admission() -> None:
    chain = Chain()

    def code_of(raw: bytes) -> str | None:
        try:
            check_tx(chain.state, decode_signed_tx(raw), now_ms=0)
        except errors.TxError as exc:
            return exc.code
        return None

    for body in (Mint(to=chain.addr("con"), amount_u=1), Burn(amount_u=1),
                 ApproveRegistration(account=chain.addr("con")), SuspendAccount(account=chain.addr("pro")),
                 SetMeterKey(account=chain.addr("con"), meter_key=None),
                 IssueDispatch(account=chain.addr("gen"), direction="curtail", amount_wh=1,
                               deadline_ms=10, penalty_u=0)):
        assert code_of(chain.tx("con", body)) == errors.UNAUTHORIZED, body
        assert code_of(chain.tx("grid", body)) is None, body
    assert code_of(chain.tx("con", PlaceOrder(slot=1, side="sell", price_u_per_wh=1, quantity_wh=1))) \
        == errors.ROLE_NOT_ALLOWED
    assert code_of(chain.tx("con", PlaceOrder(slot=1, side="buy", price_u_per_wh=101, quantity_wh=1))) \
        == errors.PRICE_OUT_OF_RANGE
    assert code_of(chain.tx("con", PlaceOrder(slot=1, side="buy", price_u_per_wh=1, quantity_wh=0))) \
        == errors.BAD_QUANTITY
    assert code_of(chain.tx("grid", SubmitReading(slot=1, import_wh=0, export_wh=0), meter=True)) \
        == errors.ROLE_NOT_ALLOWED
    assert code_of(chain.tx("con", PlaceOrder(slot=1, side="buy", price_u_per_wh=1, quantity_wh=1))) is None


@given(garbage=st.binary(max_size=300))
def test_garbage_from_a_peer_only_ever_raises_malformed(garbage: bytes) -> None:
    try:
        decode_signed_tx(garbage)
    except errors.TxError as exc:
        assert exc.code == errors.MALFORMED


@given(flip=st.integers(0, 10_000), value=st.integers(0, 255))
def test_any_byte_change_of_a_signed_tx_is_rejected_or_changes_its_hash(flip: int, value: int) -> None:
    raw = sign_tx(make(PlaceOrder(slot=3, side="buy", price_u_per_wh=7, quantity_wh=9)), SIGNER)
    i = flip % len(raw)
    tampered = raw[:i] + bytes([value]) + raw[i + 1:]
    if tampered == raw:
        return
    try:
        stx = decode_signed_tx(tampered)
    except errors.TxError:
        return
    assert not verify_signature(stx) or stx.tx_bytes == decode_signed_tx(raw).tx_bytes
