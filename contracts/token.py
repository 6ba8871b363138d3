"""Settlement token: balances, transfers, mint/burn by the grid operator, and the
money helpers every contract uses (credit with debt netting, charges into debt).

Money is in µ. Holdings of an account are ``balance_u + locked_u + pending_u``;
``debt_u`` is what it owes. Total supply ``Meta.supply_u = Σ holdings − Σ debt``
changes only by ``mint``, ``burn`` and block rewards (protocol mints). Incoming
funds repay debt first (``credit``); a charge larger than the free balance takes
the balance and records the rest as debt (``charge``): nothing is ever negative.

Bounds (docs/BOUNDS.md): a mint is refused beyond ``token.max_supply_u``, and an
account's debt never exceeds ``token.max_debt_u``: the part of a charge beyond it is
*written off*, and whoever the charge was for (the grid operator) receives only what
was collected, so Σ holdings − Σ debt = supply still holds to the µ.
"""

from __future__ import annotations

import msgspec

from contracts import errors
from contracts.context import BlockContext
from contracts.genesis import SAFE_INT
from contracts.state import Account, State
from contracts.transactions import Burn, Mint, Transfer, Tx

replace = msgspec.structs.replace


def get_account(state: State, address: str) -> Account:
    account = state.accounts.get(address)
    if account is None:
        raise errors.fail(errors.UNKNOWN_ACCOUNT, f"no account {address}")
    return account


def credit(state: State, address: str, amount_u: int) -> None:
    """Pay ``amount_u`` to ``address``: repays its debt first, the rest is free balance."""
    assert amount_u >= 0
    if amount_u == 0:
        return
    account = state.accounts[address]
    repaid = min(account.debt_u, amount_u)
    state.put("accounts", address, replace(
        account, debt_u=account.debt_u - repaid, balance_u=account.balance_u + amount_u - repaid))


class Charged(msgspec.Struct, frozen=True):
    """What ``charge`` did: debt it added and the part it wrote off (the rest was taken)."""

    debt_added_u: int = 0
    written_off_u: int = 0


def charge(state: State, address: str, amount_u: int) -> Charged:
    """Take ``amount_u`` from the free balance; the shortfall becomes debt up to
    ``token.max_debt_u``, the rest is written off. The payee must receive
    ``amount_u - written_off_u``."""
    assert amount_u >= 0
    if amount_u == 0:
        return Charged()
    account = state.accounts[address]
    taken = min(account.balance_u, amount_u)
    room = max(0, state.genesis.token.max_debt_u - account.debt_u)
    debt = min(amount_u - taken, room)
    state.put("accounts", address, replace(
        account, balance_u=account.balance_u - taken, debt_u=account.debt_u + debt))
    return Charged(debt_added_u=debt, written_off_u=amount_u - taken - debt)


def require_grid_operator(state: State, tx: Tx) -> None:
    if tx.sender != state.genesis.grid_operator:
        raise errors.fail(errors.UNAUTHORIZED, f"only the grid operator may {tx.kind}")


def apply_transfer(ctx: BlockContext, tx: Tx, body: Transfer) -> None:
    state = ctx.state
    sender = state.accounts[tx.sender]
    recipient = get_account(state, body.to)
    if recipient.status != "active":
        raise errors.fail(errors.NOT_REGISTERED, f"recipient {body.to} is not active")
    if body.to == tx.sender:
        raise errors.fail(errors.BAD_AMOUNT, "transfer to oneself")
    if sender.balance_u < body.amount_u:
        raise errors.fail(errors.INSUFFICIENT_BALANCE,
                          f"balance {sender.balance_u} µ < transfer {body.amount_u} µ")
    state.put("accounts", tx.sender, replace(sender, balance_u=sender.balance_u - body.amount_u))
    credit(state, body.to, body.amount_u)


MINTED_CEILING_U = SAFE_INT
"""Lifetime total of mints (``Meta.minted_u``): mint/burn cycles cannot push the counter out of range."""


def apply_mint(ctx: BlockContext, tx: Tx, body: Mint) -> None:
    state = ctx.state
    require_grid_operator(state, tx)
    recipient = get_account(state, body.to)
    if recipient.status == "pending":
        # A pending request may be dropped (rejected, expired) with everything it holds.
        raise errors.fail(errors.NOT_REGISTERED, f"account {body.to} is pending")
    meta = state.meta
    max_supply_u = state.genesis.token.max_supply_u
    if body.amount_u > max_supply_u - meta.supply_u:
        raise errors.fail(errors.LIMIT_REACHED,
                          f"supply {meta.supply_u} µ + {body.amount_u} µ exceeds token.max_supply_u {max_supply_u} µ")
    if body.amount_u > MINTED_CEILING_U - meta.minted_u:
        raise errors.fail(errors.LIMIT_REACHED, "the chain's lifetime mint total is exhausted")
    credit(state, body.to, body.amount_u)
    meta = state.meta
    state.set_meta(replace(meta, supply_u=meta.supply_u + body.amount_u,
                           minted_u=meta.minted_u + body.amount_u))


def apply_burn(ctx: BlockContext, tx: Tx, body: Burn) -> None:
    state = ctx.state
    require_grid_operator(state, tx)
    grid = state.accounts[tx.sender]
    if grid.balance_u < body.amount_u:
        raise errors.fail(errors.INSUFFICIENT_BALANCE,
                          f"balance {grid.balance_u} µ < burn {body.amount_u} µ")
    state.put("accounts", tx.sender, replace(grid, balance_u=grid.balance_u - body.amount_u))
    meta = state.meta
    state.set_meta(replace(meta, supply_u=meta.supply_u - body.amount_u,
                           burned_u=meta.burned_u + body.amount_u))
