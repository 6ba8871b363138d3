"""Payment channels: many off-chain payments between two accounts, the chain as the court.

Theory of operation (docs/CHANNELS.md)
--------------------------------------
``open_channel`` locks the opener's (party a) deposit in a channel with a
counterparty (party b); the channel's id is the opening transaction's hash. Party
b may add its own deposit once with ``fund_channel`` while the channel is open.
From then on the parties exchange ``ChannelState``s off chain, each signed by both
in the ``CHANNEL`` domain: ``{channel_id, seq, balance_a_u, balance_b_u, energy_wh,
reading_slots, final}``. A valid state's balances add up to the deposits the
parties knew when they signed it: either party a's deposit alone (signed before
party b funded) or both deposits; in the first case party b's later deposit is
still party b's at payout.

Closing, each rule checked before anything changes:

* ``close_channel`` (a party, cooperative): a ``final`` state signed by both pays
  out at once — while the channel is open, or during a challenge period when it is
  newer than the posted state (the parties agreed; no penalty).
* ``force_close_channel`` (a party, unilateral): the latest state the *other*
  party signed (the opening state, seq 0, needs no signature: it is the deposits)
  is posted and the challenge period starts: ``challenge_slots`` slots of block time.
* ``challenge_channel`` (anyone, e.g. a watchtower, during the period): a state
  signed by both with a higher seq replaces the posted one — the newest wins. If its
  seq is at least two above the seq the closer published, the closer provably held a
  newer state when it closed (a party signs update k+1 only while holding co-signed
  update k), so it forfeits its channel balance to the other party and the channel
  pays out at once. One update behind is not proof: the other party may have
  withheld the countersignature of the last one.
* ``settle_channel`` (anyone, once the period is over): pays the posted state.

Conservation: a channel pays out exactly its deposits (``paid_a_u + paid_b_u ==
deposit_a_u + deposit_b_u``, penalties included); the deposits count in the supply
(``Meta.supply_u``) until then. Bounds: ``challenge_slots`` ≤ ``MAX_CHALLENGE_SLOTS``,
at most ``MAX_CHANNELS`` channel records, balances ≤ the deposits, ``energy_wh`` ≤
``SAFE_INT``.
"""

from __future__ import annotations

import msgspec

from contracts import errors
from contracts.context import BlockContext
from contracts.genesis import SAFE_INT
from contracts.records import (
    ChannelChallenged,
    ChannelCloseStarted,
    ChannelFunded,
    ChannelOpened,
    ChannelSettled,
)
from contracts.state import Channel, Location, State, pair_key
from contracts.token import credit, get_account
from contracts.transactions import (
    ChallengeChannel,
    ChannelState,
    CloseChannel,
    ForceCloseChannel,
    FundChannel,
    OpenChannel,
    SettleChannel,
    Tx,
    verify_channel_state,
)

replace = msgspec.structs.replace

MAX_CHALLENGE_SLOTS = 10_080
"""Longest challenge period, in slots (7 days of 60 s slots)."""
MAX_CHANNELS = 100_000
"""Most channel records the state holds (settled ones included); further opens are ``limit_reached``."""


# --- checks shared with the node (off-chain updates) ------------------------------------

def get_channel(state: State, channel_id: str) -> Channel:
    channel = state.channels.get(channel_id)
    if channel is None:
        raise errors.fail(errors.UNKNOWN_CHANNEL, f"no channel {channel_id}")
    return channel


def check_state_fits(channel: Channel, cs: ChannelState) -> None:
    """``cs`` could be a state of ``channel`` [``bad_channel_state``]: its id, balances that add
    up to party a's deposit or to both deposits, sorted unique reading slots, bounded energy;
    seq 0 is the opening state (the deposits as they are)."""
    if cs.channel_id != channel.channel_id:
        raise errors.fail(errors.BAD_CHANNEL_STATE, f"state of channel {cs.channel_id}, not {channel.channel_id}")
    total = cs.balance_a_u + cs.balance_b_u
    if total not in (channel.deposit_a_u, channel.total_u):
        raise errors.fail(errors.BAD_CHANNEL_STATE,
                          f"balances add up to {total} µ; the deposits are {channel.deposit_a_u} µ "
                          f"+ {channel.deposit_b_u} µ")
    if cs.seq == 0 and (cs.balance_a_u, cs.balance_b_u) != (channel.deposit_a_u, channel.deposit_b_u):
        raise errors.fail(errors.BAD_CHANNEL_STATE, "state 0 is the opening state: the deposits")
    if list(cs.reading_slots) != sorted(set(cs.reading_slots)):
        raise errors.fail(errors.BAD_CHANNEL_STATE, "reading_slots must be sorted and unique")
    if cs.energy_wh > SAFE_INT:
        raise errors.fail(errors.BAD_CHANNEL_STATE, f"energy_wh must be at most {SAFE_INT}")


def check_signed_by(state: State, cs: ChannelState, *, party: str, signature: bytes | None,
                    chain_id: str) -> None:
    """``signature`` is ``party``'s account key's signature of ``cs`` [``bad_cosignature``]."""
    account = get_account(state, party)
    if signature is None or not verify_channel_state(account.public_key, signature, cs, chain_id=chain_id):
        raise errors.fail(errors.BAD_COSIGNATURE, f"the signature of {party} on state {cs.seq} does not verify")


def check_co_signed(state: State, channel: Channel, cs: ChannelState, *, signature_a: bytes,
                    signature_b: bytes, chain_id: str) -> None:
    check_state_fits(channel, cs)
    check_signed_by(state, cs, party=channel.party_a, signature=signature_a, chain_id=chain_id)
    check_signed_by(state, cs, party=channel.party_b, signature=signature_b, chain_id=chain_id)


def payout(channel: Channel, *, balance_a_u: int, balance_b_u: int) -> tuple[int, int]:
    """(paid to a, paid to b) for a state with these balances: party b's deposit that the
    state does not count (it was signed before party b funded) is party b's."""
    unallocated = channel.total_u - balance_a_u - balance_b_u
    assert unallocated in (0, channel.deposit_b_u)
    return balance_a_u, balance_b_u + unallocated


# --- handlers -----------------------------------------------------------------------------

def _require_party(channel: Channel, sender: str) -> None:
    if sender not in (channel.party_a, channel.party_b):
        raise errors.fail(errors.NOT_CHANNEL_PARTY, f"{sender} is not a party of channel {channel.channel_id}")


def _require_open(channel: Channel) -> None:
    if channel.status != "open":
        raise errors.fail(errors.CHANNEL_NOT_OPEN, f"channel {channel.channel_id} is {channel.status}")


def _take_deposit(state: State, address: str, amount_u: int) -> None:
    account = state.accounts[address]
    if account.balance_u < amount_u:
        raise errors.fail(errors.INSUFFICIENT_BALANCE, f"balance {account.balance_u} µ < deposit {amount_u} µ")
    state.put("accounts", address, replace(account, balance_u=account.balance_u - amount_u))


def apply_open_channel(ctx: BlockContext, tx: Tx, body: OpenChannel, tx_hash: bytes) -> None:
    state = ctx.state
    counterparty = get_account(state, body.counterparty)
    if counterparty.status != "active":
        raise errors.fail(errors.NOT_REGISTERED, f"counterparty {body.counterparty} is {counterparty.status}")
    if body.counterparty == tx.sender:
        raise errors.fail(errors.BAD_PARTIES, "a channel needs two different accounts")
    if body.challenge_slots > MAX_CHALLENGE_SLOTS:
        raise errors.fail(errors.BAD_DEADLINE, f"challenge_slots must be in [1, {MAX_CHALLENGE_SLOTS}]")
    if len(state.channels) >= MAX_CHANNELS:
        raise errors.fail(errors.LIMIT_REACHED, f"the chain holds {MAX_CHANNELS} channels")
    _take_deposit(state, tx.sender, body.deposit_u)
    channel_id = tx_hash.hex()
    assert channel_id not in state.channels  # a tx hash is included (and succeeds) once
    location = ctx.emit(ChannelOpened(channel_id=channel_id, party_a=tx.sender, party_b=body.counterparty,
                                      deposit_u=body.deposit_u, challenge_slots=body.challenge_slots))
    state.put("channels", channel_id, Channel(
        channel_id=channel_id, party_a=tx.sender, party_b=body.counterparty, deposit_a_u=body.deposit_u,
        challenge_slots=body.challenge_slots, opened_at=location))


def apply_fund_channel(ctx: BlockContext, tx: Tx, body: FundChannel) -> None:
    state = ctx.state
    channel = get_channel(state, body.channel_id)
    if tx.sender != channel.party_b:
        raise errors.fail(errors.NOT_CHANNEL_PARTY, "only the counterparty funds a channel")
    _require_open(channel)
    if channel.deposit_b_u:
        raise errors.fail(errors.ALREADY_FUNDED, f"channel {channel.channel_id} is already funded")
    _take_deposit(state, tx.sender, body.deposit_u)
    location = ctx.emit(ChannelFunded(channel_id=channel.channel_id, party=tx.sender, deposit_u=body.deposit_u))
    state.put("channels", channel.channel_id, replace(channel, deposit_b_u=body.deposit_u, funded_at=location))


def apply_close_channel(ctx: BlockContext, tx: Tx, body: CloseChannel) -> None:
    state = ctx.state
    cs = body.state
    channel = get_channel(state, cs.channel_id)
    _require_party(channel, tx.sender)
    if channel.status == "settled":
        raise errors.fail(errors.CHANNEL_NOT_OPEN, f"channel {channel.channel_id} is settled")
    if not cs.final:
        raise errors.fail(errors.BAD_CHANNEL_STATE, "a cooperative close needs a final state")
    if channel.status == "closing" and cs.seq <= channel.seq:
        raise errors.fail(errors.STALE_STATE, f"state {cs.seq} is not newer than the posted {channel.seq}")
    check_co_signed(state, channel, cs, signature_a=body.signature_a, signature_b=body.signature_b,
                    chain_id=tx.chain_id)
    paid_a, paid_b = payout(channel, balance_a_u=cs.balance_a_u, balance_b_u=cs.balance_b_u)
    _settle(ctx, _posted(channel, cs), paid_a_u=paid_a, paid_b_u=paid_b, how="cooperative")


def apply_force_close_channel(ctx: BlockContext, tx: Tx, body: ForceCloseChannel) -> None:
    state = ctx.state
    cs = body.state
    channel = get_channel(state, cs.channel_id)
    _require_party(channel, tx.sender)
    _require_open(channel)
    check_state_fits(channel, cs)
    if cs.seq > 0:
        other = channel.party_b if tx.sender == channel.party_a else channel.party_a
        check_signed_by(state, cs, party=other, signature=body.signature, chain_id=tx.chain_id)
    deadline_ms = ctx.timestamp_ms + channel.challenge_slots * state.genesis.market.slot_ms
    if deadline_ms > SAFE_INT:
        raise errors.fail(errors.BAD_DEADLINE, "the challenge period ends beyond the time bound")
    location = ctx.emit(ChannelCloseStarted(
        channel_id=channel.channel_id, closed_by=tx.sender, seq=cs.seq, balance_a_u=cs.balance_a_u,
        balance_b_u=cs.balance_b_u, energy_wh=cs.energy_wh, deadline_ms=deadline_ms))
    state.put("channels", channel.channel_id, replace(
        _posted(channel, cs), status="closing", closed_by=tx.sender, published_seq=cs.seq,
        deadline_ms=deadline_ms, close_at=location))


def apply_challenge_channel(ctx: BlockContext, tx: Tx, body: ChallengeChannel) -> None:
    state = ctx.state
    cs = body.state
    channel = get_channel(state, cs.channel_id)
    _require_closing(channel)
    if ctx.timestamp_ms >= channel.deadline_ms:
        raise errors.fail(errors.CHALLENGE_PERIOD_OVER, f"the challenge period ended at {channel.deadline_ms} ms")
    if cs.seq <= channel.seq:
        raise errors.fail(errors.STALE_STATE, f"state {cs.seq} is not newer than the posted {channel.seq}")
    check_co_signed(state, channel, cs, signature_a=body.signature_a, signature_b=body.signature_b,
                    chain_id=tx.chain_id)
    penalty = cs.seq >= channel.published_seq + 2
    location = ctx.emit(ChannelChallenged(channel_id=channel.channel_id, challenger=tx.sender, seq=cs.seq,
                                          replaced_seq=channel.seq, penalty=penalty))
    posted = replace(_posted(channel, cs), challenged_at=location)
    if not penalty:
        state.put("channels", channel.channel_id, posted)
        return
    # The closer forfeits its channel balance: the other party receives everything.
    closer_is_a = channel.closed_by == channel.party_a
    total = channel.total_u
    _settle(ctx, posted, paid_a_u=0 if closer_is_a else total, paid_b_u=total if closer_is_a else 0,
            how="penalty", forfeited_by=channel.closed_by)


def apply_settle_channel(ctx: BlockContext, tx: Tx, body: SettleChannel) -> None:
    channel = get_channel(ctx.state, body.channel_id)
    _require_closing(channel)
    if ctx.timestamp_ms < channel.deadline_ms:
        raise errors.fail(errors.CHALLENGE_PERIOD_RUNNING,
                          f"the challenge period runs until {channel.deadline_ms} ms")
    paid_a, paid_b = payout(channel, balance_a_u=channel.balance_a_u, balance_b_u=channel.balance_b_u)
    _settle(ctx, channel, paid_a_u=paid_a, paid_b_u=paid_b, how="unilateral")


def _require_closing(channel: Channel) -> None:
    if channel.status != "closing":
        raise errors.fail(errors.CHANNEL_NOT_CLOSING, f"channel {channel.channel_id} is {channel.status}")


def _posted(channel: Channel, cs: ChannelState) -> Channel:
    """``channel`` with ``cs`` as its newest posted state."""
    return replace(channel, seq=cs.seq, balance_a_u=cs.balance_a_u, balance_b_u=cs.balance_b_u,
                   energy_wh=cs.energy_wh, reading_slots=tuple(cs.reading_slots))


def _settle(ctx: BlockContext, channel: Channel, *, paid_a_u: int, paid_b_u: int, how: str,
            forfeited_by: str | None = None) -> None:
    """Pay the deposits out (exactly: ``paid_a_u + paid_b_u == total_u``) and record it."""
    assert paid_a_u >= 0 and paid_b_u >= 0 and paid_a_u + paid_b_u == channel.total_u
    state = ctx.state
    credit(state, channel.party_a, paid_a_u)
    credit(state, channel.party_b, paid_b_u)
    location = ctx.emit(ChannelSettled(
        channel_id=channel.channel_id, party_a=channel.party_a, party_b=channel.party_b, seq=channel.seq,
        paid_a_u=paid_a_u, paid_b_u=paid_b_u, energy_wh=channel.energy_wh,
        reading_slots=channel.reading_slots, how=how, forfeited_by=forfeited_by))
    state.put("channels", channel.channel_id, replace(
        channel, status="settled", paid_a_u=paid_a_u, paid_b_u=paid_b_u, settled_at=location))


# --- lineage ------------------------------------------------------------------------------

def channel_lineage(state: State, channel_id: str) -> dict[str, Location] | None:
    """Where every record of a channel's life was proven (those that exist yet), with the
    meter readings of both parties for each slot its newest posted state names; or None."""
    channel = state.channels.get(channel_id)
    if channel is None:
        return None
    out: dict[str, Location] = {"opened": channel.opened_at}
    for role, location in (("funded", channel.funded_at), ("close_started", channel.close_at),
                           ("challenged", channel.challenged_at), ("settled", channel.settled_at)):
        if location is not None:
            out[role] = location
    for slot in channel.reading_slots:
        for role, address in (("a", channel.party_a), ("b", channel.party_b)):
            reading = state.readings.get(pair_key(slot, address))
            if reading is not None:
                out[f"{role}_reading_{slot}"] = reading.location
    return out
