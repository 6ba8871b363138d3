"""Registry: accounts, roles, zones, meter keys.

An applicant signs ``register_request`` with its own key (nonce 1): the account
appears as ``pending``. Only the grid operator (the manager) approves it
(``approve_registration``) or rejects it (``reject_registration``), suspends or
reinstates it (``suspend_account``) and sets its certified meter key
(``set_meter_key``). Only active accounts transact.

Any active account names the key of its own node (``set_node_key``; None clears it):
validators let a node that proves such a key follow the chain as an observer. A key
names one account's node only [``key_in_use``]; suspending the account shuts its
node out, since only active accounts' node keys are accepted.

Requests cost nothing, so they are bounded twice: at most
``limits.max_pending_registrations`` wait at once [``limit_reached``], and a
request neither approved nor rejected within ``limits.registration_ttl_slots``
slots expires (``expire_registrations``, a system step). A rejected or expired
request is deleted outright (no tombstone to grow the state): the address may
apply again, and a replay of the old request only re-creates what its key signed,
until the request's own ``expires_at_ms``.
"""

from __future__ import annotations

import msgspec

from consensus import crypto
from contracts import errors
from contracts.context import BlockContext
from contracts.records import RegistrationDropped
from contracts.state import Account, NodeKey, State
from contracts.token import get_account, require_grid_operator
from contracts.transactions import (
    REQUESTABLE_ROLES,
    ApproveRegistration,
    RegisterRequest,
    RejectRegistration,
    SetMeterKey,
    SetNodeKey,
    SuspendAccount,
    Tx,
)

replace = msgspec.structs.replace


def apply_register_request(ctx: BlockContext, tx: Tx, body: RegisterRequest) -> None:
    state = ctx.state
    if tx.sender in state.accounts:
        raise errors.fail(errors.ALREADY_REGISTERED, f"account {tx.sender} already exists")
    if crypto.address(tx.public_key) != tx.sender:
        raise errors.fail(errors.WRONG_SIGNER, "sender is not the address of the signing key")
    if body.role not in REQUESTABLE_ROLES:
        raise errors.fail(errors.BAD_ROLE, f"role {body.role!r} cannot be requested")
    meta = state.meta
    limits = state.genesis.limits
    if meta.pending_registrations >= limits.max_pending_registrations:
        raise errors.fail(errors.LIMIT_REACHED, "too many registrations awaiting approval")
    if len(state.accounts) >= limits.max_accounts:
        raise errors.fail(errors.LIMIT_REACHED, f"the chain holds limits.max_accounts = {limits.max_accounts}")
    ttl_ms = limits.registration_ttl_slots * state.genesis.market.slot_ms
    state.put("accounts", tx.sender, Account(
        address=tx.sender, name=body.name, role=body.role, zone=body.zone, status="pending",
        public_key=tx.public_key, meter_key=body.meter_key, pending_until_ms=ctx.timestamp_ms + ttl_ms,
    ))
    state.set_meta(replace(meta, pending_registrations=meta.pending_registrations + 1))


def apply_approve_registration(ctx: BlockContext, tx: Tx, body: ApproveRegistration) -> None:
    state = ctx.state
    require_grid_operator(state, tx)
    account = get_account(state, body.account)
    if account.status != "pending":
        raise errors.fail(errors.NOT_PENDING, f"account {body.account} is {account.status}")
    state.put("accounts", body.account, replace(account, status="active", pending_until_ms=None))
    meta = state.meta
    state.set_meta(replace(meta, pending_registrations=meta.pending_registrations - 1))


def apply_reject_registration(ctx: BlockContext, tx: Tx, body: RejectRegistration) -> None:
    state = ctx.state
    require_grid_operator(state, tx)
    account = get_account(state, body.account)
    if account.status != "pending":
        raise errors.fail(errors.NOT_PENDING, f"account {body.account} is {account.status}")
    _drop_pending(ctx, body.account, reason="rejected")


def expire_registrations(ctx: BlockContext) -> None:
    """System step: drop every pending request whose expiry is at or before the block time,
    in (expiry, address) order."""
    state = ctx.state
    due = sorted((until, address) for address, until in state.pending_until_ms.items()
                 if until <= ctx.timestamp_ms)
    for _until, address in due:
        _drop_pending(ctx, address, reason="expired")


def _drop_pending(ctx: BlockContext, address: str, *, reason: str) -> None:
    state = ctx.state
    state.delete("accounts", address)
    meta = state.meta
    state.set_meta(replace(meta, pending_registrations=meta.pending_registrations - 1))
    ctx.emit(RegistrationDropped(account=address, reason=reason))


def apply_suspend_account(ctx: BlockContext, tx: Tx, body: SuspendAccount) -> None:
    state = ctx.state
    require_grid_operator(state, tx)
    account = get_account(state, body.account)
    if body.account == state.genesis.grid_operator:
        raise errors.fail(errors.UNAUTHORIZED, "the grid operator cannot suspend itself")
    if account.status == "pending":
        raise errors.fail(errors.NOT_PENDING, f"account {body.account} is not approved yet")
    state.put("accounts", body.account,
              replace(account, status="suspended" if body.suspended else "active"))


def apply_set_meter_key(ctx: BlockContext, tx: Tx, body: SetMeterKey) -> None:
    state = ctx.state
    require_grid_operator(state, tx)
    account = get_account(state, body.account)
    state.put("accounts", body.account, replace(account, meter_key=body.meter_key))


def apply_set_node_key(ctx: BlockContext, tx: Tx, body: SetNodeKey) -> None:
    state = ctx.state
    if body.node_key is None:
        state.delete("node_keys", tx.sender)
        return
    owner = state.node_key_owner.get(body.node_key)
    if owner is not None and owner != tx.sender:
        raise errors.fail(errors.KEY_IN_USE, "the key already names another account's node")
    state.put("node_keys", tx.sender, NodeKey(account=tx.sender, public_key=body.node_key))


def node_key_account(state: State, public_key: bytes) -> str | None:
    """The active account whose node proves ``public_key``, or None."""
    owner = state.node_key_owner.get(public_key)
    if owner is None:
        return None
    account = state.accounts.get(owner)
    return owner if account is not None and account.status == "active" else None
