"""Signed transactions: kinds, canonical encoding, signatures, JSON form.

Theory of operation
-------------------
A transaction is a ``Tx`` (frozen msgspec Struct) whose ``body`` is one Struct per
kind, a tagged union on the field ``kind`` (``"place_order"``, ``"transfer"``, ...).
The sender signs the canonical bytes of the ``Tx`` (``consensus.codec.encode``) in
the domain ``"<chain_id>/TX/v1"``. On the wire a signed transaction is the
canonical msgpack array ``[tx_bytes, signature]`` (``SignedTxWire``); those *raw*
bytes are what blocks carry and ``tx_hash = codec.digest(raw)``.

``decode_signed_tx(raw)`` checks the size, requires both layers to be canonical
(one value has exactly one encoding, so one hash) and returns a ``SignedTx`` that
keeps ``raw``, ``tx_bytes`` and the decoded ``tx`` side by side: nothing is ever
re-encoded to hash or verify (DESIGN.md §10 "encode once").

Who signs (checked by ``contracts.executor``, which knows the state):

* ``submit_reading``: the account's meter key if it has one, else its own key;
  readings use their own nonce sequence (``Account.meter_nonce``) so a meter and
  its owner never race for nonces;
* every other kind: ``address(public_key) == sender``.

Nonces are strictly increasing per sender starting at 1 (gaps allowed, a nonce at
or below the last used one is ``stale_nonce``). An included transaction that passes
authentication uses its nonce up even when it fails (its other changes are rolled
back), so it can never be included again. ``expires_at_ms``: the including block's
timestamp must be below it.

Notarisation carries every party's co-signature in the one transaction:
``signatures[i]`` is ``parties[i]``'s signature of ``NotaryStatement`` in the
domain ``"<chain_id>/NOTARY/v1"`` (``notary_statement_bytes``). Payment-channel
closes carry a ``ChannelState`` signed by the parties in the domain
``"<chain_id>/CHANNEL/v1"`` (``channel_state_bytes``; ``contracts.channels``).

JSON form (REST API): ``tx_to_json(tx)`` gives plain JSON values with bytes as
hex; ``tx_from_json(obj)`` validates and builds the ``Tx`` back; the API accepts
``{"raw": hex}`` or ``{"tx": {...}, "signature": hex}`` and both give the same
raw bytes (``signed_raw_from_json``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from consensus import codec, crypto
from contracts import errors

MAX_TX_BYTES = 8_192
"""Largest raw signed transaction accepted (a notarisation with 16 parties is ~2 KiB)."""
MAX_PARTIES = 16
"""Most parties one notarised document may name."""
KIND_NOTARY = "NOTARY"
"""Signature domain of notary co-signatures."""
KIND_CHANNEL = "CHANNEL"
"""Signature domain of payment-channel states (``ChannelState``, docs/CHANNELS.md)."""
MAX_READING_SLOTS = 16
"""Most meter-reading slots one channel state may name."""

U64 = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Positive = Annotated[int, Meta(ge=1, le=2**63 - 1)]
Address = Annotated[str, Meta(pattern="^[0-9a-f]{40}$")]
PublicKey = Annotated[bytes, Meta(min_length=32, max_length=32)]
Signature = Annotated[bytes, Meta(min_length=64, max_length=64)]
Hash32 = Annotated[bytes, Meta(min_length=32, max_length=32)]
Name = Annotated[str, Meta(min_length=1, max_length=64)]
Zone = Annotated[str, Meta(pattern="^[A-Za-z0-9_.-]{1,32}$")]
EnergyType = Annotated[str, Meta(pattern="^[a-z_]{1,16}$")]
OrderId = Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]
Role = Literal["generator", "consumer", "prosumer", "retailer", "grid", "regulator", "validator"]
Side = Literal["buy", "sell"]

ROLES: tuple[str, ...] = ("generator", "consumer", "prosumer", "retailer", "grid", "regulator", "validator")
REQUESTABLE_ROLES = frozenset({"generator", "consumer", "prosumer", "retailer", "regulator"})
"""Roles an applicant may request; ``grid`` and ``validator`` exist only from genesis."""


class _Body(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind"):
    pass


class RegisterRequest(_Body, frozen=True, tag="register_request"):
    """An applicant asks to join; the account is ``pending`` until the grid operator approves."""

    role: Role
    zone: Zone
    name: Name
    meter_key: PublicKey | None = None
    """Key of the account's certified meter; readings must then be signed by it."""


class ApproveRegistration(_Body, frozen=True, tag="approve_registration"):
    """Grid operator only: a pending account becomes active."""

    account: Address


class RejectRegistration(_Body, frozen=True, tag="reject_registration"):
    """Grid operator only: drop a pending request (the address may apply again)."""

    account: Address


class SuspendAccount(_Body, frozen=True, tag="suspend_account"):
    """Grid operator only: suspend (``suspended=True``) or reinstate an account."""

    account: Address
    suspended: bool = True


class SetMeterKey(_Body, frozen=True, tag="set_meter_key"):
    """Grid operator only: set or clear (None) an account's meter key."""

    account: Address
    meter_key: PublicKey | None


class SetNodeKey(_Body, frozen=True, tag="set_node_key"):
    """An active account names (or clears, None) the key its own node proves on the
    peer network: validators accept observer links only from keys named this way."""

    node_key: PublicKey | None


class Transfer(_Body, frozen=True, tag="transfer"):
    """Move free balance to another registered account."""

    to: Address
    amount_u: Positive


class Mint(_Body, frozen=True, tag="mint"):
    """Grid operator only: create tokens (fiat on-ramp)."""

    to: Address
    amount_u: Positive


class Burn(_Body, frozen=True, tag="burn"):
    """Grid operator only: destroy tokens from its own free balance (fiat off-ramp)."""

    amount_u: Positive


class PlaceOrder(_Body, frozen=True, tag="place_order"):
    """A limit order for delivery slot ``slot`` (MARKET.md "Orders")."""

    slot: U64
    side: Side
    price_u_per_wh: U64
    quantity_wh: U64
    energy_type: EnergyType = "any"


class CancelOrder(_Body, frozen=True, tag="cancel_order"):
    """Owner only, while the slot is open. ``order_id`` is the placing tx's hash (hex)."""

    order_id: OrderId


class SubmitReading(_Body, frozen=True, tag="submit_reading"):
    """Metered energy of the sender's account for ``slot``; signed by its meter key."""

    slot: U64
    import_wh: U64
    export_wh: U64


class IssueDispatch(_Body, frozen=True, tag="issue_dispatch"):
    """Grid operator only: instruct ``account`` to curtail/increase by ``amount_wh``,
    acknowledged before ``deadline_ms`` (block time) or it pays ``penalty_u``."""

    account: Address
    direction: Literal["curtail", "increase"]
    amount_wh: Positive
    deadline_ms: U64
    penalty_u: U64


class AckDispatch(_Body, frozen=True, tag="ack_dispatch"):
    """The instructed account acknowledges, once, before the deadline."""

    dispatch_id: U64


class Notarize(_Body, frozen=True, tag="notarize"):
    """Anchor ``doc_hash`` co-signed by every party (sorted, unique, sender included)."""

    doc_hash: Hash32
    parties: tuple[Address, ...]
    signatures: tuple[Signature, ...]
    title: Annotated[str, Meta(max_length=128)] = ""


class ChannelState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A payment channel's balances after an off-chain update, co-signed by both parties
    in the domain ``"<chain_id>/CHANNEL/v1"`` (``channel_state_bytes``; docs/CHANNELS.md)."""

    channel_id: OrderId
    """The opening transaction's hash (hex)."""
    seq: U64
    """Update number: a state with a higher ``seq`` replaces one with a lower."""
    balance_a_u: U64
    """What the opener (party a) is owed, µ."""
    balance_b_u: U64
    """What the counterparty (party b) is owed, µ."""
    energy_wh: U64
    """Energy delivered through the channel so far (cumulative), Wh."""
    reading_slots: Annotated[tuple[U64, ...], Meta(max_length=MAX_READING_SLOTS)] = ()
    """Slots of the meter readings this energy accounts for (sorted, unique, at most 16)."""
    final: bool = False
    """True only for the state the parties sign to close cooperatively (``close_channel``)."""


class OpenChannel(_Body, frozen=True, tag="open_channel"):
    """Lock ``deposit_u`` of the sender (party a) in a channel with ``counterparty`` (party b).
    The channel's id is this transaction's hash (hex)."""

    counterparty: Address
    deposit_u: Positive
    challenge_slots: Positive
    """Length of the challenge period after a unilateral close, in slots."""


class FundChannel(_Body, frozen=True, tag="fund_channel"):
    """The counterparty adds its own deposit, once, while the channel is open."""

    channel_id: OrderId
    deposit_u: Positive


class CloseChannel(_Body, frozen=True, tag="close_channel"):
    """Cooperative close by either party: a ``final`` state signed by both pays out at once."""

    state: ChannelState
    signature_a: Signature
    signature_b: Signature


class ForceCloseChannel(_Body, frozen=True, tag="force_close_channel"):
    """Unilateral close by either party with the latest state the other party signed
    (``signature``; nil only for the opening state, seq 0): starts the challenge period."""

    state: ChannelState
    signature: Signature | None


class ChallengeChannel(_Body, frozen=True, tag="challenge_channel"):
    """Any active account, during the challenge period: a newer state signed by both."""

    state: ChannelState
    signature_a: Signature
    signature_b: Signature


class SettleChannel(_Body, frozen=True, tag="settle_channel"):
    """Any active account, after the challenge period: pay out the newest posted state."""

    channel_id: OrderId


CHANNEL_BODIES: tuple[type, ...] = (OpenChannel, FundChannel, CloseChannel, ForceCloseChannel,
                                    ChallengeChannel, SettleChannel)


Body = (
    RegisterRequest
    | ApproveRegistration
    | RejectRegistration
    | SuspendAccount
    | SetMeterKey
    | Transfer
    | Mint
    | Burn
    | PlaceOrder
    | CancelOrder
    | SubmitReading
    | IssueDispatch
    | AckDispatch
    | Notarize
    | SetNodeKey
    | OpenChannel
    | FundChannel
    | CloseChannel
    | ForceCloseChannel
    | ChallengeChannel
    | SettleChannel
)


class Tx(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The signed part of a transaction."""

    chain_id: Annotated[str, Meta(min_length=1, max_length=64)]
    sender: Address
    """Address of the account acting (for a reading: the metered account)."""
    public_key: PublicKey
    """The key that signed: the sender's own key, or its meter key for readings."""
    nonce: Positive
    expires_at_ms: U64
    """The including block's timestamp must be below this."""
    body: Body

    @property
    def kind(self) -> str:
        return type(self.body).__struct_config__.tag  # type: ignore[return-value]


class SignedTxWire(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Wire form of a signed transaction: ``[tx_bytes, signature]``."""

    tx_bytes: bytes
    signature: bytes


class SignedTx(msgspec.Struct, frozen=True):
    """A decoded signed transaction with its canonical bytes kept alongside."""

    raw: bytes
    tx_bytes: bytes
    signature: bytes
    tx: Tx
    tx_hash: bytes


class NotaryStatement(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What each notary party co-signs."""

    chain_id: str
    doc_hash: bytes
    parties: tuple[str, ...]


def notary_statement_bytes(*, chain_id: str, doc_hash: bytes, parties: tuple[str, ...]) -> bytes:
    return codec.encode(NotaryStatement(chain_id=chain_id, doc_hash=doc_hash, parties=parties))


def channel_state_bytes(state: ChannelState) -> bytes:
    """What both parties of a channel sign (in the ``KIND_CHANNEL`` domain)."""
    return codec.encode(state)


def sign_channel_state(state: ChannelState, signer: crypto.Signer, *, chain_id: str) -> bytes:
    """``signer``'s signature of ``state`` on chain ``chain_id``."""
    return signer.sign(chain_id=chain_id, kind=KIND_CHANNEL, message=channel_state_bytes(state))


def verify_channel_state(public_key: bytes, signature: bytes, state: ChannelState, *, chain_id: str) -> bool:
    return crypto.verify(public_key, signature, chain_id=chain_id, kind=KIND_CHANNEL,
                         message=channel_state_bytes(state))


def sign_tx(tx: Tx, signer: crypto.Signer) -> bytes:
    """Raw signed bytes of ``tx`` signed by ``signer``."""
    tx_bytes = codec.encode(tx)
    signature = signer.sign(chain_id=tx.chain_id, kind=crypto.KIND_TX, message=tx_bytes)
    return codec.encode(SignedTxWire(tx_bytes=tx_bytes, signature=signature))


def decode_signed_tx(raw: bytes) -> SignedTx:
    """Validate and decode raw signed bytes (size, canonical form, field types).

    Raises ``TxError`` with code ``too_large`` or ``malformed``. The signature is not
    checked here (``verify_signature``) so a node can verify each hash only once.
    """
    if len(raw) > MAX_TX_BYTES:
        raise errors.fail(errors.TOO_LARGE, f"transaction is {len(raw)} bytes, limit {MAX_TX_BYTES}")
    try:
        wire = codec.decode_canonical(raw, SignedTxWire)
        tx = codec.decode_canonical(wire.tx_bytes, Tx)
    except codec.CodecError as exc:
        raise errors.fail(errors.MALFORMED, str(exc)) from None
    except UnicodeDecodeError:  # msgspec reports invalid UTF-8 in a str field this way
        raise errors.fail(errors.MALFORMED, "invalid UTF-8 in a text field") from None
    if len(wire.signature) != crypto.SIGNATURE_SIZE:
        raise errors.fail(errors.MALFORMED, "signature must be 64 bytes")
    return SignedTx(
        raw=bytes(raw), tx_bytes=wire.tx_bytes, signature=wire.signature, tx=tx,
        tx_hash=codec.digest(raw),
    )


def verify_signature(stx: SignedTx) -> bool:
    """True iff ``stx.signature`` is ``stx.tx.public_key``'s TX-domain signature of the tx."""
    return crypto.verify(
        stx.tx.public_key, stx.signature, chain_id=stx.tx.chain_id, kind=crypto.KIND_TX,
        message=stx.tx_bytes,
    )


# --- JSON form ---------------------------------------------------------------------------

def tx_to_json(tx: Tx) -> dict[str, Any]:
    """JSON-ready dict of ``tx`` (bytes as hex, body tagged by ``kind``)."""
    out = codec.to_builtins(tx)
    assert isinstance(out, dict)
    return out


_TX_INFO = msgspec.inspect.type_info(Tx)


_HEX = re.compile("(?:[0-9a-f]{2})*")


def _fromhex(value: str, where: str) -> bytes:
    """Bytes of lowercase hex with an even number of digits (nothing else: no spaces, no
    upper case), the one form the JSON API shows and takes."""
    if not _HEX.fullmatch(value):
        raise errors.fail(errors.MALFORMED, f"{where}: not a hex string (lowercase, two digits a byte)")
    return bytes.fromhex(value)


def _unhex(value: Any, info: Any, where: str) -> Any:
    """Turn hex strings into bytes wherever the schema ``info`` has bytes."""
    mi = msgspec.inspect
    if isinstance(info, mi.Metadata):
        return _unhex(value, info.type, where)
    if isinstance(info, mi.BytesType):
        if not isinstance(value, str):
            return value  # let msgspec.convert report the type error
        return _fromhex(value, where)
    if isinstance(info, mi.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f.type for f in info.fields}
        return {k: (_unhex(v, fields[k], f"{where}.{k}") if k in fields else v) for k, v in value.items()}
    if isinstance(info, (mi.ListType, mi.VarTupleType)) and isinstance(value, list):
        return [_unhex(v, info.item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(info, mi.UnionType):
        if isinstance(value, dict):
            for t in info.types:
                if isinstance(t, mi.StructType) and t.tag is not None and value.get(t.tag_field) == t.tag:
                    return _unhex(value, t, where)
        if isinstance(value, str):
            for t in info.types:
                inner = t.type if isinstance(t, mi.Metadata) else t
                if isinstance(inner, mi.BytesType):
                    return _unhex(value, t, where)
    return value


def tx_from_json(obj: Any) -> Tx:
    """Build a validated ``Tx`` from its JSON form; ``TxError(malformed)`` on any defect."""
    if not isinstance(obj, dict):
        raise errors.fail(errors.MALFORMED, "tx must be a JSON object")
    try:
        return msgspec.convert(_unhex(obj, _TX_INFO, "tx"), Tx, strict=True)
    except msgspec.ValidationError as exc:
        raise errors.fail(errors.MALFORMED, f"invalid tx: {exc}") from None


def signed_raw_from_json(obj: Any) -> bytes:
    """Raw signed bytes from ``{"raw": hex}`` or ``{"tx": {...}, "signature": hex}``."""
    if not isinstance(obj, dict):
        raise errors.fail(errors.MALFORMED, "expected a JSON object")
    if "raw" in obj:
        if set(obj) != {"raw"} or not isinstance(obj["raw"], str):
            raise errors.fail(errors.MALFORMED, '"raw" must be the only field, a hex string')
        return _fromhex(obj["raw"], '"raw"')
    if set(obj) != {"tx", "signature"} or not isinstance(obj["signature"], str):
        raise errors.fail(errors.MALFORMED, 'expected {"raw": hex} or {"tx": {...}, "signature": hex}')
    tx = tx_from_json(obj["tx"])
    signature = _fromhex(obj["signature"], '"signature"')
    if len(signature) != crypto.SIGNATURE_SIZE:
        raise errors.fail(errors.MALFORMED, "signature must be 64 bytes")
    return codec.encode(SignedTxWire(tx_bytes=codec.encode(tx), signature=signature))


def signed_tx_to_json(stx: SignedTx) -> dict[str, Any]:
    """JSON view of a signed transaction (for explorers and receipts)."""
    return {
        "hash": stx.tx_hash.hex(), "tx": tx_to_json(stx.tx), "signature": stx.signature.hex(),
        "raw": stx.raw.hex(),
    }
