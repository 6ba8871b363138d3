"""Payment channels on chain (contracts/channels.py): each rule by example — open, fund,
cooperative close, unilateral close and settlement, challenges with and without the penalty,
and every refusal leaving the state as it was."""

from __future__ import annotations

from consensus import codec
from contracts import errors
from contracts.records import ChannelSettled, Record
from contracts.state import Channel
from contracts.traceability import prove, verify_proof
from contracts.transactions import OpenChannel

from .channel_helpers import Pair
from .helpers import Chain, check_invariants


def _opened(deposit_u: int = 1_000, challenge_slots: int = 3) -> tuple[Chain, Pair]:
    chain = Chain()
    pair = Pair(chain, "pro", "con", deposit_u=deposit_u, challenge_slots=challenge_slots)
    chain.ok(pair.open_raw, at_ms=100)
    return chain, pair


def test_open_locks_the_deposit_and_keeps_the_supply() -> None:
    chain, pair = _opened(deposit_u=1_000)
    assert chain.account("pro").balance_u == 1_000_000 - 1_000
    channel = pair.channel
    assert (channel.party_a, channel.party_b, channel.deposit_a_u, channel.status) == (
        chain.addr("pro"), chain.addr("con"), 1_000, "open")
    check_invariants(chain.state)


def test_open_refusals() -> None:
    chain = Chain()
    chain.expect_rejected(chain.tx("pro", OpenChannel(counterparty=chain.addr("pro"), deposit_u=1,
                                                      challenge_slots=1)), errors.BAD_PARTIES)
    chain.expect_rejected(chain.tx("pro", OpenChannel(counterparty=chain.addr("con"), deposit_u=2_000_000,
                                                      challenge_slots=1)), errors.INSUFFICIENT_BALANCE)
    chain.expect_rejected(chain.tx("pro", OpenChannel(counterparty=chain.addr("con"), deposit_u=1,
                                                      challenge_slots=10_081)), errors.BAD_DEADLINE)
    chain.expect_rejected(chain.tx("pro", OpenChannel(counterparty=chain.addr("outsider"), deposit_u=1,
                                                      challenge_slots=1)), errors.UNKNOWN_ACCOUNT)


def test_fund_once_by_the_counterparty_only() -> None:
    chain, pair = _opened()
    chain.expect_rejected(pair.fund(10, sender="ret"), errors.NOT_CHANNEL_PARTY)
    chain.ok(pair.fund(500))
    assert pair.channel.total_u == 1_500
    chain.expect_rejected(pair.fund(1), errors.ALREADY_FUNDED)
    check_invariants(chain.state)


def test_cooperative_close_pays_at_once() -> None:
    chain, pair = _opened()
    chain.ok(pair.fund(500))
    cs = pair.state(7, 400, 1_100, energy_wh=3_000, final=True)
    chain.ok(pair.close("con", cs))
    channel = pair.channel
    assert (channel.status, channel.paid_a_u, channel.paid_b_u, channel.energy_wh) == ("settled", 400, 1_100, 3_000)
    assert chain.account("pro").balance_u == 1_000_000 - 1_000 + 400
    assert chain.account("con").balance_u == 1_000_000 - 500 + 1_100
    check_invariants(chain.state)
    chain.expect_rejected(pair.close("con", cs), errors.CHANNEL_NOT_OPEN)  # double close
    chain.expect_rejected(pair.force_close("pro", pair.state(8, 400, 1_100)), errors.CHANNEL_NOT_OPEN)


def test_cooperative_close_needs_a_final_state_signed_by_both() -> None:
    chain, pair = _opened()
    chain.expect_rejected(pair.close("pro", pair.state(1, 600, 400)), errors.BAD_CHANNEL_STATE)
    chain.expect_rejected(pair.close("pro", pair.state(1, 0, 1_000, final=True), signer_b="ret"),
                          errors.BAD_COSIGNATURE)
    chain.expect_rejected(pair.close("ret", pair.state(1, 600, 400, final=True)), errors.NOT_CHANNEL_PARTY)
    chain.expect_rejected(pair.close("pro", pair.state(1, 600, 401, final=True)), errors.BAD_CHANNEL_STATE)


def test_a_state_signed_before_the_counterparty_funded_leaves_it_its_deposit() -> None:
    chain, pair = _opened()
    before_funding = pair.state(3, 700, 300)
    chain.ok(pair.fund(250))
    chain.ok(pair.force_close("pro", before_funding), at_ms=200)
    chain.ok(pair.settle("ret"), at_ms=pair.deadline_ms())
    assert (pair.channel.paid_a_u, pair.channel.paid_b_u) == (700, 550)
    check_invariants(chain.state)


def test_unilateral_close_then_settle_after_the_challenge_period() -> None:
    chain, pair = _opened(challenge_slots=2)
    cs = pair.state(4, 250, 750)
    chain.ok(pair.force_close("con", cs), at_ms=1_000)
    assert pair.deadline_ms() == 1_000 + 2 * 1_000
    chain.expect_rejected(pair.settle("con"), errors.CHALLENGE_PERIOD_RUNNING, at_ms=2_999)
    chain.expect_rejected(pair.force_close("pro", cs), errors.CHANNEL_NOT_OPEN)
    chain.ok(pair.settle("gen"), at_ms=3_000)
    assert (pair.channel.paid_a_u, pair.channel.paid_b_u) == (250, 750)
    chain.expect_rejected(pair.settle("gen"), errors.CHANNEL_NOT_CLOSING)
    check_invariants(chain.state)


def test_unilateral_close_with_the_opening_state_needs_no_signature() -> None:
    chain, pair = _opened()
    chain.expect_rejected(pair.force_close("pro", pair.state(0, 0, 1_000)), errors.BAD_CHANNEL_STATE)
    chain.ok(pair.force_close("pro", pair.state(0, 1_000, 0)))
    assert pair.channel.status == "closing"


def test_unilateral_close_needs_the_other_partys_signature() -> None:
    chain, pair = _opened()
    chain.expect_rejected(pair.force_close("pro", pair.state(2, 900, 100), signer="pro"), errors.BAD_COSIGNATURE)


def test_one_update_behind_is_replaced_without_penalty() -> None:
    chain, pair = _opened()
    chain.ok(pair.force_close("pro", pair.state(5, 600, 400)), at_ms=200)
    chain.ok(pair.challenge("con", pair.state(6, 550, 450)), at_ms=300)
    assert (pair.channel.status, pair.channel.seq) == ("closing", 6)
    chain.ok(pair.settle("con"), at_ms=pair.deadline_ms())
    assert (pair.channel.paid_a_u, pair.channel.paid_b_u) == (550, 450)
    check_invariants(chain.state)


def test_a_provably_stale_close_forfeits_the_closers_balance() -> None:
    chain, pair = _opened()
    chain.ok(pair.fund(1_000))
    chain.ok(pair.force_close("con", pair.state(3, 200, 1_800)), at_ms=200)
    chain.expect_rejected(pair.challenge("pro", pair.state(3, 1_500, 500)), errors.STALE_STATE, at_ms=250)
    chain.ok(pair.challenge("val", pair.state(9, 1_500, 500)), at_ms=300)  # a watchtower's account
    channel = pair.channel
    assert (channel.status, channel.paid_a_u, channel.paid_b_u) == ("settled", 2_000, 0)
    check_invariants(chain.state)


def test_challenges_end_with_the_period() -> None:
    chain, pair = _opened(challenge_slots=1)
    chain.ok(pair.force_close("con", pair.state(1, 500, 500)), at_ms=200)
    chain.expect_rejected(pair.challenge("pro", pair.state(4, 900, 100)), errors.CHALLENGE_PERIOD_OVER,
                          at_ms=1_200)
    chain.expect_rejected(pair.challenge("pro", pair.state(4, 900, 100), signer_b="pro"),
                          errors.CHALLENGE_PERIOD_OVER, at_ms=1_200)


def test_states_of_another_channel_and_values_beyond_the_deposits_are_refused() -> None:
    chain, pair = _opened()
    other = Pair(chain, "ret", "con2", deposit_u=50)
    chain.ok(other.open_raw)
    chain.expect_rejected(pair.close("pro", pair.state(2, 1_000, 0, final=True, channel_id=other.channel_id)),
                          errors.NOT_CHANNEL_PARTY)
    chain.expect_rejected(pair.force_close("pro", pair.state(2, 2**63 - 1, 0)), errors.BAD_CHANNEL_STATE)
    chain.expect_rejected(pair.force_close("pro", pair.state(2, 1_000, 0, reading_slots=(3, 1))),
                          errors.BAD_CHANNEL_STATE)
    chain.expect_rejected(pair.settle("pro"), errors.CHANNEL_NOT_CLOSING)


def test_settlement_records_energy_and_is_proven() -> None:
    chain, pair = _opened()
    result = chain.ok(pair.close("pro", pair.state(2, 900, 100, energy_wh=42, reading_slots=(0,), final=True)))
    channel: Channel = pair.channel
    assert channel.settled_at is not None
    leaf = result.leaves[channel.settled_at.index]
    record = codec.decode(leaf, Record)  # type: ignore[arg-type]
    assert isinstance(record, ChannelSettled) and record.energy_wh == 42 and record.how == "cooperative"
    assert verify_proof(leaf, prove(result.leaves, channel.settled_at.index), result.receipts_root)


def test_the_lineage_names_every_record_and_the_readings_of_the_named_slots() -> None:
    from contracts.channels import channel_lineage
    from contracts.transactions import SubmitReading

    chain, pair = _opened()
    chain.ok(pair.fund(200))
    chain.ok(chain.tx("pro", SubmitReading(slot=0, import_wh=0, export_wh=40), meter=True),
             chain.tx("con", SubmitReading(slot=0, import_wh=40, export_wh=0), meter=True), at_ms=1_100)
    chain.ok(pair.force_close("con", pair.state(1, 800, 400, energy_wh=40, reading_slots=(0,))), at_ms=1_200)
    chain.ok(pair.settle("con"), at_ms=pair.deadline_ms())
    lineage = channel_lineage(chain.state, pair.channel_id)
    assert lineage is not None
    assert list(lineage) == ["opened", "funded", "close_started", "settled", "a_reading_0", "b_reading_0"]
    assert channel_lineage(chain.state, "00" * 32) is None
