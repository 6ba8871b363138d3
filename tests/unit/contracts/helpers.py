"""A small in-memory chain for contract tests: named accounts with keys, signed
transactions, blocks at chosen times, and the "state unchanged" check."""

from __future__ import annotations

from typing import Any

import msgspec

from consensus import crypto
from contracts.executor import BlockInput, BlockResult, Receipt, apply_block
from contracts.genesis import (
    AccountEntry,
    Genesis,
    MarketParams,
    ValidatorEntry,
    default_market_params,
)
from contracts.initial import initial_state
from contracts.state import State, decode_state, encode_state
from contracts.transactions import SubmitReading, Tx, decode_signed_tx, sign_tx

CHAIN_ID = "test-chain"
SLOT_MS = 1_000

DEFAULT_ACCOUNTS: dict[str, tuple[str, int]] = {
    "grid": ("grid", 0),
    "gen": ("generator", 0),
    "gen2": ("generator", 0),
    "con": ("consumer", 1_000_000),
    "con2": ("consumer", 1_000_000),
    "pro": ("prosumer", 1_000_000),
    "ret": ("retailer", 1_000_000),
    "reg": ("regulator", 0),
}


def signer_for(name: str) -> crypto.Signer:
    return crypto.Signer(crypto_seed(name))


def crypto_seed(name: str) -> bytes:
    import hashlib

    return hashlib.sha256(b"test-key/" + name.encode()).digest()


def market_params(**overrides: Any) -> MarketParams:
    base: dict[str, Any] = dict(slot_ms=SLOT_MS, gate_lead_ms=0, max_horizon_slots=10, p_min=0,
                                p_max=100, grid_fee=0, p_short=100, p_long=0, meter_window_ms=1_000,
                                max_order_wh=1_000_000)
    base.update(overrides)
    return default_market_params(**base)


class Chain:
    """A chain of one validator ("val") with the accounts of ``accounts`` (name -> (role, balance))."""

    def __init__(self, accounts: dict[str, tuple[str, int]] | None = None,
                 market: MarketParams | None = None, **genesis_overrides: Any) -> None:
        accounts = DEFAULT_ACCOUNTS if accounts is None else accounts
        self.signers = {name: signer_for(name) for name in [*accounts, "val", "outsider", "meter"]}
        entries = tuple(
            AccountEntry(name=name, address=self.addr(name), public_key=self.signers[name].public_key,
                         role=role, balance_u=balance)
            for name, (role, balance) in accounts.items())
        val = self.signers["val"]
        self.genesis = Genesis(
            chain_id=CHAIN_ID, genesis_time_ms=0, grid_operator=self.addr("grid"),
            validators=(ValidatorEntry(name="val", role="grid", public_key=val.public_key,
                                       address=self.addr("val")),),
            accounts=entries, market=market or market_params(), **genesis_overrides)
        self.state: State = initial_state(self.genesis)
        self.height = 0
        self.now_ms = 0
        self.nonces: dict[str, int] = {}

    def addr(self, name: str) -> str:
        return crypto.address(self.signers[name].public_key)

    def account(self, name: str) -> Any:
        return self.state.accounts[self.addr(name)]

    def tx(self, name: str, body: Any, *, signer: str | None = None, nonce: int | None = None,
           expires_at_ms: int = 10**12, chain_id: str = CHAIN_ID, meter: bool = False) -> bytes:
        """Signed raw tx from account ``name`` (signed by ``signer``'s key if given)."""
        key = self.signers[signer or name]
        nonce_key = f"{name}/meter" if meter else name
        if nonce is None:
            nonce = self.nonces.get(nonce_key, 0) + 1
            self.nonces[nonce_key] = nonce
        tx = Tx(chain_id=chain_id, sender=self.addr(name), public_key=key.public_key, nonce=nonce,
                expires_at_ms=expires_at_ms, body=body)
        return sign_tx(tx, key)

    def block_input(self, txs: list[bytes], at_ms: int | None = None) -> BlockInput:
        at = self.now_ms if at_ms is None else at_ms
        return BlockInput(height=self.height + 1, round=self.height + 1, timestamp_ms=at,
                          proposer=0, voters=(0,), txs=list(txs))

    def block(self, *txs: bytes, at_ms: int | None = None) -> tuple[list[Receipt], BlockResult]:
        block = self.block_input(list(txs), at_ms)
        _, receipts, result = apply_block(self.state, block)
        self.height = block.height
        self.now_ms = block.timestamp_ms
        return receipts, result

    def ok(self, *txs: bytes, at_ms: int | None = None) -> BlockResult:
        receipts, result = self.block(*txs, at_ms=at_ms)
        bad = [(r.code, r.message) for r in receipts if not r.ok]
        assert not bad, bad
        return result

    def expect_rejected(self, raw: bytes, code: str, *, at_ms: int | None = None) -> Receipt:
        """Apply a block holding only ``raw``; check the code and that the state equals
        the state after the same block without it (root included), except that a
        transaction that passed authentication has consumed its nonce."""
        twin = decode_state(encode_state(self.state))
        block = self.block_input([raw], at_ms)
        _, receipts, _ = apply_block(self.state, block)
        self.height = block.height
        self.now_ms = block.timestamp_ms
        assert receipts[0].code == code, (receipts[0].code, receipts[0].message)
        assert not receipts[0].ok
        if receipts[0].nonce_consumed:
            stx = decode_signed_tx(raw)
            before = twin.accounts[stx.tx.sender]
            field = "meter_nonce" if isinstance(stx.tx.body, SubmitReading) else "nonce"
            assert getattr(self.state.accounts[stx.tx.sender], field) == stx.tx.nonce
            assert getattr(before, field) < stx.tx.nonce
            twin.begin()  # the same write, inside the twin's block, so the roots match
            twin.put("accounts", stx.tx.sender, msgspec.structs.replace(before, **{field: stx.tx.nonce}))
            twin.commit()
        apply_block(twin, msgspec.structs.replace(block, txs=[]))
        assert encode_state(self.state) == encode_state(twin)
        return receipts[0]


def holdings_minus_debt(state: State) -> int:
    """Σ holdings − Σ debt, with the deposits channels hold until they are settled."""
    in_channels = sum(c.total_u for c in state.channels.values() if c.status != "settled")
    return in_channels + sum(a.balance_u + a.locked_u + a.pending_u - a.debt_u for a in state.accounts.values())


def check_invariants(state: State) -> None:
    """No negative amount; locks = Σ open bid locks; supply conservation."""
    locks: dict[str, int] = {}
    for order in state.orders.values():
        if order.status == "open":
            locks[order.owner] = locks.get(order.owner, 0) + order.locked_u
        else:
            assert order.locked_u == 0
    for a in state.accounts.values():
        assert min(a.balance_u, a.locked_u, a.pending_u, a.debt_u) >= 0, a
        assert a.locked_u == locks.get(a.address, 0), a
    pending: dict[str, int] = {}
    for key, pos in state.positions.items():
        if key not in state.settlements:
            pending[pos.account] = pending.get(pos.account, 0) + pos.proceeds_u
    for a in state.accounts.values():
        assert a.pending_u == pending.get(a.address, 0), a
    meta = state.meta
    assert holdings_minus_debt(state) == meta.supply_u
    genesis_supply = sum(a.balance_u for a in state.genesis.accounts)
    # Total supply changes only by mint and burn (block rewards are protocol mints).
    assert meta.supply_u == genesis_supply + meta.minted_u - meta.burned_u + meta.rewards_u
    # Node keys: one account per key, and the lookup index matches the table.
    assert state.node_key_owner == {nk.public_key: nk.account for nk in state.node_keys.values()}
