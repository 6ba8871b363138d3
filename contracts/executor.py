"""apply_block: the state transition of one committed block.

Theory of operation
-------------------
``apply_block(state, block, verified=...)`` mutates ``state`` in place and returns
``(state, receipts, BlockResult)``. Order inside a block (DESIGN.md §5):

1. system steps, driven only by block data: clearing of every slot whose gate has
   closed (increasing slot), settlement of every slot whose metering window has
   closed (increasing slot), missed dispatch deadlines, expired registration
   requests, then C-LBFT credit
   (``consensus.credit``) and block rewards minted to the proposer and the QC signers;
2. the transactions in block order. Each is decoded, its signature verified unless
   its hash is in ``verified`` (the node checked it at admission), authenticated
   (``authenticate``: chain, expiry, signer, nonce, account status) and applied
   inside a state snapshot. Any ``TxError`` rolls the snapshot back and yields a
   failed receipt with its stable code; any other exception does the same with the
   code ``internal_error`` (a bug in one handler fails that transaction, never the
   block). Resource exhaustion (``MemoryError``, ``RecursionError``) is not caught:
   it may differ between nodes, so it must stop this node rather than fork it.

Nonces: every transaction that passed ``authenticate`` consumes its nonce, whether
its handler succeeded or failed (``Receipt.nonce_consumed``), so the raw bytes of a
failed transaction can never be included again and succeed later. A transaction
that fails authentication (bad signature, stale nonce, unknown sender, ...) is not
attributable to the sender and consumes nothing. A ``register_request`` has no
account to hold a nonce until it succeeds.

Every record (system events, each transaction's events and its receipt) is a leaf
of the block's Merkle tree (``BlockResult.receipts_root``, ``BlockResult.leaves``);
``BlockResult.state_root`` is the incremental root (``State.seal_block``).

``check_tx(state, stx, now_ms=)`` is the mempool-side admission check: the same
``authenticate`` against the current state with the node's clock as ``now_ms``.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

import msgspec

from consensus import codec
from consensus.credit import apply_committed_block
from consensus.crypto import address
from contracts import (
    channels,
    dispatch,
    errors,
    market,
    metering,
    notary,
    registry,
    settlement,
    token,
)
from contracts.context import BlockContext
from contracts.records import BlockRewards, TxReceipt
from contracts.state import Account, Location, State
from contracts.traceability import merkle_root
from contracts.transactions import (
    AckDispatch,
    ApproveRegistration,
    Burn,
    CancelOrder,
    ChallengeChannel,
    CloseChannel,
    ForceCloseChannel,
    FundChannel,
    IssueDispatch,
    Mint,
    Notarize,
    OpenChannel,
    PlaceOrder,
    RegisterRequest,
    RejectRegistration,
    SetMeterKey,
    SetNodeKey,
    SettleChannel,
    SignedTx,
    SubmitReading,
    SuspendAccount,
    Transfer,
    Tx,
    decode_signed_tx,
    verify_signature,
)

replace = msgspec.structs.replace


class BlockError(ValueError):
    """A block that cannot be applied to this state at all (wrong height, time going back,
    validator index outside the committee). Raised before anything changes."""

    code = "bad_block"


class BlockInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What execution needs of a committed block."""

    height: int
    """Must be the state's height + 1."""
    round: int
    timestamp_ms: int
    """Block time: the only clock contracts see; never below the previous block's."""
    proposer: int
    """Validator index of the block's author."""
    voters: tuple[int, ...] = ()
    """Signers of the QC this block carries."""
    failed_authors: tuple[int, ...] = ()
    """Leaders of rounds that ended in a TC, named by this block."""
    equivocators: tuple[int, ...] = ()
    """Validators with equivocation evidence in this block (taken as equivocating in ``round``)."""
    equivocations: tuple[tuple[int, int], ...] = ()
    """(validator, round) equivocation evidence; preferred over ``equivocators`` when known."""
    txs: list[bytes] = []
    """Raw signed transactions, in block order."""


class Receipt(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tx_hash: bytes
    index: int
    ok: bool
    code: str
    """"ok" or a stable error code."""
    message: str
    kind: str
    sender: str
    location: Location
    """Where the receipt leaf is proven."""
    order_id: str | None = None
    """place_order: id of the placed order (None when it failed); cancel_order: the order named."""
    slot: int | None = None
    """place_order, submit_reading: the slot of the body, so a client sees what ``next`` resolved to."""
    nonce_consumed: bool = False
    """The transaction passed authentication and used up its nonce (failed or not): this
    inclusion is the one that counts for its hash (the tx index keeps it)."""


class BlockResult(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    height: int
    state_root: bytes
    receipts_root: bytes
    leaves: tuple[bytes, ...]
    """Canonical record bytes, the leaves of ``receipts_root`` (persist them for proofs)."""
    tx_count: int
    failed_count: int


# --- authentication (shared with the mempool) ------------------------------------------

def authenticate(state: State, stx: SignedTx, *, now_ms: int) -> Account | None:
    """Envelope checks against ``state``; returns the sender account (None for a registration)."""
    tx = stx.tx
    if tx.chain_id != state.genesis.chain_id:
        raise errors.fail(errors.WRONG_CHAIN, f"chain {tx.chain_id!r} is not {state.genesis.chain_id!r}")
    if now_ms >= tx.expires_at_ms:
        raise errors.fail(errors.EXPIRED, f"expired at {tx.expires_at_ms} ms (block time {now_ms} ms)")
    account = state.accounts.get(tx.sender)
    body = tx.body
    if isinstance(body, RegisterRequest):
        if account is not None:
            raise errors.fail(errors.ALREADY_REGISTERED, f"account {tx.sender} already exists")
        if address(tx.public_key) != tx.sender:
            raise errors.fail(errors.WRONG_SIGNER, "sender is not the address of the signing key")
        return None
    if account is None or account.status != "active":
        state_name = "unknown" if account is None else account.status
        raise errors.fail(errors.NOT_REGISTERED, f"account {tx.sender} is {state_name}")
    if isinstance(body, SubmitReading):
        expected = account.meter_key if account.meter_key is not None else account.public_key
        if tx.public_key != expected:
            raise errors.fail(errors.WRONG_SIGNER, "a reading must be signed by the account's meter key")
        last = account.meter_nonce
    else:
        if tx.public_key != account.public_key:
            raise errors.fail(errors.WRONG_SIGNER, "not signed by the sender's key")
        last = account.nonce
    if tx.nonce <= last:
        raise errors.fail(errors.STALE_NONCE, f"nonce {tx.nonce} <= last accepted {last}")
    return account


GRID_ONLY: tuple[type, ...] = (ApproveRegistration, RejectRegistration, SuspendAccount, SetMeterKey, Mint,
                               Burn, IssueDispatch)
"""Kinds only the grid operator may send."""


def check_tx(state: State, stx: SignedTx, *, now_ms: int, check_signature: bool = False) -> None:
    """Mempool admission: raises ``TxError`` (codes as in receipts) or returns None.

    Envelope checks (``authenticate``) plus the cheap per-kind authorisation rules, so
    an unauthorised transaction is refused at the API instead of failing in a block:
    grid-operator-only kinds [``unauthorized``], order side by role
    [``role_not_allowed``], order price and quantity bounds [``price_out_of_range``,
    ``bad_quantity``], readings only from metered roles [``role_not_allowed``], and
    what can never succeed later: an order for a slot whose gate has closed by the latest
    block time [``slot_closed``] or that is beyond the horizon even just before the
    transaction expires [``beyond_horizon``] (``market.check_order_slot``), a cancellation
    of one's own order that is no longer open or whose gate has closed [``slot_closed``], a
    reading whose window has closed or cannot open before the transaction expires
    [``reading_window_closed``] (``metering.check_reading_window``), and
    every genesis bound a field has (docs/BOUNDS.md): reading values, dispatch amount
    and penalty [``bad_quantity``, ``bad_amount``], a mint above the supply bound
    [``bad_amount``].
    Execution re-checks everything: state can change between admission and inclusion.
    """
    if check_signature and not verify_signature(stx):
        raise errors.fail(errors.BAD_SIGNATURE, "signature does not verify")
    account = authenticate(state, stx, now_ms=now_ms)
    tx, body = stx.tx, stx.tx.body
    if isinstance(body, GRID_ONLY):
        token.require_grid_operator(state, tx)
    elif isinstance(body, PlaceOrder):
        assert account is not None
        m = state.genesis.market
        allowed = market.BUY_ROLES if body.side == "buy" else market.SELL_ROLES
        if account.role not in allowed:
            raise errors.fail(errors.ROLE_NOT_ALLOWED, f"a {account.role} may not {body.side}")
        if not m.p_min <= body.price_u_per_wh <= m.p_max:
            raise errors.fail(errors.PRICE_OUT_OF_RANGE,
                              f"price {body.price_u_per_wh} not in [{m.p_min}, {m.p_max}] µ/Wh")
        if not 1 <= body.quantity_wh <= m.max_order_wh:
            raise errors.fail(errors.BAD_QUANTITY, f"quantity_wh must be in [1, {m.max_order_wh}]")
        market.check_order_slot(state.genesis, body.slot, now_ms=state.meta.timestamp_ms,
                                latest_ms=tx.expires_at_ms - 1)
    elif isinstance(body, CancelOrder):
        order = state.orders.get(body.order_id)
        if order is not None and order.owner == tx.sender:
            market.check_cancellable(state.genesis, order, now_ms=state.meta.timestamp_ms)
    elif isinstance(body, SubmitReading):
        assert account is not None
        if account.role not in metering.METERED_ROLES:
            raise errors.fail(errors.ROLE_NOT_ALLOWED, f"a {account.role} account has no meter")
        metering.check_reading_window(state.genesis, body.slot, now_ms=state.meta.timestamp_ms,
                                      latest_ms=tx.expires_at_ms - 1)
        metering.check_reading_bounds(state.genesis, body)
    if isinstance(body, IssueDispatch):
        dispatch.check_dispatch_bounds(state, body)
    elif isinstance(body, Mint) and body.amount_u > state.genesis.token.max_supply_u:
        raise errors.fail(errors.BAD_AMOUNT, f"amount_u must be in [1, {state.genesis.token.max_supply_u}]")


# --- dispatch table ----------------------------------------------------------------------

Handler = Callable[[BlockContext, Any, Any, bytes], None]


def _plain(fn: Callable[[BlockContext, Any, Any], None]) -> Handler:
    return lambda ctx, tx, body, _tx_hash: fn(ctx, tx, body)


HANDLERS: dict[type, Handler] = {
    RegisterRequest: _plain(registry.apply_register_request),
    ApproveRegistration: _plain(registry.apply_approve_registration),
    RejectRegistration: _plain(registry.apply_reject_registration),
    SuspendAccount: _plain(registry.apply_suspend_account),
    SetMeterKey: _plain(registry.apply_set_meter_key),
    SetNodeKey: _plain(registry.apply_set_node_key),
    Transfer: _plain(token.apply_transfer),
    Mint: _plain(token.apply_mint),
    Burn: _plain(token.apply_burn),
    PlaceOrder: market.apply_place_order,
    CancelOrder: _plain(market.apply_cancel_order),
    SubmitReading: _plain(metering.apply_submit_reading),
    IssueDispatch: _plain(dispatch.apply_issue_dispatch),
    AckDispatch: _plain(dispatch.apply_ack_dispatch),
    Notarize: notary.apply_notarize,
    OpenChannel: channels.apply_open_channel,
    FundChannel: _plain(channels.apply_fund_channel),
    CloseChannel: _plain(channels.apply_close_channel),
    ForceCloseChannel: _plain(channels.apply_force_close_channel),
    ChallengeChannel: _plain(channels.apply_challenge_channel),
    SettleChannel: _plain(channels.apply_settle_channel),
}


# --- the block -----------------------------------------------------------------------------

def _check_block(state: State, block: BlockInput) -> None:
    meta = state.meta
    n = len(state.genesis.validators)
    if block.height != meta.height + 1:
        raise BlockError(f"block height {block.height}, expected {meta.height + 1}")
    if block.timestamp_ms < meta.timestamp_ms:
        raise BlockError(f"block time {block.timestamp_ms} ms is before {meta.timestamp_ms} ms")
    indexes = [block.proposer, *block.voters, *block.failed_authors, *block.equivocators,
               *(v for v, _ in block.equivocations)]
    if any(not 0 <= i < n for i in indexes):
        raise BlockError(f"validator index outside the committee of {n}")


def _system_steps(ctx: BlockContext, block: BlockInput) -> None:
    state = ctx.state
    genesis = state.genesis
    ts = ctx.timestamp_ms
    meta = state.meta
    due_clear = [s for s in meta.open_slots if market.gate_close_ms(genesis, s) <= ts]
    if due_clear:
        state.set_meta(replace(
            meta, open_slots=meta.open_slots[len(due_clear):],
            unsettled_slots=tuple(sorted({*meta.unsettled_slots, *due_clear}))))
        for slot in due_clear:
            market.clear_slot(ctx, slot)
    meta = state.meta
    due_settle = [s for s in meta.unsettled_slots if market.settle_time_ms(genesis, s) <= ts]
    if due_settle:
        state.set_meta(replace(meta, unsettled_slots=meta.unsettled_slots[len(due_settle):]))
        for slot in due_settle:
            settlement.settle_slot(ctx, slot)
    dispatch.expire_dispatches(ctx)
    registry.expire_registrations(ctx)
    _credit_and_rewards(ctx, block)


def _credit_and_rewards(ctx: BlockContext, block: BlockInput) -> None:
    state = ctx.state
    genesis = state.genesis
    equivocations = {*block.equivocations, *((v, block.round) for v in block.equivocators)}
    state.credit = apply_committed_block(
        state.credit, genesis.consensus.credit, round=block.round, proposer=block.proposer,
        failed_authors=block.failed_authors, equivocations=equivocations)
    voters = tuple(sorted(set(block.voters)))
    t = genesis.token
    paid: dict[int, int] = {block.proposer: t.block_reward_proposer_u}
    for v in voters:
        paid[v] = paid.get(v, 0) + t.block_reward_voter_u
    for index in sorted(paid):
        key = f"{index:04d}"
        info = state.validators[key]
        state.put("validators", key, replace(
            info, rewards_u=info.rewards_u + paid[index],
            blocks_proposed=info.blocks_proposed + (index == block.proposer),
            qcs_signed=info.qcs_signed + (index in voters),
        ))
        token.credit(state, info.address, paid[index])
    for index in sorted(set(block.failed_authors)):
        key = f"{index:04d}"
        info = state.validators[key]
        state.put("validators", key, replace(info, failed_rounds=info.failed_rounds + 1))
    total = sum(paid.values())
    meta = state.meta
    state.set_meta(replace(meta, supply_u=meta.supply_u + total, rewards_u=meta.rewards_u + total))
    ctx.emit(BlockRewards(height=block.height, proposer=block.proposer, voters=voters,
                          proposer_u=t.block_reward_proposer_u, voter_u=t.block_reward_voter_u))


NOT_CAUGHT: tuple[type[BaseException], ...] = (MemoryError, RecursionError)
"""Exceptions that depend on the node, not on the block: they propagate (the node halts)."""


def _apply_tx(ctx: BlockContext, raw: bytes, verified: Container[bytes]) -> Receipt:
    state = ctx.state
    mark = ctx.mark()
    kind = sender = ""
    try:
        stx = decode_signed_tx(raw)
    except errors.TxError as exc:
        return _receipt(ctx, codec.digest(raw), kind, sender, exc)
    except NOT_CAUGHT:
        raise
    except Exception as exc:  # a decoder bug must fail one tx, not the block
        return _receipt(ctx, codec.digest(raw), kind, sender, _internal(exc))
    tx = stx.tx
    kind, sender = tx.kind, tx.sender
    try:
        if stx.tx_hash not in verified and not verify_signature(stx):
            raise errors.fail(errors.BAD_SIGNATURE, "signature does not verify")
        account = authenticate(state, stx, now_ms=ctx.timestamp_ms)
    except errors.TxError as exc:
        return _receipt(ctx, stx.tx_hash, kind, sender, exc, tx=tx)
    except NOT_CAUGHT:
        raise
    except Exception as exc:  # a bug must fail one tx, not the block
        return _receipt(ctx, stx.tx_hash, kind, sender, _internal(exc), tx=tx)
    state.begin()
    try:
        HANDLERS[type(tx.body)](ctx, tx, tx.body, stx.tx_hash)
    except NOT_CAUGHT:
        state.rollback()
        raise
    except Exception as exc:  # TxError or a bug: the tx fails, nothing else
        state.rollback()
        ctx.truncate(mark)
        failure = exc if isinstance(exc, errors.TxError) else _internal(exc)
        if account is not None:
            _consume_nonce(state, tx)
        return _receipt(ctx, stx.tx_hash, kind, sender, failure, tx=tx,
                        nonce_consumed=account is not None)
    _consume_nonce(state, tx)
    state.commit()
    return _receipt(ctx, stx.tx_hash, kind, sender, None, tx=tx, nonce_consumed=True)


def _internal(exc: Exception) -> errors.TxError:
    return errors.fail(errors.INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}")


def _consume_nonce(state: State, tx: Tx) -> None:
    """Record ``tx.nonce`` as the sender's last used nonce (the meter sequence for readings)."""
    account = state.accounts[tx.sender]
    if isinstance(tx.body, SubmitReading):
        state.put("accounts", tx.sender, replace(account, meter_nonce=tx.nonce))
    else:
        state.put("accounts", tx.sender, replace(account, nonce=tx.nonce))


def receipt_subject(tx: Tx | None, *, tx_hash: bytes, ok: bool) -> tuple[str | None, int | None]:
    """(order_id, slot) a receipt names: what a client asked for, resolved.

    A placed order's id is its tx hash; a failed placement names no order (none exists)
    but still names its slot, so ``slot_closed`` says which slot was closed."""
    body = None if tx is None else tx.body
    if isinstance(body, PlaceOrder):
        return (tx_hash.hex() if ok else None), body.slot
    if isinstance(body, CancelOrder):
        return body.order_id, None
    if isinstance(body, SubmitReading):
        return None, body.slot
    return None, None


def _receipt(ctx: BlockContext, tx_hash: bytes, kind: str, sender: str,
             exc: errors.TxError | None, *, tx: Tx | None = None,
             nonce_consumed: bool = False) -> Receipt:
    code = "ok" if exc is None else exc.code
    order_id, slot = receipt_subject(tx, tx_hash=tx_hash, ok=exc is None)
    location = ctx.emit(TxReceipt(tx_hash=tx_hash, index=ctx.tx_index, kind=kind, sender=sender,
                                  ok=exc is None, code=code, order_id=order_id, slot=slot))
    return Receipt(tx_hash=tx_hash, index=ctx.tx_index, ok=exc is None, code=code,
                   message="" if exc is None else exc.message, kind=kind, sender=sender,
                   location=location, order_id=order_id, slot=slot, nonce_consumed=nonce_consumed)


def apply_block(state: State, block: BlockInput, *, verified: Container[bytes] = frozenset()
                ) -> tuple[State, list[Receipt], BlockResult]:
    """Execute ``block`` on ``state`` (in place); see the module docstring."""
    _check_block(state, block)
    ctx = BlockContext(state, height=block.height, timestamp_ms=block.timestamp_ms)
    state.set_meta(replace(state.meta, height=block.height, timestamp_ms=block.timestamp_ms))
    _system_steps(ctx, block)
    receipts: list[Receipt] = []
    for index, raw in enumerate(block.txs):
        ctx.tx_index = index
        receipts.append(_apply_tx(ctx, raw, verified))
    ctx.tx_index = -1
    receipts_root = merkle_root(ctx.leaves)
    state_root = state.seal_block(block.height)
    failed = sum(1 for r in receipts if not r.ok)
    return state, receipts, BlockResult(
        height=block.height, state_root=state_root, receipts_root=receipts_root,
        leaves=tuple(ctx.leaves), tx_count=len(receipts), failed_count=failed)
