"""apply_block: block checks, rollback, credit and rewards, snapshots and roots."""

from __future__ import annotations

import msgspec
import pytest

from contracts import errors, executor
from contracts.executor import BlockError, BlockInput, apply_block
from contracts.genesis import GenesisError
from contracts.initial import initial_state
from contracts.state import decode_state, encode_state
from contracts.transactions import PlaceOrder, Transfer

from .helpers import Chain, market_params


def test_wrong_height_or_time_going_back_is_refused_before_any_change() -> None:
    chain = Chain()
    chain.ok(at_ms=500)
    before = encode_state(chain.state)
    for block in (BlockInput(height=3, round=3, timestamp_ms=600, proposer=0),
                  BlockInput(height=2, round=2, timestamp_ms=499, proposer=0),
                  BlockInput(height=2, round=2, timestamp_ms=600, proposer=1),
                  BlockInput(height=2, round=2, timestamp_ms=600, proposer=0, voters=(0, 5))):
        with pytest.raises(BlockError):
            apply_block(chain.state, block)
        assert encode_state(chain.state) == before


def test_a_failing_handler_is_rolled_back_completely(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transfer whose handler places an order (lock, order, slot, meta) and then fails
    leaves no trace: state, indexes and root equal a block without it."""
    chain = Chain()
    place = executor.HANDLERS[PlaceOrder]

    def half_apply(ctx, tx, body, tx_hash) -> None:
        place(ctx, tx, PlaceOrder(slot=1, side="buy", price_u_per_wh=10, quantity_wh=10), tx_hash)
        assert ctx.state.orders  # it did mutate
        raise errors.fail("boom", "then fails")

    monkeypatch.setitem(executor.HANDLERS, Transfer, half_apply)
    receipt = chain.expect_rejected(chain.tx("con", Transfer(to=chain.addr("pro"), amount_u=1)), "boom")
    assert chain.state.orders == {}
    assert chain.state.open_orders_by_slot == {}
    assert chain.account("con").locked_u == 0
    assert receipt.message == "then fails"


def test_credit_and_rewards_follow_block_metadata() -> None:
    chain = Chain()
    val = chain.addr("val")
    credit = chain.genesis.consensus.credit
    t = chain.genesis.token
    _, _, _ = apply_block(chain.state, BlockInput(height=1, round=1, timestamp_ms=1, proposer=0,
                                                  voters=(0,)))
    # Rewards are paid in tokens; credit (leader weight) stays full: reliability, not wealth.
    assert chain.state.credit.credits[0] == credit.full_credit
    assert chain.state.credit.window[0].led[0] == 1
    assert chain.state.accounts[val].balance_u == t.block_reward_proposer_u + t.block_reward_voter_u
    info = chain.state.validators["0000"]
    assert (info.blocks_proposed, info.qcs_signed, info.rewards_u) == (1, 1, chain.state.accounts[val].balance_u)
    apply_block(chain.state, BlockInput(height=2, round=5, timestamp_ms=2, proposer=0,
                                        failed_authors=(0,), equivocators=(0,)))
    assert chain.state.credit.excluded_until_round[0] == 5 + credit.exclusion_rounds
    assert chain.state.credit.credits[0] == 0
    assert chain.state.credit.window[0].failed[0] == 1
    assert chain.state.validators["0000"].failed_rounds == 1


def test_snapshot_restore_continues_with_identical_roots() -> None:
    a, b = Chain(), Chain()
    blocks = [
        ([a.tx("con", PlaceOrder(slot=1, side="buy", price_u_per_wh=30, quantity_wh=10)),
          a.tx("gen", PlaceOrder(slot=1, side="sell", price_u_per_wh=20, quantity_wh=10))], 100),
        ([], 1_000), ([], 3_000),
    ]
    roots_a = []
    for height, (txs, at) in enumerate(blocks, start=1):
        _, _, result = apply_block(a.state, BlockInput(height=height, round=height, timestamp_ms=at,
                                                       proposer=0, voters=(0,), txs=txs))
        roots_a.append(result.state_root)
    state = b.state
    roots_b = []
    for height, (txs, at) in enumerate(blocks, start=1):
        state = decode_state(encode_state(state))  # a restart between every block
        _, _, result = apply_block(state, BlockInput(height=height, round=height, timestamp_ms=at,
                                                     proposer=0, voters=(0,), txs=txs))
        roots_b.append(result.state_root)
    assert roots_a == roots_b
    assert len(set(roots_a)) == 3
    assert encode_state(a.state) == encode_state(state)


def test_genesis_price_order_is_validated() -> None:
    chain = Chain()
    for bad in (dict(p_long=10, p_min=5), dict(p_max=200, p_short=100), dict(p_min=50, p_max=40)):
        genesis = msgspec.structs.replace(chain.genesis, market=market_params(**bad))
        with pytest.raises(GenesisError, match="p_long <= p_min <= p_max <= p_short"):
            initial_state(genesis)


def test_genesis_needs_a_grid_operator_account() -> None:
    chain = Chain()
    with pytest.raises(GenesisError, match="grid_operator"):
        initial_state(msgspec.structs.replace(chain.genesis, grid_operator="ab" * 20))


def test_settled_slots_beyond_the_history_are_pruned() -> None:
    chain = Chain(market=market_params(history_slots=1))
    chain.ok(chain.tx("con", PlaceOrder(slot=1, side="buy", price_u_per_wh=30, quantity_wh=10)),
             chain.tx("gen", PlaceOrder(slot=1, side="sell", price_u_per_wh=20, quantity_wh=10)),
             chain.tx("con", PlaceOrder(slot=2, side="buy", price_u_per_wh=30, quantity_wh=4)),
             chain.tx("gen", PlaceOrder(slot=2, side="sell", price_u_per_wh=20, quantity_wh=4)),
             chain.tx("con2", PlaceOrder(slot=2, side="buy", price_u_per_wh=1, quantity_wh=4)))
    chain.ok(at_ms=3_000)  # slot 1 cleared and settled; slot 2 cleared
    assert "1-0" in chain.state.trades
    assert chain.state.meta.settled_slots == (1,)
    chain.ok(at_ms=4_000)  # slot 2 settles: slot 1 falls out of the history
    state = chain.state
    assert state.meta.settled_slots == (2,)
    assert "1-0" not in state.trades and "2-0" in state.trades
    assert {o.slot for o in state.orders.values()} == {2}
    assert {p.slot for p in state.positions.values()} == {2}
    assert {s.slot for s in state.settlements.values()} == {2}
    assert set(state.slots) == {"0000000000000002"}
    assert 1 not in state.orders_by_slot and 1 not in state.accounts_by_slot
    restored = decode_state(encode_state(state))
    assert restored.orders_by_slot == state.orders_by_slot
    assert restored.accounts_by_slot == state.accounts_by_slot
    assert restored.open_orders_by_owner == state.open_orders_by_owner


def test_slot_status_of_slots_with_and_without_records() -> None:
    from contracts.market import slot_status

    chain = Chain()
    chain.ok(chain.tx("con", PlaceOrder(slot=2, side="buy", price_u_per_wh=30, quantity_wh=10)))
    assert (slot_status(chain.state, 1), slot_status(chain.state, 2)) == ("open", "open")
    chain.ok(at_ms=2_500)  # slot 1: gate passed, in its metering window; slot 2 cleared
    assert (slot_status(chain.state, 1), slot_status(chain.state, 2)) == ("cleared", "cleared")
    chain.ok(at_ms=4_000)
    assert (slot_status(chain.state, 1), slot_status(chain.state, 2)) == ("settled", "settled")
    assert slot_status(chain.state, 9) == "open"


def test_an_unexpected_exception_fails_only_its_own_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler that mutates state and then raises a plain exception (a bug) yields an
    ``internal_error`` receipt, rolled back except for the consumed nonce; the
    transactions before and after it in the same block apply normally."""
    chain = Chain()
    place = executor.HANDLERS[PlaceOrder]

    def buggy(ctx, tx, body, tx_hash) -> None:
        place(ctx, tx, PlaceOrder(slot=1, side="buy", price_u_per_wh=10, quantity_wh=10), tx_hash)
        raise ZeroDivisionError("bug")

    monkeypatch.setitem(executor.HANDLERS, Transfer, buggy)
    receipt = chain.expect_rejected(chain.tx("con", Transfer(to=chain.addr("pro"), amount_u=1)),
                                    errors.INTERNAL_ERROR)
    assert receipt.nonce_consumed and "ZeroDivisionError" in receipt.message
    assert chain.state.orders == {} and chain.account("con").locked_u == 0
    before, after = (chain.tx("pro", PlaceOrder(slot=2, side="buy", price_u_per_wh=5, quantity_wh=1)),
                     chain.tx("gen", PlaceOrder(slot=2, side="sell", price_u_per_wh=5, quantity_wh=1)))
    receipts, _ = chain.block(before, chain.tx("con", Transfer(to=chain.addr("pro"), amount_u=1)), after)
    assert [r.code for r in receipts] == ["ok", errors.INTERNAL_ERROR, "ok"]
    assert len(chain.state.orders) == 2


def test_resource_exhaustion_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """MemoryError may differ between nodes: it stops this node instead of forking it."""
    chain = Chain()

    def exhausted(ctx, tx, body, tx_hash) -> None:
        raise MemoryError

    monkeypatch.setitem(executor.HANDLERS, Transfer, exhausted)
    with pytest.raises(MemoryError):
        chain.block(chain.tx("con", Transfer(to=chain.addr("pro"), amount_u=1)))
