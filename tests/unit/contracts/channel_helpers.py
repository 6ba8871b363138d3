"""A payment channel between two accounts of a test ``Chain``: open it, sign states with both
keys, and build the close, challenge and settle transactions (contracts/channels.py)."""

from __future__ import annotations

from contracts.state import Channel
from contracts.transactions import (
    ChallengeChannel,
    ChannelState,
    CloseChannel,
    ForceCloseChannel,
    FundChannel,
    OpenChannel,
    SettleChannel,
    decode_signed_tx,
    sign_channel_state,
)

from .helpers import CHAIN_ID, Chain


class Pair:
    """Channel ``channel_id`` of opener ``a`` and counterparty ``b`` on ``chain``."""

    def __init__(self, chain: Chain, a: str, b: str, *, deposit_u: int, challenge_slots: int = 3) -> None:
        self.chain, self.a, self.b = chain, a, b
        raw = chain.tx(a, OpenChannel(counterparty=chain.addr(b), deposit_u=deposit_u,
                                      challenge_slots=challenge_slots))
        self.channel_id = decode_signed_tx(raw).tx_hash.hex()
        self.open_raw = raw

    @property
    def channel(self) -> Channel:
        return self.chain.state.channels[self.channel_id]

    def state(self, seq: int, balance_a_u: int, balance_b_u: int, *, energy_wh: int = 0,
              reading_slots: tuple[int, ...] = (), final: bool = False, channel_id: str | None = None
              ) -> ChannelState:
        return ChannelState(channel_id=channel_id or self.channel_id, seq=seq, balance_a_u=balance_a_u,
                            balance_b_u=balance_b_u, energy_wh=energy_wh, reading_slots=reading_slots,
                            final=final)

    def sign(self, name: str, cs: ChannelState) -> bytes:
        return sign_channel_state(cs, self.chain.signers[name], chain_id=CHAIN_ID)

    def fund(self, deposit_u: int, *, sender: str | None = None) -> bytes:
        return self.chain.tx(sender or self.b, FundChannel(channel_id=self.channel_id, deposit_u=deposit_u))

    def close(self, sender: str, cs: ChannelState, *, signer_a: str | None = None,
              signer_b: str | None = None) -> bytes:
        return self.chain.tx(sender, CloseChannel(state=cs, signature_a=self.sign(signer_a or self.a, cs),
                                                  signature_b=self.sign(signer_b or self.b, cs)))

    def force_close(self, sender: str, cs: ChannelState, *, signer: str | None = None) -> bytes:
        other = self.b if sender == self.a else self.a
        signature = None if cs.seq == 0 and signer is None else self.sign(signer or other, cs)
        return self.chain.tx(sender, ForceCloseChannel(state=cs, signature=signature))

    def challenge(self, sender: str, cs: ChannelState, *, signer_a: str | None = None,
                  signer_b: str | None = None) -> bytes:
        return self.chain.tx(sender, ChallengeChannel(state=cs, signature_a=self.sign(signer_a or self.a, cs),
                                                      signature_b=self.sign(signer_b or self.b, cs)))

    def settle(self, sender: str) -> bytes:
        return self.chain.tx(sender, SettleChannel(channel_id=self.channel_id))

    def deadline_ms(self) -> int:
        return self.channel.deadline_ms

