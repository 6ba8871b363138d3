"""The OpenAPI 3.1 document of the REST API, served at ``/openapi.json``.

Schemas come from msgspec Structs (``msgspec.json.schema_components``): the
contracts' own records, and for answers that the views build as dicts the
Structs below, which name every field those dicts carry. Every byte field is
lowercase hex on the wire (``codec.to_builtins``, and the server accepts only
hex): msgspec describes ``bytes`` as base64, so ``_hex_bytes_schemas`` rewrites
each bytes schema from the Structs' type information (its length constraints in
bytes become hex patterns). ``tests/integration/test_openapi_schemathesis.py``
runs schemathesis against a live node: every answer must match this document,
every status it gives must be listed here.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

import msgspec
from msgspec import inspect as mi

from consensus import types as ct
from contracts import executor
from contracts import records as rec
from contracts import state as st
from contracts import traceability as tr
from contracts import transactions as txs
from node.api import openapi_channels
from node.api.openapi_browse import SCHEMA_TYPES as BROWSE_TYPES
from node.api.openapi_browse import browse_paths
from node.api.openapi_paths import api_paths, ref

MAX_U64 = 2**63 - 1
Hash32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
U64 = Annotated[int, msgspec.Meta(ge=0, le=MAX_U64)]

# --- errors and submission ---------------------------------------------------------------


class ErrorBody(msgspec.Struct, frozen=True):
    code: str
    """Stable machine-readable code (e.g. ``malformed``, ``stale_nonce``, ``mempool_full``)."""
    message: str


class Error(msgspec.Struct, frozen=True):
    """Every error answer. A batch whose every transaction was rejected also carries
    ``accepted`` (0), ``rejected`` and ``results`` as in ``BatchAccepted``."""

    error: ErrorBody
    reason: str | None = None
    """``/readyz`` 503 only: ``execution_halted``, ``syncing``, ``no_quorum`` (a validator) or
    ``no_peers`` (an observer with no upstream link)."""


class SignedTxJson(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A signed transaction as JSON: the tx object and the hex signature of its canonical bytes."""

    tx: txs.Tx
    signature: txs.Signature


class RawTx(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A signed transaction as hex of its raw canonical bytes."""

    raw: bytes


class Batch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Each item is a ``RawTx`` or a ``SignedTxJson`` (at most 2,000)."""

    transactions: list[Any]


class Accepted(msgspec.Struct, frozen=True):
    tx_hash: Hash32


class BatchItem(msgspec.Struct, frozen=True):
    tx_hash: Hash32 | None
    """None when the item could not be decoded."""
    error: ErrorBody | None = None
    """Absent when accepted."""


class BatchAccepted(msgspec.Struct, frozen=True):
    accepted: int
    rejected: int
    results: list[BatchItem]


# --- answers the views build as dicts -----------------------------------------------------


class MarketInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Slot timing and prices (``node.api.views.market_info``); the current slot by block time."""

    genesis_time_ms: int
    slot_ms: int
    gate_lead_ms: int
    meter_window_ms: int
    max_horizon_slots: int
    p_min: int
    p_max: int
    grid_fee: int
    p_short: int
    p_long: int
    block_timestamp_ms: int
    current_slot: int
    grid_operator: str


class ExecutionHalted(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    height: int
    error: str


class ValidatorMember(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One validator of the set this node verifies commit certificates against."""

    index: int
    name: str
    public_key: str
    """64 hex chars."""


class Status(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    chain_id: str
    node_id: int
    node_name: str
    role: str
    height: int
    committed_height: int
    round: int
    leader: int
    state_root: bytes
    peers: int
    syncing: bool
    mempool_size: int
    last_voted_round: int
    execution_lag_blocks: int
    """Committed blocks not yet executed; consensus holds at ``max_execution_lag_blocks``."""
    execution_halted: ExecutionHalted | None
    """Set once executing a block failed: this node stopped voting (see its log)."""
    market: MarketInfo
    node_role: Literal["validator", "observer"] = "validator"
    """``observer``: a member's node that follows the chain, verifying every commit certificate,
    and never votes."""
    epoch: int = 0
    """Epoch of the validator set below."""
    validators: tuple[ValidatorMember, ...] = ()
    """The validator set (index, name, key) this node verifies blocks against."""
    peer_validators: tuple[int, ...] = ()
    """Indices (in ``validators``) of the validators this node has an authenticated link to now."""


class Dropped(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Why an accepted transaction left the mempool without being included."""

    code: str
    message: str


class TxLookup(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tx_hash: Hash32
    status: Literal["pending", "committed", "failed"]
    height: int | None
    index: int | None
    receipt: Any
    """The execution receipt once included; ``Dropped`` when it expired or could no longer
    commit; null while pending."""


class TxView(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    hash: Hash32
    tx: txs.Tx
    signature: bytes
    raw: bytes


class MalformedTxView(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A transaction in a block that does not decode (it got a failed receipt)."""

    hash: Hash32
    raw: bytes
    malformed: bool


class BlockView(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    height: int
    block_id: Hash32
    round: int
    epoch: int
    author: int
    timestamp_ms: int
    parent_id: Hash32
    tx_root: Hash32
    state_root: bytes
    """Empty for the genesis block."""
    receipts_root: bytes
    """Empty for the genesis block."""
    executed_height: int
    executed_state_root: bytes
    failed_authors: list[tuple[int, int]]
    tx_count: int
    header: ct.BlockHeader
    commit_qc: ct.QuorumCert | None
    """The QC certifying this block, once the next block is committed."""
    txs: list[Any]
    """Transaction hashes, or with ``?txs=full`` each decoded (``TxView`` / ``MalformedTxView``)."""
    receipts: list[executor.Receipt] = []
    """Execution receipts in payload order (absent for a block without transactions)."""


class SlotView(st.SlotRecord, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The slot record (status from the block time when it has none) with its lifecycle times."""

    gate_close_ms: int
    start_ms: int
    settle_time_ms: int
    trades: list[st.Trade]
    open_orders: int
    settlements: list[st.SettlementLine]
    """One page of the slot's settlement lines, by account."""
    settlements_next: str | None
    """``settlements_after_account`` of the next page; null on the last page."""


class AccountView(st.Account, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The account with one page of its settlement lines, newest slot first."""

    settlements: list[st.SettlementLine]
    settlements_next: int | None
    """``settlements_before_slot`` of the next page; null on the last page."""


class Trades(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    trades: list[st.Trade]


class ValidatorView(st.ValidatorInfo, frozen=True, forbid_unknown_fields=True, kw_only=True):
    credit: int
    """Leader-election weight: 1000 (full) or 0, from the credit window (docs/CREDIT.md)."""
    excluded_until_round: int
    leader_share_ppm: int
    window_led: int
    """Rounds this validator led in the credit window."""
    window_failed: int
    """Rounds it failed to lead in the credit window."""


class Validators(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    validators: list[ValidatorView]


class DispatchList(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    dispatch: list[st.Dispatch]


class LocationJson(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    height: int
    index: int


class BlockRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    height: int
    block_id: Hash32
    receipts_root: bytes
    state_root: bytes


class LineageEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    role: str
    location: LocationJson
    block: Any
    """``BlockRef``, or an empty object when the block is not stored on this node."""
    record: rec.Record | None  # type: ignore[valid-type]
    """The decoded leaf; null when the leaf is not stored on this node."""
    leaf: bytes | None
    proof: tr.Proof | None


class Trace(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    trade_id: str
    lineage: list[LineageEntry]


class Health(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    status: Literal["ok"]


class Ready(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    status: Literal["ready"]


_SCHEMA_TYPES: tuple[Any, ...] = (
    Error, SignedTxJson, RawTx, Batch, Accepted, BatchAccepted, ValidatorMember, Status, TxLookup, Dropped, TxView,
    MalformedTxView, BlockView, BlockRef, AccountView, SlotView, st.Order, Trades, Trace, Validators, DispatchList,
    Health, Ready, *openapi_channels.SCHEMA_TYPES, *BROWSE_TYPES,
)


# Properties msgspec cannot express (unions of untagged Structs); each stays an ``Any`` in its Struct.
_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    ("Batch", "transactions"): {"type": "array", "minItems": 1, "maxItems": 2_000,
                                "items": {"anyOf": [ref("RawTx"), ref("SignedTxJson")]}},
    ("BlockView", "txs"): {"anyOf": [
        {"type": "array", "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
        {"type": "array", "items": {"anyOf": [ref("TxView"), ref("MalformedTxView")]}},
    ]},
    ("LineageEntry", "block"): {"anyOf": [ref("BlockRef"), {"type": "object", "maxProperties": 0}]},
    ("TxLookup", "receipt"): {"anyOf": [ref("Receipt"), ref("Dropped"), {"type": "null"}]},
    **openapi_channels.OVERRIDES,
}


# --- bytes as hex --------------------------------------------------------------------------


def _hex_schema(info: mi.BytesType) -> dict[str, Any]:
    lo, hi = info.min_length or 0, info.max_length
    if hi is None:
        size = f"{{{2 * lo},}}" if lo else "*"
        pattern = f"^(?:[0-9a-f]{{2}}){size}$" if lo else "^(?:[0-9a-f]{2})*$"
        what = f"at least {lo} bytes" if lo else "bytes"
    elif lo == hi:
        pattern, what = f"^[0-9a-f]{{{2 * lo}}}$", f"{lo} bytes"
    else:
        pattern, what = f"^(?:[0-9a-f]{{2}}){{{lo},{hi}}}$", f"{lo}..{hi} bytes"
    return {"type": "string", "pattern": pattern, "description": f"lowercase hex of {what}"}


def _bytes_types(info: Any, seen: set[type]) -> list[mi.BytesType]:
    """Every bytes type reachable in ``info`` without entering another Struct."""
    if isinstance(info, mi.BytesType):
        return [info]
    if isinstance(info, mi.Metadata):
        return _bytes_types(info.type, seen)
    if isinstance(info, mi.UnionType):
        return [b for t in info.types for b in _bytes_types(t, seen)]
    if isinstance(info, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
        return _bytes_types(info.item_type, seen)
    if isinstance(info, mi.TupleType):
        return [b for t in info.item_types for b in _bytes_types(t, seen)]
    if isinstance(info, mi.DictType):
        return _bytes_types(info.value_type, seen)
    return []


def _structs(info: Any, out: dict[str, mi.StructType]) -> None:
    if isinstance(info, mi.StructType):
        if info.cls.__name__ in out:
            return
        out[info.cls.__name__] = info
        for field in info.fields:
            _structs(field.type, out)
    elif isinstance(info, mi.Metadata):
        _structs(info.type, out)
    elif isinstance(info, mi.UnionType):
        for t in info.types:
            _structs(t, out)
    elif isinstance(info, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
        _structs(info.item_type, out)
    elif isinstance(info, mi.TupleType):
        for t in info.item_types:
            _structs(t, out)
    elif isinstance(info, mi.DictType):
        _structs(info.value_type, out)


def _replace_base64(node: Any, hex_schema: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if node.get("contentEncoding") == "base64":
            return dict(hex_schema)
        return {k: _replace_base64(v, hex_schema) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_base64(v, hex_schema) for v in node]
    return node


def _hex_bytes_schemas(components: dict[str, Any], types: tuple[Any, ...]) -> None:
    """Rewrite, in place, every base64 bytes schema of a Struct field into its hex schema."""
    structs: dict[str, mi.StructType] = {}
    for info in mi.multi_type_info(types):
        _structs(info, structs)
    for name, info in structs.items():
        schema = components.get(name)
        if schema is None or "properties" not in schema:
            continue
        for field in info.fields:
            kinds = {(b.min_length, b.max_length) for b in _bytes_types(field.type, set())}
            if not kinds:
                continue
            assert len(kinds) == 1, f"{name}.{field.name}: bytes of several sizes in one field"
            (lo, hi), = kinds
            prop = schema["properties"][field.encode_name]
            schema["properties"][field.encode_name] = _replace_base64(
                prop, _hex_schema(mi.BytesType(min_length=lo, max_length=hi)))


@functools.cache
def openapi_document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(_SCHEMA_TYPES, ref_template="#/components/schemas/{name}")
    _hex_bytes_schemas(components, _SCHEMA_TYPES)
    for (name, prop), schema in _OVERRIDES.items():
        components[name]["properties"][prop] = schema
    paths = {**api_paths(), **openapi_channels.channel_paths(), **browse_paths()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "GridChain node API", "version": "1", "description":
                 "Errors are {\"error\": {\"code\", \"message\"}} with a 4xx/5xx status. "
                 "Byte fields are lowercase hex. Query parameters not listed for an "
                 "operation, or given twice, are refused with 400 bad_request."},
        "paths": paths,
        "components": {"schemas": components},
    }
