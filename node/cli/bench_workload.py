"""The workloads of ``gridchain bench``: which signed transaction is offered to which node, and when.

A workload is a list of ``Item`` per node, in submission order: the raw signed
bytes, their hash, the kind, the time (seconds after the start of the load) at
which it is due, and for orders the time after which offering it is pointless
(its slot's gate is about to close). Each account is pinned to one node so its
nonces arrive in order.

``market`` (``MarketWorkload``): every bench account is a prosumer. For each
delivery slot whose order window overlaps the run, orders flow evenly during the
``slot_ms`` before the slot's gate closes (ending ``GATE_MARGIN_S`` early): each
account takes one side per slot (alternating between slots, so no account ever
trades against itself), sellers ask around ``ASK_MEAN`` and buyers bid around
``BID_MEAN`` µ/Wh, so about half the volume crosses. Right after the slot ends,
every account that placed an order for it submits its meter reading in a burst of
``READING_BURST_S``; the slot is settled in the first block after its meter window.
Offered ``rate`` tx/s is split as orders + readings per slot (readings from at
most all accounts). Readings use the meter nonce (a lane of their own, see
``node.chain.mempool``), orders the account nonce.

``transfer``: 1 µ transfers between the bench accounts (round-robin), due evenly
at ``rate`` tx/s, or all at once with rate 0.

Generation is deterministic for a seed; ``slot_items`` can run slot by slot (the
soak run signs each slot just before it is needed).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from consensus import codec
from contracts.genesis import Genesis
from contracts.market import gate_close_ms, slot_end_ms
from contracts.transactions import PlaceOrder, SubmitReading, Transfer, Tx, sign_tx

GATE_MARGIN_S = 0.5
"""Orders stop this long before their gate closes (an order must commit before it)."""
READING_BURST_S = 1.0
"""Readings of a slot are offered within this long after the slot ends."""
ASK_MEAN, BID_MEAN, PRICE_SPREAD = 300, 320, 100
"""µ/Wh: asks uniform in ASK_MEAN ± PRICE_SPREAD, bids in BID_MEAN ± PRICE_SPREAD."""
QUANTITY_WH = (100, 2_000)
EXPIRY_S = 600
SATURATION_RATE = 2_000
"""Nominal offered tx/s of the market workload with ``--rate 0`` (above what 4 validators on 2 cores commit)."""


@dataclass(slots=True)
class Item:
    due_s: float
    """When it is due, seconds after the start of the load."""
    deadline_s: float
    """Not offered after this (inf: no deadline)."""
    kind: str
    tx_hash: bytes
    raw: bytes


@dataclass(slots=True)
class Participant:
    signer: Any
    address: str
    public_key: bytes
    node: int
    nonce: int = 0
    meter_nonce: int = 0


def load_participants(accounts: list[dict[str, Any]], nodes: int) -> list[Participant]:
    from node.ops.keys import load_key_file

    out = []
    for k, account in enumerate(accounts):
        key = load_key_file(account["key_file"])
        out.append(Participant(signer=key.signer, address=key.address, public_key=key.public_key, node=k % nodes))
    return out


def _sign(p: Participant, chain_id: str, nonce: int, expires_at_ms: int, body: Any) -> tuple[bytes, bytes]:
    tx = Tx(chain_id=chain_id, sender=p.address, public_key=p.public_key, nonce=nonce,
            expires_at_ms=expires_at_ms, body=body)
    raw = sign_tx(tx, p.signer)
    return codec.digest(raw), raw


class MarketWorkload:
    """Orders and readings per slot; see the module docstring."""

    def __init__(self, genesis: Genesis, participants: list[Participant], *, start_ms: int, duration_s: float,
                 rate: int, nodes: int, seed: int = 1) -> None:
        self.genesis = genesis
        self.participants = participants
        self.start_ms = start_ms
        self.duration_s = duration_s
        self.nodes = nodes
        self.slot_s = genesis.market.slot_ms / 1000
        per_slot = max(2, int(rate * self.slot_s))
        readers = len(participants)
        self.orders_per_slot = per_slot - readers if per_slot >= 2 * readers else per_slot // 2
        self.rng = random.Random(seed)
        self.expires_at_ms = start_ms + int((duration_s + EXPIRY_S) * 1000)

    def _t(self, ms: int) -> float:
        return (ms - self.start_ms) / 1000

    def slots(self) -> list[int]:
        """Delivery slots whose order window overlaps the run (in order)."""
        g = self.genesis
        first = (self.start_ms - g.genesis_time_ms) // g.market.slot_ms
        out = []
        s = max(1, first)
        while self._t(gate_close_ms(g, s)) - self.slot_s < self.duration_s:
            if self._t(gate_close_ms(g, s)) - GATE_MARGIN_S > 0:
                out.append(s)
            s += 1
        return out

    def slot_items(self, slot: int) -> list[list[Item]]:
        """The orders for ``slot`` and their readings, per node (orders first)."""
        g, rng, chain = self.genesis, self.rng, self.genesis.chain_id
        per_node: list[list[Item]] = [[] for _ in range(self.nodes)]
        close = self._t(gate_close_ms(g, slot)) - GATE_MARGIN_S
        open_ = close - self.slot_s + GATE_MARGIN_S
        n = self.orders_per_slot
        step = (close - open_) / n
        placed: dict[int, int] = {}
        for i in range(n):
            due = open_ + i * step
            if due < 0 or due > self.duration_s:
                continue
            k = i % len(self.participants)
            p = self.participants[k]
            sell = (k + slot) % 2 == 0
            if sell:
                price = ASK_MEAN + rng.randint(-PRICE_SPREAD, PRICE_SPREAD)
            else:
                price = BID_MEAN + rng.randint(-PRICE_SPREAD, PRICE_SPREAD)
            quantity = rng.randint(*QUANTITY_WH)
            p.nonce += 1
            body = PlaceOrder(slot=slot, side="sell" if sell else "buy", price_u_per_wh=price, quantity_wh=quantity)
            tx_hash, raw = _sign(p, chain, p.nonce, self.expires_at_ms, body)
            per_node[p.node].append(Item(due, close, "place_order", tx_hash, raw))
            placed[k] = placed.get(k, 0) + quantity
        end = self._t(slot_end_ms(g, slot))
        readers = sorted(placed)
        for j, k in enumerate(readers):
            due = end + READING_BURST_S * j / max(1, len(readers))
            if due > self.duration_s:
                break
            p = self.participants[k]
            p.meter_nonce += 1
            metered = placed[k] // 2 + rng.randint(0, placed[k] // 4)
            sell = (k + slot) % 2 == 0
            reading = SubmitReading(slot=slot, import_wh=0 if sell else metered, export_wh=metered if sell else 0)
            tx_hash, raw = _sign(p, chain, p.meter_nonce, self.expires_at_ms, reading)
            per_node[p.node].append(Item(due, float("inf"), "submit_reading", tx_hash, raw))
        return per_node

    def all_items(self) -> list[list[Item]]:
        per_node: list[list[Item]] = [[] for _ in range(self.nodes)]
        for slot in self.slots():
            for node, items in enumerate(self.slot_items(slot)):
                per_node[node].extend(items)
        for items in per_node:
            items.sort(key=lambda it: it.due_s)  # stable: an account's nonces stay in order
        return per_node


def transfer_items(chain_id: str, participants: list[Participant], *, total: int, rate: int, nodes: int,
                   start_ms: int) -> list[list[Item]]:
    """1 µ transfers round-robin between the accounts; due at ``rate`` tx/s (0: all at once)."""
    per_node: list[list[Item]] = [[] for _ in range(nodes)]
    expires_at_ms = start_ms + 3_600_000
    for i in range(total):
        k = i % len(participants)
        p, to = participants[k], participants[(k + 1) % len(participants)]
        p.nonce += 1
        tx_hash, raw = _sign(p, chain_id, p.nonce, expires_at_ms, Transfer(to=to.address, amount_u=1))
        per_node[p.node].append(Item(i / rate if rate else 0.0, float("inf"), "transfer", tx_hash, raw))
    return per_node
