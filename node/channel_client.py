"""A payment channel from one party's side (docs/CHANNELS.md): what the CLI
(``gridchain channel``), the bench and the tests use to pay and be paid off chain.

A ``ChannelParty`` holds its key and talks to two nodes: its own (which stores its
co-signed states and watches the chain for it) and the other party's (its mailbox).
Paying is three calls: sign the next state and *propose* it at the payee's node; the
payee (its ``accept`` loop, or ``countersign`` directly) checks that the proposal pays it
and countersigns at its own node; the payer stores the co-signed state at its node.
The protocol rule that makes the penalty fair: a party signs update k+1 only while
holding the co-signed update k (``pay`` and ``countersign`` both start from
``self.latest``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from consensus import codec, crypto
from contracts import transactions as txs
from node.client import ApiClientError, AsyncClient


class ChannelParty:
    """One party of channel ``channel_id`` (``await ChannelParty.load(...)``)."""

    def __init__(self, *, signer: crypto.Signer, chain_id: str, channel: dict[str, Any], own: AsyncClient,
                 latest: txs.ChannelState) -> None:
        self.signer = signer
        self.address = crypto.address(signer.public_key)
        self.chain_id = chain_id
        self.channel_id: str = channel["channel_id"]
        self.party_a: str = channel["party_a"]
        self.party_b: str = channel["party_b"]
        if self.address not in (self.party_a, self.party_b):
            raise ValueError(f"{self.address} is not a party of channel {self.channel_id}")
        self.is_a = self.address == self.party_a
        self.own = own
        self.latest = latest
        """The newest co-signed state this party holds (seq 0: the deposits)."""
        self.signatures: tuple[bytes, bytes] | None = None
        """(signature_a, signature_b) of ``latest`` (None for the opening state)."""

    @classmethod
    async def load(cls, *, signer: crypto.Signer, channel_id: str, own: AsyncClient) -> ChannelParty:
        info = await own.request("GET", f"/v1/channels/{channel_id}")
        channel = info["channel"]
        if channel is None:
            raise ApiClientError("not_found", f"channel {channel_id} is not on chain")
        channel = {**channel, "channel_id": channel_id}
        opening = txs.ChannelState(channel_id=channel_id, seq=0, balance_a_u=channel["deposit_a_u"],
                                   balance_b_u=channel["deposit_b_u"], energy_wh=0)
        party = cls(signer=signer, chain_id=await own.chain_id(), channel=channel, own=own, latest=opening)
        if info["latest"] is not None:
            party._keep(info["latest"])
        return party

    def _keep(self, co_signed: dict[str, Any]) -> None:
        self.latest = msgspec.convert(co_signed["state"], txs.ChannelState)
        self.signatures = (bytes.fromhex(co_signed["signature_a"]), bytes.fromhex(co_signed["signature_b"]))

    @property
    def balance_u(self) -> int:
        return self.latest.balance_a_u if self.is_a else self.latest.balance_b_u

    def sign(self, state: txs.ChannelState) -> bytes:
        return txs.sign_channel_state(state, self.signer, chain_id=self.chain_id)

    def next_state(self, amount_u: int, *, energy_wh: int = 0, reading_slots: tuple[int, ...] = (),
                   final: bool = False) -> txs.ChannelState:
        """The update after ``latest`` that pays ``amount_u`` to the other party."""
        if amount_u > self.balance_u:
            raise ValueError(f"balance {self.balance_u} µ < payment {amount_u} µ")
        a, b = self.latest.balance_a_u, self.latest.balance_b_u
        a, b = (a - amount_u, b + amount_u) if self.is_a else (a + amount_u, b - amount_u)
        return txs.ChannelState(channel_id=self.channel_id, seq=self.latest.seq + 1, balance_a_u=a, balance_b_u=b,
                                energy_wh=self.latest.energy_wh + energy_wh, reading_slots=reading_slots,
                                final=final)

    async def propose(self, peer: AsyncClient, state: txs.ChannelState) -> None:
        """Propose ``state`` (signed by this party) at the other party's node."""
        await peer.request("POST", f"/v1/channels/{self.channel_id}/proposals",
                           json_body={"state": codec.to_builtins(state), "signature": self.sign(state).hex()})

    async def countersign(self, *, min_gain_u: int = 0) -> dict[str, Any] | None:
        """Countersign the proposal waiting at this party's node if it is the next update and
        pays this party at least ``min_gain_u`` (a final state may also move nothing); the
        co-signed state is on the node's disk when this returns. None if there is none to sign."""
        info = await self.own.request("GET", f"/v1/channels/{self.channel_id}")
        if info["latest"] is not None:
            self._keep(info["latest"])
        proposal = info["proposal"]
        if proposal is None or proposal["proposer"] == self.address:
            return None
        return await self.countersign_state(msgspec.convert(proposal["state"], txs.ChannelState),
                                            min_gain_u=min_gain_u)

    async def countersign_state(self, state: txs.ChannelState, *, min_gain_u: int = 0) -> dict[str, Any]:
        """Countersign the proposal ``state`` (already known to this party) at its own node."""
        mine = state.balance_a_u if self.is_a else state.balance_b_u
        if state.seq != self.latest.seq + 1 or mine - self.balance_u < min_gain_u:
            raise ValueError(f"proposal {state.seq} is not an update this party accepts")
        co_signed = await self.own.request("POST", f"/v1/channels/{self.channel_id}/countersign",
                                           json_body={"seq": state.seq, "signature": self.sign(state).hex()})
        self._keep(co_signed)
        return co_signed  # type: ignore[no-any-return]

    async def keep(self, co_signed: dict[str, Any]) -> None:
        """Store a co-signed state at this party's node (its watchtower's evidence) and hold it."""
        stored = await self.own.request("POST", f"/v1/channels/{self.channel_id}/states", json_body=co_signed)
        self._keep(stored)

    async def wait_cosigned(self, peer: AsyncClient, seq: int, *, timeout_s: float = 30.0) -> dict[str, Any]:
        """Poll the other party's node until it holds co-signed state ``seq``."""
        deadline = time.monotonic() + timeout_s
        while True:
            info = await peer.request("GET", f"/v1/channels/{self.channel_id}")
            latest = info["latest"]
            if latest is not None and latest["state"]["seq"] >= seq:
                return latest  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise ApiClientError("timeout", f"state {seq} was not countersigned within {timeout_s}s")
            await asyncio.sleep(0.1)

    def close_body(self) -> txs.ForceCloseChannel:
        """A unilateral close with ``latest`` (the other party's signature; none for seq 0)."""
        other = None
        if self.signatures is not None:
            other = self.signatures[1] if self.is_a else self.signatures[0]
        return txs.ForceCloseChannel(state=self.latest, signature=other)


async def exchange(payer: ChannelParty, payee: ChannelParty, amount_u: int, *, energy_wh: int = 0,
                   final: bool = False) -> dict[str, Any]:
    """One update with both parties in this process: the payer proposes at the payee's node,
    the payee (handed the state directly, instead of fetching it) countersigns there, the
    payer stores the co-signed state at its own node: three requests, two fsyncs."""
    state = payer.next_state(amount_u, energy_wh=energy_wh, final=final)
    await payer.propose(payee.own, state)
    co_signed = await payee.countersign_state(state)
    await payer.keep(co_signed)
    return co_signed


def cooperative_close_body(co_signed: dict[str, Any]) -> txs.CloseChannel:
    """A ``close_channel`` body from a co-signed final state."""
    return txs.CloseChannel(state=msgspec.convert(co_signed["state"], txs.ChannelState),
                            signature_a=bytes.fromhex(co_signed["signature_a"]),
                            signature_b=bytes.fromhex(co_signed["signature_b"]))
