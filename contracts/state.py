"""Typed chain state, per-transaction snapshots, and the incremental state root.

Theory of operation
-------------------
State is a handful of tables (``dict[str, Struct]``) of frozen msgspec Structs
plus the credit state. Every change goes through ``State.put`` so that

* inside a transaction (``begin``/``commit``/``rollback``) the old value is journaled
  and a failed transaction is undone exactly (it never half-applies);
* the key is marked dirty for the block;
* derived indexes (open orders per slot and per owner, accounts per slot, settlement
  lines per account and per slot) stay in
  step — they are rebuilt from the tables after ``decode_state``, never hashed.

State root: at the end of each block ``seal_block`` hashes the previous root, the
height and the canonical bytes of every dirty (table, key, value), sorted. So the
root commits to the genesis state and every block's write set, costs O(writes) per
block (not O(state)), and any divergence between nodes shows up at the block where
it happened and stays visible. The root is stored in the state, so a node restored
from ``encode_state`` bytes continues with the same roots.

Checkpoints: the root alone does not say what the state *is*, so every
``CHECKPOINT_EVERY`` blocks ``seal_block`` also encodes the whole state (the bytes
carry the inner root just computed) and the height's root becomes
``checkpoint_root(height, bytes)``. A node that receives those bytes from anyone
(state sync) recomputes that root from them and compares it with a certified one;
the cost is one ``encode_state`` per checkpoint, which the runtime stores as its
snapshot instead of encoding again.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from consensus import codec
from consensus.credit import CreditState
from contracts.genesis import Genesis


class Location(msgspec.Struct, frozen=True, array_like=True):
    """Where a record is proven: block height and leaf index in its receipts tree."""

    height: int
    index: int


class Account(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    address: str
    name: str
    role: str
    zone: str
    status: Literal["pending", "active", "suspended"]
    public_key: bytes
    meter_key: bytes | None
    balance_u: int = 0
    """Free balance."""
    locked_u: int = 0
    """Escrow of open buy orders (Σ of their locks)."""
    pending_u: int = 0
    """Sale proceeds of cleared slots not yet settled."""
    debt_u: int = 0
    """Unpaid charges; repaid first from any incoming funds; blocks new orders."""
    nonce: int = 0
    """Last accepted nonce of transactions signed by the account key."""
    meter_nonce: int = 0
    """Last accepted nonce of readings (signed by the meter key, or the account key without one)."""
    pending_until_ms: int | None = None
    """A pending request expires in the first block at or after this block time."""


class Order(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    order_id: str
    owner: str
    slot: int
    side: Literal["buy", "sell"]
    price_u_per_wh: int
    quantity_wh: int
    energy_type: str
    seq: tuple[int, int]
    """(block height, index of its transaction in the block): time priority."""
    location: Location
    status: Literal["open", "cancelled", "filled", "partially_filled", "expired"] = "open"
    filled_wh: int = 0
    locked_u: int = 0
    """Escrow held while open (buys: price × quantity)."""


class SlotRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    slot: int
    status: Literal["open", "cleared", "settled"] = "open"
    order_count: int = 0
    price_u_per_wh: int | None = None
    volume_wh: int = 0
    trade_count: int = 0
    trades_digest: bytes = b""
    fee_u_per_wh: int = 0
    clearing_location: Location | None = None


class Trade(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    trade_id: str
    slot: int
    buyer: str
    seller: str
    buy_order: str
    sell_order: str
    quantity_wh: int
    price_u_per_wh: int
    fee_u_per_wh: int
    energy_type: str
    location: Location


class Position(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One account's contracted energy and money in one slot."""

    slot: int
    account: str
    bought_wh: int = 0
    sold_wh: int = 0
    paid_u: int = 0
    proceeds_u: int = 0
    """Pending sale proceeds of this slot (part of ``Account.pending_u`` until settled)."""
    trade_ids: tuple[str, ...] = ()


class Reading(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    slot: int
    account: str
    import_wh: int
    export_wh: int
    location: Location


class SettlementLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    slot: int
    account: str
    contracted_wh: int
    metered_wh: int
    delta_wh: int
    imbalance_u: int
    """Positive when the account receives from the grid operator, negative when it pays."""
    reading_missing: bool
    proceeds_u: int
    debt_added_u: int
    location: Location
    written_off_u: int = 0
    """Part of the imbalance not paid (a debt bound was reached)."""


class Dispatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    dispatch_id: int
    account: str
    direction: str
    amount_wh: int
    deadline_ms: int
    penalty_u: int
    issued_at: Location
    status: Literal["issued", "acknowledged", "missed"] = "issued"
    resolved_at: Location | None = None


class NotaryRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    doc_hash: bytes
    parties: tuple[str, ...]
    title: str
    submitted_by: str
    tx_hash: bytes
    location: Location


class Channel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A payment channel (``contracts.channels``): its deposits, and once a close has
    started, the newest posted state; once settled, what each party was paid."""

    channel_id: str
    party_a: str
    """The opener."""
    party_b: str
    """The counterparty."""
    deposit_a_u: int
    challenge_slots: int
    opened_at: Location
    deposit_b_u: int = 0
    funded_at: Location | None = None
    status: Literal["open", "closing", "settled"] = "open"
    closed_by: str | None = None
    """Who started the unilateral close."""
    published_seq: int = 0
    """The seq ``closed_by`` posted (a challenge at ``published_seq + 2`` or later proves it stale)."""
    seq: int = 0
    """Seq of the newest posted state."""
    balance_a_u: int = 0
    balance_b_u: int = 0
    energy_wh: int = 0
    reading_slots: tuple[int, ...] = ()
    deadline_ms: int = 0
    """Challenges are accepted in blocks whose time is below this; settlement from it on."""
    close_at: Location | None = None
    challenged_at: Location | None = None
    paid_a_u: int = 0
    paid_b_u: int = 0
    settled_at: Location | None = None

    @property
    def total_u(self) -> int:
        """What the channel holds until it is settled (Σ deposits)."""
        return self.deposit_a_u + self.deposit_b_u


class ValidatorInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    index: int
    name: str
    role: str
    public_key: bytes
    address: str
    rewards_u: int = 0
    blocks_proposed: int = 0
    qcs_signed: int = 0
    failed_rounds: int = 0


class NodeKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The key an account's own node proves on the peer network (``set_node_key``)."""

    account: str
    public_key: bytes


class Meta(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    height: int = 0
    """Height of the last executed block (0 = genesis)."""
    timestamp_ms: int = 0
    supply_u: int = 0
    """Total supply: Σ(balance + locked + pending) + Σ deposits of unsettled channels − Σ debt;
    changes only by mint, burn, rewards."""
    minted_u: int = 0
    burned_u: int = 0
    rewards_u: int = 0
    next_dispatch_id: int = 1
    pending_registrations: int = 0
    open_slots: tuple[int, ...] = ()
    """Slots with orders, not yet cleared (sorted, bounded by the horizon)."""
    unsettled_slots: tuple[int, ...] = ()
    """Cleared slots (or slots with readings) not yet settled (sorted)."""
    open_dispatches: tuple[tuple[int, int], ...] = ()
    """(deadline_ms, dispatch_id) of issued, unresolved dispatches (sorted, bounded)."""
    settled_slots: tuple[int, ...] = ()
    """Settled slots still held in state (sorted; pruned beyond ``market.history_slots``)."""


CHECKPOINT_EVERY = 256
"""Every this many blocks the root also commits to the whole state (``checkpoint_root``)."""


def is_checkpoint(height: int) -> bool:
    return height > 0 and height % CHECKPOINT_EVERY == 0


def checkpoint_root(height: int, snapshot: bytes) -> bytes:
    """The root of a checkpoint height: a digest of ``encode_state`` bytes taken right after
    the block's write set was folded in (their ``root`` field is that inner root), so the
    root binds the whole state as well as the history before it."""
    return codec.digest(codec.encode(("checkpoint", height, codec.digest(snapshot))))


TABLES: tuple[str, ...] = (
    "accounts", "orders", "slots", "trades", "positions", "readings", "settlements",
    "dispatches", "notary", "validators", "meta", "node_keys", "channels",
)
_MISSING: Any = object()


def slot_key(slot: int) -> str:
    return f"{slot:016d}"


def pair_key(slot: int, address: str) -> str:
    return f"{slot:016d}/{address}"


def _drop_from(index: dict[Any, dict[Any, None]], outer: Any, inner: Any) -> None:
    """Remove ``inner`` under ``outer``; drop ``outer`` when nothing is left (indexes stay bounded)."""
    members = index.get(outer)
    if members is None:
        return
    members.pop(inner, None)
    if not members:
        del index[outer]


class Snapshot(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Serialised state (``encode_state``). ``channels`` is left out while empty, so a
    state without channels encodes as it did before channels existed."""

    genesis: Genesis
    root: bytes
    credit: CreditState
    accounts: dict[str, Account]
    orders: dict[str, Order]
    slots: dict[str, SlotRecord]
    trades: dict[str, Trade]
    positions: dict[str, Position]
    readings: dict[str, Reading]
    settlements: dict[str, SettlementLine]
    dispatches: dict[str, Dispatch]
    notary: dict[str, NotaryRecord]
    validators: dict[str, ValidatorInfo]
    meta: dict[str, Meta]
    node_keys: dict[str, NodeKey] = msgspec.field(default_factory=dict)
    channels: dict[str, Channel] = {}


class State:
    """The mutable chain state. Only ``contracts`` mutates it, through ``put``."""

    def __init__(self, genesis: Genesis, credit: CreditState, root: bytes = b"\x00" * 32) -> None:
        self.genesis = genesis
        self.credit = credit
        self.root = root
        self.accounts: dict[str, Account] = {}
        self.orders: dict[str, Order] = {}
        self.slots: dict[str, SlotRecord] = {}
        self.trades: dict[str, Trade] = {}
        self.positions: dict[str, Position] = {}
        self.readings: dict[str, Reading] = {}
        self.settlements: dict[str, SettlementLine] = {}
        self.dispatches: dict[str, Dispatch] = {}
        self.notary: dict[str, NotaryRecord] = {}
        self.validators: dict[str, ValidatorInfo] = {}
        self.meta_table: dict[str, Meta] = {"meta": Meta()}
        self.node_keys: dict[str, NodeKey] = {}
        """account address -> the key its node uses on the peer network."""
        self.channels: dict[str, Channel] = {}
        self._tables: dict[str, dict[str, Any]] = {
            "accounts": self.accounts, "orders": self.orders, "slots": self.slots,
            "trades": self.trades, "positions": self.positions, "readings": self.readings,
            "settlements": self.settlements, "dispatches": self.dispatches,
            "notary": self.notary, "validators": self.validators, "meta": self.meta_table,
            "node_keys": self.node_keys,
            "channels": self.channels,
        }
        self._journal: list[tuple[str, str, Any, bool]] | None = None
        self.checkpoint: tuple[int, bytes] | None = None
        """(height, bytes) of the latest checkpoint this state sealed (``CHECKPOINT_EVERY``):
        the snapshot whose digest is folded into that height's root; the runtime takes it."""
        self._credit_before: CreditState | None = None
        self._dirty: dict[tuple[str, str], None] = {}
        # Derived indexes (not hashed; rebuilt by ``_reindex``).
        self.open_orders_by_slot: dict[int, dict[str, None]] = {}
        self.open_orders_by_owner: dict[tuple[str, int, str], dict[str, None]] = {}
        """(owner, slot, side) -> open order ids: the self-trade check is one lookup."""
        self.accounts_by_slot: dict[int, dict[str, None]] = {}
        self.orders_by_slot: dict[int, dict[str, None]] = {}
        self.pending_until_ms: dict[str, int] = {}
        """Pending account -> its request's expiry (at most ``max_pending_registrations``)."""
        self.settlements_by_account: dict[str, dict[int, None]] = {}
        """address -> slots with a settlement line in state: an account's lines without a scan."""
        self.settlements_by_slot: dict[int, dict[str, None]] = {}
        """slot -> accounts with a settlement line in state."""
        self.node_key_owner: dict[bytes, str] = {}
        """node key -> the account that named it (keys are unique)."""

    # --- reads ---------------------------------------------------------------------
    @property
    def meta(self) -> Meta:
        return self.meta_table["meta"]

    def table(self, name: str) -> dict[str, Any]:
        return self._tables[name]

    # --- writes --------------------------------------------------------------------
    def put(self, table: str, key: str, value: Any) -> None:
        tab = self._tables[table]
        old = tab.get(key, _MISSING)
        if self._journal is not None:
            self._journal.append((table, key, old, (table, key) in self._dirty))
        tab[key] = value
        self._dirty[(table, key)] = None
        self._index(table, key, old, value)

    def delete(self, table: str, key: str) -> None:
        tab = self._tables[table]
        old = tab.get(key, _MISSING)
        if old is _MISSING:
            return
        if self._journal is not None:
            self._journal.append((table, key, old, (table, key) in self._dirty))
        del tab[key]
        self._dirty[(table, key)] = None
        self._index(table, key, old, _MISSING)

    def set_meta(self, meta: Meta) -> None:
        self.put("meta", "meta", meta)

    def _restore(self, table: str, key: str, old: Any) -> None:
        tab = self._tables[table]
        current = tab.get(key, _MISSING)
        if old is _MISSING:
            tab.pop(key, None)
        else:
            tab[key] = old
        self._index(table, key, current, old)

    def _index(self, table: str, key: str, old: Any, new: Any) -> None:
        if table == "accounts":
            if new is not _MISSING and new.status == "pending" and new.pending_until_ms is not None:
                self.pending_until_ms[key] = new.pending_until_ms
            else:
                self.pending_until_ms.pop(key, None)
        elif table == "orders":
            if new is not _MISSING:
                self.orders_by_slot.setdefault(new.slot, {})[key] = None
            elif old is not _MISSING:
                in_slot = self.orders_by_slot[old.slot]
                in_slot.pop(key, None)
                if not in_slot:
                    del self.orders_by_slot[old.slot]
            if old is not _MISSING and old.status == "open":
                self.open_orders_by_slot[old.slot].pop(key, None)
                owner_key = (old.owner, old.slot, old.side)
                owned = self.open_orders_by_owner[owner_key]
                owned.pop(key, None)
                if not owned:
                    del self.open_orders_by_owner[owner_key]
                if not self.open_orders_by_slot[old.slot]:
                    del self.open_orders_by_slot[old.slot]
            if new is not _MISSING and new.status == "open":
                self.open_orders_by_slot.setdefault(new.slot, {})[key] = None
                self.open_orders_by_owner.setdefault((new.owner, new.slot, new.side), {})[key] = None
        elif table in ("positions", "readings"):
            if new is not _MISSING:
                self.accounts_by_slot.setdefault(new.slot, {})[new.account] = None
            elif old is not _MISSING and not (
                    pair_key(old.slot, old.account) in self.positions
                    or pair_key(old.slot, old.account) in self.readings):
                accounts = self.accounts_by_slot.get(old.slot, {})
                accounts.pop(old.account, None)
                if not accounts:
                    self.accounts_by_slot.pop(old.slot, None)
        elif table == "node_keys":
            if old is not _MISSING:
                self.node_key_owner.pop(old.public_key, None)
            if new is not _MISSING:
                self.node_key_owner[new.public_key] = new.account
        elif table == "settlements":
            if old is not _MISSING and new is _MISSING:
                _drop_from(self.settlements_by_account, old.account, old.slot)
                _drop_from(self.settlements_by_slot, old.slot, old.account)
            if new is not _MISSING:
                self.settlements_by_account.setdefault(new.account, {})[new.slot] = None
                self.settlements_by_slot.setdefault(new.slot, {})[new.account] = None

    def _reindex(self) -> None:
        for key, account in self.accounts.items():
            self._index("accounts", key, _MISSING, account)
        for key, order in self.orders.items():
            self._index("orders", key, _MISSING, order)
        for key, pos in self.positions.items():
            self._index("positions", key, _MISSING, pos)
        for key, reading in self.readings.items():
            self._index("readings", key, _MISSING, reading)
        for key, line in self.settlements.items():
            self._index("settlements", key, _MISSING, line)
        for key, node_key in self.node_keys.items():
            self._index("node_keys", key, _MISSING, node_key)

    # --- transactions (snapshot / rollback) --------------------------------------------
    def begin(self) -> None:
        assert self._journal is None, "nested state transaction"
        self._journal = []
        self._credit_before = self.credit

    def commit(self) -> None:
        assert self._journal is not None
        self._journal = None

    def rollback(self) -> None:
        journal = self._journal
        assert journal is not None
        self._journal = None
        for table, key, old, was_dirty in reversed(journal):
            self._restore(table, key, old)
            if not was_dirty:
                # A rolled-back write leaves no trace, not even in the block's write set.
                self._dirty.pop((table, key), None)
        assert self._credit_before is not None
        self.credit = self._credit_before

    # --- the root ----------------------------------------------------------------------
    def seal_block(self, height: int) -> bytes:
        """Fold this block's write set into the root; return the new root."""
        writes = []
        for table, key in sorted(self._dirty):
            value = self._tables[table].get(key)
            writes.append((table, key, None if value is None else codec.encode(value)))
        self._dirty.clear()
        self.root = codec.digest(codec.encode((self.root, height, codec.encode(self.credit), writes)))
        if is_checkpoint(height):
            data = encode_state(self)
            self.root = checkpoint_root(height, data)
            self.checkpoint = (height, data)
        return self.root


def encode_state(state: State) -> bytes:
    """Deterministic bytes of the whole state (snapshots); only between blocks."""
    assert state._journal is None and not state._dirty, "encode_state inside a block"
    snap = Snapshot(
        genesis=state.genesis, root=state.root, credit=state.credit,
        **{name: state.table(name) for name in TABLES},
    )
    return codec.encode(snap)


def decode_state(data: bytes) -> State:
    """Inverse of ``encode_state``; raises ``codec.CodecError`` on bad bytes. (The bytes of a
    checkpoint hold the inner root: set ``root`` to the checkpoint's, see ``restore_checkpoint``.)"""
    snap = codec.decode(data, Snapshot)
    state = State(snap.genesis, snap.credit, snap.root)
    for name in TABLES:
        state.table(name).update(getattr(snap, name))
    state._reindex()
    return state


def restore_checkpoint(height: int, data: bytes) -> State:
    """The state at checkpoint ``height`` from its snapshot bytes (``State.checkpoint``), with
    the root the chain committed to for that height; raises ``codec.CodecError`` on bad bytes."""
    state = decode_state(data)
    state.root = checkpoint_root(height, data)
    return state
