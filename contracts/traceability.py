"""Traceability: a Merkle tree over each block's records, inclusion proofs, lineage.

Leaves are the canonical bytes of the block's records (``contracts.records``), in
the order the executor emitted them. Hashing is domain separated as in RFC 6962:
``leaf = sha256(0x00 ‖ bytes)``, ``node = sha256(0x01 ‖ left ‖ right)``; a level
with an odd count promotes its last node unchanged. The root of an empty block is
``sha256(b"")``. ``prove(leaves, i)`` gives the sibling path; ``verify_proof``
recomputes the root — changing any byte of the leaf, the path or the root fails.

``lineage(state, trade_id)`` names where every record of a trade's life was
proven: both orders, the clearing record, the trade, both readings and both
settlement lines, each as (height, leaf index); the API loads those blocks' leaves
and returns a proof per record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec

from contracts.state import Location, State, pair_key, slot_key

EMPTY_ROOT = hashlib.sha256(b"").digest()


class Proof(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    index: int
    leaf_count: int
    siblings: tuple[bytes, ...]


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    up = [_node(level[k], level[k + 1]) for k in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        up.append(level[-1])
    return up


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    level = [leaf_hash(leaf) for leaf in leaves]
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


receipts_root = merkle_root


def prove(leaves: Sequence[bytes], index: int) -> Proof:
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} of {len(leaves)}")
    level = [leaf_hash(leaf) for leaf in leaves]
    siblings: list[bytes] = []
    i = index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):
            siblings.append(level[sibling])
        level = _next_level(level)
        i //= 2
    return Proof(index=index, leaf_count=len(leaves), siblings=tuple(siblings))


def verify_proof(leaf: bytes, proof: Proof, root: bytes) -> bool:
    """True iff ``leaf`` is leaf ``proof.index`` of a tree of ``proof.leaf_count`` with ``root``."""
    if not 0 <= proof.index < proof.leaf_count:
        return False
    h = leaf_hash(leaf)
    i, n = proof.index, proof.leaf_count
    siblings = iter(proof.siblings)
    used = 0
    while n > 1:
        if i % 2 == 1:
            h = _node(next(siblings, b""), h)
            used += 1
        elif i + 1 < n:
            h = _node(h, next(siblings, b""))
            used += 1
        i //= 2
        n = (n + 1) // 2
    return used == len(proof.siblings) and all(len(s) == 32 for s in proof.siblings) and h == root


def lineage(state: State, trade_id: str) -> dict[str, Location] | None:
    """Locations of every lineage record of ``trade_id`` (those that exist yet), or None."""
    trade = state.trades.get(trade_id)
    if trade is None:
        return None
    out: dict[str, Location] = {
        "buy_order": state.orders[trade.buy_order].location,
        "sell_order": state.orders[trade.sell_order].location,
    }
    slot = state.slots.get(slot_key(trade.slot))
    if slot is not None and slot.clearing_location is not None:
        out["clearing"] = slot.clearing_location
    out["trade"] = trade.location
    for role, address in (("buyer", trade.buyer), ("seller", trade.seller)):
        reading = state.readings.get(pair_key(trade.slot, address))
        if reading is not None:
            out[f"{role}_reading"] = reading.location
    for role, address in (("buyer", trade.buyer), ("seller", trade.seller)):
        line = state.settlements.get(pair_key(trade.slot, address))
        if line is not None:
            out[f"{role}_settlement"] = line.location
    return out
