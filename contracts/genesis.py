"""Genesis: the chain's first state and every parameter of the built-in contracts.

``Genesis`` is what ``gridchain genesis`` writes and every node loads; its
canonical digest identifies the chain configuration. ``validate_genesis`` rejects
a document that could not run (``GenesisError`` with a clear message), e.g.
MARKET.md's ``0 <= p_long <= p_min <= p_max <= p_short``. ``contracts.initial``
builds the ``State`` every node starts executing from.

Bounds by construction (docs/BOUNDS.md): every quantity a participant sets has an
upper bound here, and ``validate_genesis`` refuses bounds whose products and sums
(a slot's payments, ``|Δ| × p_short``, every account's holdings plus every debt)
could pass ``SAFE_INT = 2^62``: half the signed 64-bit range, so the sum of any two
bounded amounts still fits. Contracts reject values above the bounds, so no input a
participant can sign makes a block fail to execute.

Units: time in ms (block time), energy in Wh, money in µ, prices in µ/Wh.
"""

from __future__ import annotations

import msgspec

from consensus import crypto
from consensus.config import ConsensusParams
from contracts.errors import GenesisError
from contracts.transactions import ROLES, Address, Name, PublicKey, Zone

SAFE_INT = 2**62
"""Every bound, and every product or sum of bounds the contracts compute, stays at or below this."""
LIFETIME_BLOCKS = 2**40
"""Design lifetime of a chain (35 years at 1,000 blocks/s): bounds what block rewards can add up to."""


class MarketParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Market rules (MARKET.md). Defaults suit a production chain; a devnet passes a small ``slot_ms``."""

    slot_ms: int = 60_000
    """Length of one delivery slot. Slot s is [T0 + s·slot_ms, T0 + (s+1)·slot_ms)."""
    gate_lead_ms: int = 10_000
    """Orders for slot s close at T0 + s·slot_ms − gate_lead_ms (gate closure)."""
    max_horizon_slots: int = 96
    """Orders may be placed for at most this many slots after the current one."""
    p_min: int = 0
    """Lowest order price, µ/Wh."""
    p_max: int = 1_000
    """Highest order price, µ/Wh (1 µ/Wh = 1 token/MWh)."""
    grid_fee: int = 5
    """Grid fee in µ/Wh added to every ask's effective price and paid to the grid operator."""
    p_short: int = 1_200
    """Price of missing energy (negative imbalance), µ/Wh."""
    p_long: int = 0
    """Price paid for surplus energy (positive imbalance), µ/Wh."""
    meter_window_ms: int = 60_000
    """Readings for slot s are accepted until the slot's end plus this window."""
    max_order_wh: int = 10_000_000
    """Largest quantity of one order, Wh."""
    max_reading_wh: int = 1_000_000_000
    """Largest import or export of one reading (one account, one slot), Wh."""
    max_orders_per_slot: int = 100_000
    """Bound on orders one slot holds (back-pressure: further orders are ``limit_reached``)."""
    history_slots: int = 10_080
    """Settled slots whose records (orders, trades, positions, readings, settlement lines)
    stay in state; older ones are pruned when a later slot settles (0 = keep forever).
    The default keeps 7 days of 60 s slots. Blocks and their leaves (the proofs) stay in storage."""


class TokenParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Settlement token issuance and incentives (DESIGN.md §4 "Incentives")."""

    block_reward_proposer_u: int = 1_000
    """Minted to the proposer of every committed block (its validator account)."""
    block_reward_voter_u: int = 100
    """Minted to each signer of the QC a committed block carries."""
    max_supply_u: int = 10**17
    """Mints are refused beyond this total supply (genesis balances count; block rewards may
    add at most ``LIFETIME_BLOCKS`` blocks' worth on top)."""
    max_debt_u: int = 10**13
    """Debt one account can owe; a charge beyond it is written off (neither side moves)."""


class LimitParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Bounds on state that users can grow."""

    max_pending_registrations: int = 10_000
    """Registration requests awaiting approval at once."""
    registration_ttl_slots: int = 1_440
    """A pending registration request not approved (or rejected) within this many slots of
    its inclusion expires and is dropped (default: one day of 60 s slots)."""
    max_open_dispatches: int = 10_000
    """Dispatch instructions awaiting acknowledgement or deadline at once."""
    max_dispatch_horizon_ms: int = 7 * 24 * 3_600_000
    """A dispatch deadline may be at most this far after the issuing block."""
    max_dispatch_wh: int = 10_000_000_000
    """Largest ``amount_wh`` of one dispatch instruction."""
    max_penalty_u: int = 10**12
    """Largest ``penalty_u`` of one dispatch instruction."""
    max_accounts: int = 100_000
    """Accounts the state holds at most (genesis, validators, pending and active); further
    registration requests are ``limit_reached``."""


class ValidatorEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: Name
    role: str
    """The consortium role the validator's operator holds (generator, grid, retailer, user, ...)."""
    public_key: PublicKey
    address: Address


class AccountEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: Name
    address: Address
    public_key: PublicKey
    role: str
    zone: Zone = "Z1"
    balance_u: int = 0
    meter_key: PublicKey | None = None


class Genesis(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    chain_id: str
    genesis_time_ms: int
    """T0: slot 0 starts here."""
    grid_operator: Address
    """The manager account: approves registrations, mints/burns, dispatches, receives fees."""
    validators: tuple[ValidatorEntry, ...]
    """The committee, in index order (validator i is NodeId i)."""
    accounts: tuple[AccountEntry, ...] = ()
    market: MarketParams = MarketParams()
    token: TokenParams = TokenParams()
    limits: LimitParams = LimitParams()
    consensus: ConsensusParams = ConsensusParams()


def default_market_params(**overrides: int) -> MarketParams:
    """``MarketParams`` with the documented defaults, any field overridable."""
    return msgspec.structs.replace(MarketParams(), **overrides)


def validate_genesis(genesis: Genesis) -> None:
    """Raise ``GenesisError`` if ``genesis`` cannot start a chain."""
    m = genesis.market

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise GenesisError(message)

    need(bool(genesis.chain_id) and len(genesis.chain_id) <= 64, "chain_id must be 1..64 characters")
    need(0 <= genesis.genesis_time_ms <= SAFE_INT, f"genesis_time_ms must be in [0, {SAFE_INT}]")
    need(0 <= m.p_long <= m.p_min <= m.p_max <= m.p_short,
         "market prices must satisfy 0 <= p_long <= p_min <= p_max <= p_short "
         f"(got p_long={m.p_long}, p_min={m.p_min}, p_max={m.p_max}, p_short={m.p_short})")
    need(m.slot_ms > 0, "market.slot_ms must be > 0")
    need(m.gate_lead_ms >= 0, "market.gate_lead_ms must be >= 0")
    need(m.max_horizon_slots >= 0, "market.max_horizon_slots must be >= 0")
    need(m.grid_fee >= 0, "market.grid_fee must be >= 0")
    need(m.meter_window_ms >= 0, "market.meter_window_ms must be >= 0")
    need(m.max_order_wh >= 1, "market.max_order_wh must be >= 1")
    need(m.max_reading_wh >= 0, "market.max_reading_wh must be >= 0")
    need(m.max_orders_per_slot >= 1, "market.max_orders_per_slot must be >= 1")
    need(m.history_slots >= 0, "market.history_slots must be >= 0")
    t = genesis.token
    need(t.block_reward_proposer_u >= 0 and t.block_reward_voter_u >= 0, "block rewards must be >= 0")
    need(t.max_supply_u >= 0 and t.max_debt_u >= 0, "token.max_supply_u and token.max_debt_u must be >= 0")
    limits = genesis.limits
    need(limits.registration_ttl_slots >= 1, "limits.registration_ttl_slots must be >= 1")
    need(limits.max_dispatch_wh >= 1 and limits.max_penalty_u >= 0,
         "limits.max_dispatch_wh must be >= 1 and limits.max_penalty_u >= 0")
    need(limits.max_accounts >= 1, "limits.max_accounts must be >= 1")
    need(limits.max_dispatch_horizon_ms >= 0 and limits.max_open_dispatches >= 0
         and limits.max_pending_registrations >= 0, "limits must be >= 0")
    for name, value in bound_products(genesis).items():
        need(value <= SAFE_INT, f"bounds too large: {name} = {value} exceeds 2^62 = {SAFE_INT} "
                                "(see docs/BOUNDS.md)")
    for problem in genesis.consensus.credit.problems():
        need(False, problem)
    need(len(genesis.validators) >= 1, "genesis needs at least one validator")
    seen: set[str] = set()
    for v in genesis.validators:
        need(crypto.address(v.public_key) == v.address, f"validator {v.name}: address does not match its key")
        need(v.address not in seen, f"validator {v.name}: duplicate address")
        seen.add(v.address)
    seen = set()
    for a in genesis.accounts:
        need(a.role in ROLES, f"account {a.name}: unknown role {a.role!r} (one of {', '.join(ROLES)})")
        need(crypto.address(a.public_key) == a.address, f"account {a.name}: address does not match its key")
        need(a.address not in seen, f"account {a.name}: duplicate address")
        need(a.balance_u >= 0, f"account {a.name}: negative balance")
        seen.add(a.address)
    need(sum(a.balance_u for a in genesis.accounts) <= t.max_supply_u,
         f"genesis balances exceed token.max_supply_u = {t.max_supply_u}")
    need(len(seen | {v.address for v in genesis.validators}) <= limits.max_accounts,
         f"genesis holds more than limits.max_accounts = {limits.max_accounts} accounts")
    grid = [a for a in genesis.accounts if a.address == genesis.grid_operator]
    need(bool(grid) and grid[0].role == "grid", "grid_operator must be a genesis account with role 'grid'")


def bound_products(genesis: Genesis) -> dict[str, int]:
    """The largest value of every product and sum of bounds the contracts compute (each must
    be <= ``SAFE_INT``); docs/BOUNDS.md says where each one arises."""
    m, t, limits = genesis.market, genesis.token, genesis.limits
    slot_wh = m.max_orders_per_slot * m.max_order_wh
    rewards_per_block_u = t.block_reward_proposer_u + len(genesis.validators) * t.block_reward_voter_u
    slot_ms_span = m.slot_ms * (m.max_horizon_slots + limits.registration_ttl_slots + 2)
    return {
        "slot_wh = max_orders_per_slot * max_order_wh": slot_wh,
        "slot payments = slot_wh * (p_max + grid_fee)": slot_wh * (m.p_max + m.grid_fee),
        "imbalance = (slot_wh + max_reading_wh) * p_short": (slot_wh + m.max_reading_wh) * m.p_short,
        "money = max_supply_u + LIFETIME_BLOCKS * rewards per block + max_accounts * max_debt_u":
            t.max_supply_u + LIFETIME_BLOCKS * rewards_per_block_u + limits.max_accounts * t.max_debt_u,
        "time span = slot_ms * (max_horizon_slots + registration_ttl_slots + 2) + gate_lead_ms"
        " + meter_window_ms + max_dispatch_horizon_ms":
            slot_ms_span + m.gate_lead_ms + m.meter_window_ms + limits.max_dispatch_horizon_ms,
        "max_dispatch_wh": limits.max_dispatch_wh,
        "max_penalty_u": limits.max_penalty_u,
    }
