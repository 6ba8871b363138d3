"""Property tests (hypothesis) of payment channels: random off-chain update sequences, then a
close — cooperative, honest unilateral, or a cheating one with a stale state — with cheating
attempts on the way (forged co-signatures, values beyond the deposits, states of another
channel, double closes, closes and challenges after settlement or after the period).

Checked every time: the channel pays out exactly its deposits, the supply is conserved, and
the honest party never receives less than its balance in the newest state it signed.

The protocol a party follows (docs/CHANNELS.md): it signs update k+1 only while holding the
co-signed update k, so the honest party may lack only the last co-signed state, and only
when it proposed it (the cheater withheld the countersignature).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import channels, errors
from contracts.transactions import ChannelState

from .channel_helpers import Pair
from .helpers import Chain, check_invariants

PROPS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = {"a": "pro", "b": "con"}


@dataclass
class Scenario:
    deposit_a_u: int
    deposit_b_u: int
    fund_before: int
    """Index of the update before which party b funds (0 = before any; beyond the end = after all)."""
    updates: list[tuple[str, int]]
    honest: str
    ending: str
    withheld: bool
    stale_pick: int
    cheats: list[str]
    challenge_slots: int


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    updates = draw(st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 3_000)), max_size=25))
    return Scenario(
        deposit_a_u=draw(st.integers(1, 5_000)),
        deposit_b_u=draw(st.sampled_from([0, 0, 1, 2_500])),
        fund_before=draw(st.integers(0, len(updates) + 1)),
        updates=updates,
        honest=draw(st.sampled_from("ab")),
        ending=draw(st.sampled_from(["cooperative", "honest_close", "cheat_close"])),
        withheld=draw(st.booleans()),
        stale_pick=draw(st.integers(0, 10**6)),
        cheats=draw(st.lists(st.sampled_from(["forge", "overflow", "wrong_channel", "stale_challenge"]),
                             max_size=4)),
        challenge_slots=draw(st.integers(1, 4)),
    )


class Run:
    """The chain, the channel, the co-signed states in seq order, and a block clock."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.chain = Chain()
        self.pair = Pair(self.chain, NAMES["a"], NAMES["b"], deposit_u=sc.deposit_a_u,
                         challenge_slots=sc.challenge_slots)
        self.now_ms = 10
        self.start_u = {p: self.chain.account(NAMES[p]).balance_u for p in "ab"}
        self.states: list[ChannelState] = []
        self.funded = False

    def block(self, raw: bytes) -> None:
        self.now_ms += 10
        self.chain.ok(raw, at_ms=self.now_ms)
        check_invariants(self.chain.state)

    def rejected(self, raw: bytes, code: str) -> None:
        self.now_ms += 10
        self.chain.expect_rejected(raw, code, at_ms=self.now_ms)

    def fund(self) -> None:
        if self.sc.deposit_b_u and not self.funded:
            self.block(self.pair.fund(self.sc.deposit_b_u))
            self.funded = True

    def exchange_updates(self) -> None:
        """Off chain: each update moves ``amount`` (capped by the payer's balance) to the other party."""
        self.block(self.pair.open_raw)
        balances = {"a": self.sc.deposit_a_u, "b": 0}
        for i, (payer, amount) in enumerate(self.sc.updates):
            if i == self.sc.fund_before and self.sc.deposit_b_u:
                self.fund()
                balances["b"] += self.sc.deposit_b_u
            moved = min(amount, balances[payer])
            balances[payer] -= moved
            balances["b" if payer == "a" else "a"] += moved
            self.states.append(self.pair.state(i + 1, balances["a"], balances["b"], energy_wh=i * 7))
        if self.sc.fund_before >= len(self.sc.updates):
            self.fund()

    def opening_state(self) -> ChannelState:
        channel = self.pair.channel
        return self.pair.state(0, channel.deposit_a_u, channel.deposit_b_u)

    def held_by_honest(self) -> ChannelState:
        """The newest co-signed state the honest party holds."""
        if self.withheld():
            return self.states[-2] if len(self.states) >= 2 else self.opening_state()
        return self.states[-1] if self.states else self.opening_state()

    def withheld(self) -> bool:
        """The cheater kept the countersignature of the last update, which the honest party proposed."""
        return self.sc.withheld and bool(self.states) and self.sc.updates[-1][0] == self.sc.honest

    def newest(self) -> ChannelState:
        return self.states[-1] if self.states else self.opening_state()

    def guaranteed_u(self) -> int:
        """The honest party's payout under the newest state it signed."""
        cs = self.newest()
        paid = channels.payout(self.pair.channel, balance_a_u=cs.balance_a_u, balance_b_u=cs.balance_b_u)
        return paid[0] if self.sc.honest == "a" else paid[1]


def _try_cheats(run: Run, cheater: str, *, closing: bool) -> None:
    """Attempts the chain must refuse without any change."""
    pair, channel = run.pair, run.pair.channel
    name = NAMES[cheater]
    big = run.newest().seq + 5
    for cheat in run.sc.cheats:
        if cheat == "forge":  # both signatures from the cheater's key
            cs = pair.state(big, channel.total_u if cheater == "a" else 0, 0 if cheater == "a" else channel.total_u)
            raw = (pair.challenge(name, cs, signer_a=name, signer_b=name) if closing
                   else pair.force_close(name, cs, signer=name))
            run.rejected(raw, errors.BAD_COSIGNATURE)
        elif cheat == "overflow":
            cs = pair.state(big, 2**63 - 1, channel.total_u)
            run.rejected(pair.challenge(name, cs) if closing else pair.force_close(name, cs),
                         errors.BAD_CHANNEL_STATE)
        elif cheat == "wrong_channel":
            cs = pair.state(big, channel.total_u, 0, channel_id="ab" * 32)
            run.rejected(pair.challenge(name, cs), errors.UNKNOWN_CHANNEL)
        elif cheat == "stale_challenge" and closing:
            stale = run.pair.state(run.pair.channel.seq, 0, channel.total_u)
            run.rejected(pair.challenge(name, stale), errors.STALE_STATE)


@PROPS
@given(sc=scenarios())
def test_the_honest_party_never_loses_a_micro_and_deposits_equal_payouts(sc: Scenario) -> None:
    run = Run(sc)
    run.exchange_updates()
    pair = run.pair
    honest, cheater = sc.honest, "b" if sc.honest == "a" else "a"
    _try_cheats(run, cheater, closing=False)
    if sc.ending == "cooperative":
        newest = run.newest()
        final = pair.state(newest.seq + 1, newest.balance_a_u, newest.balance_b_u, final=True)
        run.block(pair.close(NAMES[cheater], final))
    elif sc.ending == "honest_close":
        run.block(pair.force_close(NAMES[honest], run.held_by_honest()))
        _try_cheats(run, cheater, closing=True)
        if run.withheld():  # the cheater's best move: the update it withheld (no penalty: one behind)
            run.block(pair.challenge(NAMES[cheater], run.newest()))
    else:
        published = run.states[sc.stale_pick % len(run.states)] if run.states else run.opening_state()
        run.block(pair.force_close(NAMES[cheater], published))
        _try_cheats(run, cheater, closing=True)
        held = run.held_by_honest()
        if held.seq > published.seq:  # the honest party's watchtower answers
            run.block(pair.challenge("val", held))
    if pair.channel.status == "closing":
        run.rejected(pair.settle("gen"), errors.CHALLENGE_PERIOD_RUNNING)
        run.now_ms = max(run.now_ms, pair.deadline_ms())
        run.block(pair.settle("gen"))
    channel = pair.channel
    assert channel.status == "settled"
    assert channel.paid_a_u + channel.paid_b_u == channel.deposit_a_u + channel.deposit_b_u
    deposits = {"a": channel.deposit_a_u, "b": channel.deposit_b_u}
    received = run.chain.account(NAMES[honest]).balance_u - run.start_u[honest] + deposits[honest]
    assert received >= run.guaranteed_u()
    if channel.closed_by == run.chain.addr(NAMES[cheater]) and run.held_by_honest().seq >= channel.published_seq + 2:
        assert received == channel.total_u  # a provably stale close forfeits everything
    # After settlement nothing moves the channel again.
    for raw, code in ((pair.close(NAMES[cheater], pair.state(99, channel.total_u, 0, final=True)),
                       errors.CHANNEL_NOT_OPEN),
                      (pair.force_close(NAMES[cheater], pair.state(99, channel.total_u, 0)), errors.CHANNEL_NOT_OPEN),
                      (pair.challenge(NAMES[cheater], pair.state(99, channel.total_u, 0)), errors.CHANNEL_NOT_CLOSING),
                      (pair.settle(NAMES[cheater]), errors.CHANNEL_NOT_CLOSING)):
        run.rejected(raw, code)
    check_invariants(run.chain.state)
