"""Dispatch: grid operator instructions (curtail / increase by an amount before a
deadline), acknowledgements, and the missed-deadline penalty.

Only the grid operator issues [``unauthorized``]; only the instructed account
acknowledges [``unauthorized``], once [``already_acknowledged``], in a block whose
timestamp is below the deadline [``deadline_passed``]. In the first block at or
after the deadline an unacknowledged instruction is *missed*: the account pays
``penalty_u`` to the grid operator (debt for what it lacks).
"""

from __future__ import annotations

import bisect

import msgspec

from contracts import errors
from contracts.context import BlockContext
from contracts.records import DispatchIssued, DispatchResolved
from contracts.state import Dispatch, State
from contracts.token import charge, credit, get_account, require_grid_operator
from contracts.transactions import AckDispatch, IssueDispatch, Tx

replace = msgspec.structs.replace


def dispatch_key(dispatch_id: int) -> str:
    return f"{dispatch_id:016d}"


def check_dispatch_bounds(state: State, body: IssueDispatch) -> None:
    """``amount_wh`` and ``penalty_u`` within their genesis bounds [``bad_quantity``, ``bad_amount``]."""
    limits = state.genesis.limits
    if body.amount_wh > limits.max_dispatch_wh:
        raise errors.fail(errors.BAD_QUANTITY, f"amount_wh must be in [1, {limits.max_dispatch_wh}]")
    if body.penalty_u > limits.max_penalty_u:
        raise errors.fail(errors.BAD_AMOUNT, f"penalty_u must be in [0, {limits.max_penalty_u}]")


def apply_issue_dispatch(ctx: BlockContext, tx: Tx, body: IssueDispatch) -> None:
    state = ctx.state
    require_grid_operator(state, tx)
    target = get_account(state, body.account)
    if target.status != "active":
        raise errors.fail(errors.NOT_REGISTERED, f"account {body.account} is {target.status}")
    limits = state.genesis.limits
    check_dispatch_bounds(state, body)
    if not ctx.timestamp_ms < body.deadline_ms <= ctx.timestamp_ms + limits.max_dispatch_horizon_ms:
        raise errors.fail(errors.BAD_DEADLINE, "deadline must be after the block time and within the horizon")
    meta = state.meta
    if len(meta.open_dispatches) >= limits.max_open_dispatches:
        raise errors.fail(errors.LIMIT_REACHED, "too many open dispatch instructions")
    dispatch_id = meta.next_dispatch_id
    location = ctx.emit(DispatchIssued(
        dispatch_id=dispatch_id, account=body.account, direction=body.direction,
        amount_wh=body.amount_wh, deadline_ms=body.deadline_ms, penalty_u=body.penalty_u))
    state.put("dispatches", dispatch_key(dispatch_id), Dispatch(
        dispatch_id=dispatch_id, account=body.account, direction=body.direction,
        amount_wh=body.amount_wh, deadline_ms=body.deadline_ms, penalty_u=body.penalty_u,
        issued_at=location))
    open_ = list(meta.open_dispatches)
    bisect.insort(open_, (body.deadline_ms, dispatch_id))
    state.set_meta(replace(meta, next_dispatch_id=dispatch_id + 1, open_dispatches=tuple(open_)))


def apply_ack_dispatch(ctx: BlockContext, tx: Tx, body: AckDispatch) -> None:
    state = ctx.state
    key = dispatch_key(body.dispatch_id)
    dispatch = state.dispatches.get(key)
    if dispatch is None:
        raise errors.fail(errors.UNKNOWN_DISPATCH, f"no dispatch {body.dispatch_id}")
    if dispatch.account != tx.sender:
        raise errors.fail(errors.UNAUTHORIZED, "only the instructed account acknowledges")
    if dispatch.status == "acknowledged":
        raise errors.fail(errors.ALREADY_ACKNOWLEDGED, f"dispatch {body.dispatch_id} already acknowledged")
    if dispatch.status == "missed" or ctx.timestamp_ms >= dispatch.deadline_ms:
        raise errors.fail(errors.DEADLINE_PASSED, f"deadline {dispatch.deadline_ms} ms has passed")
    location = ctx.emit(DispatchResolved(dispatch_id=dispatch.dispatch_id, status="acknowledged",
                                         penalty_u=0, debt_added_u=0))
    state.put("dispatches", key, replace(dispatch, status="acknowledged", resolved_at=location))
    meta = state.meta
    state.set_meta(replace(meta, open_dispatches=tuple(
        d for d in meta.open_dispatches if d[1] != dispatch.dispatch_id)))


def expire_dispatches(ctx: BlockContext) -> None:
    """System step: every open instruction whose deadline is at or before the block time is missed."""
    state = ctx.state
    meta = state.meta
    due = [d for d in meta.open_dispatches if d[0] <= ctx.timestamp_ms]
    if not due:
        return
    state.set_meta(replace(meta, open_dispatches=meta.open_dispatches[len(due):]))
    grid = state.genesis.grid_operator
    for _deadline, dispatch_id in due:
        key = dispatch_key(dispatch_id)
        dispatch = state.dispatches[key]
        charged = charge(state, dispatch.account, dispatch.penalty_u)
        credit(state, grid, dispatch.penalty_u - charged.written_off_u)
        location = ctx.emit(DispatchResolved(dispatch_id=dispatch_id, status="missed",
                                             penalty_u=dispatch.penalty_u, debt_added_u=charged.debt_added_u,
                                             written_off_u=charged.written_off_u))
        state.put("dispatches", key, replace(dispatch, status="missed", resolved_at=location))
