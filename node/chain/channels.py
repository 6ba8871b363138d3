"""Payment channels on a node: off-chain updates and the built-in watchtower (docs/CHANNELS.md).

Theory of operation
-------------------
A participant's node is its channels' mailbox and memory. An update is a
``ChannelState`` that one party signs and *proposes* at the other party's node
(``propose``); the other party's client fetches it, checks it, and *countersigns* there
(``countersign``); the proposer then hands the co-signed state to its own node
(``store_cosigned``). Each of these checks the state against the channel on chain
(``contracts.channels.check_state_fits``) and the parties' account keys; a co-signed state
is acknowledged only once it is on disk (``node.chain.channels_store``: fsync), while a
proposal waits in memory (it proves nothing; if lost, it is proposed again). Keys never
leave the clients: the node signs nothing for a party.

The watchtower: after every block that starts or changes a unilateral close, and at
start, the node compares each closing channel's posted seq with the newest co-signed state
it holds; if it holds a newer one and the challenge period is still running, it submits
``challenge_channel`` with that state, signed by the node's own (validator) account — any
active account may challenge, the state carries both parties' signatures. While a close
it answered is still open it re-submits every ``RESUBMIT_BLOCKS`` blocks (a dropped
transaction must not cost a party its channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec

from consensus import codec, crypto
from contracts import channels as ch
from contracts import errors
from contracts.state import Channel
from contracts.transactions import ChallengeChannel, ChannelState, Tx, sign_tx, verify_channel_state
from node.api.protocol import CommittedBlock, NodeBackend
from node.chain import clock
from node.chain.channels_store import MAX_CHANNELS, ChannelStore, CoSigned, StoreFull

log = logging.getLogger("gridchain.channels")

RESUBMIT_BLOCKS = 10
"""Blocks after which an unanswered challenge is submitted again."""
CHALLENGE_TTL_MS = 120_000
"""Expiry of a watchtower's challenge transaction, from the node's clock."""
_WAKE_TAGS = (b"channel_close_started", b"channel_challenged")


class Proposal(msgspec.Struct, frozen=True):
    """A state signed by one party (``proposer``), waiting for the other's signature."""

    channel_id: str
    seq: int
    state: bytes
    proposer: str
    signature: bytes


def cosigned_json(item: CoSigned) -> dict[str, Any]:
    return {"state": codec.to_builtins(codec.decode(item.state, ChannelState)),
            "signature_a": item.signature_a.hex(), "signature_b": item.signature_b.hex()}


def proposal_json(item: Proposal) -> dict[str, Any]:
    return {"state": codec.to_builtins(codec.decode(item.state, ChannelState)), "proposer": item.proposer,
            "signature": item.signature.hex()}


class ChannelService:
    """The node's channel mailbox, store and watchtower (``await start()``, ``await stop()``)."""

    def __init__(self, *, backend: NodeBackend, store: ChannelStore, signer: crypto.Signer) -> None:
        self.backend = backend
        self.store = store
        self.signer = signer
        self.address = crypto.address(signer.public_key)
        self._proposals: dict[str, Proposal] = {}
        """channel id -> the one proposal waiting here (memory only: a lost proposal is proposed
        again); at most ``MAX_CHANNELS``, dropped once answered."""
        self._answered: dict[str, tuple[int, int]] = {}
        """channel id -> (seq submitted, height when submitted); pruned by every scan."""
        self._closing: set[str] = set()
        """Channels seen closing: scanned after every block until they settle or the period ends."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._remove_listener: Any = None
        self._last_nonce = 0
        self.challenges_submitted = 0

    async def start(self) -> None:
        self._remove_listener = self.backend.add_listener(self._on_block)
        self._task = asyncio.create_task(self._watch(), name="watchtower")
        self._wake.set()  # a close may have started while the node was down

    async def stop(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.store.close()

    # --- off-chain updates (the API's ChannelBackend) ------------------------------------------

    async def info(self, channel_id: str) -> dict[str, Any] | None:
        state = await self.backend.read_state()
        channel = state.channels.get(channel_id)
        latest = await self.store.latest(channel_id)
        proposal = self._proposals.get(channel_id)
        if channel is None and latest is None:
            return None
        return {"channel_id": channel_id, "channel": None if channel is None else codec.to_builtins(channel),
                "latest": None if latest is None else cosigned_json(latest),
                "proposal": None if proposal is None else proposal_json(proposal)}

    async def propose(self, channel_id: str, cs: ChannelState, signature: bytes) -> dict[str, Any]:
        channel, keys = await self._open_channel(channel_id, cs)
        proposer = next((p for p in (channel.party_a, channel.party_b)
                         if verify_channel_state(keys[p], signature, cs, chain_id=self.backend.chain_id)), None)
        if proposer is None:
            raise errors.fail(errors.BAD_COSIGNATURE, "the signature is not a party's")
        latest = await self.store.latest(channel_id)
        if latest is not None and cs.seq <= latest.seq:
            raise errors.fail(errors.STALE_STATE, f"state {cs.seq} is not newer than the stored {latest.seq}")
        if channel_id not in self._proposals and len(self._proposals) >= MAX_CHANNELS:
            raise errors.fail(errors.LIMIT_REACHED, f"{MAX_CHANNELS} proposals are waiting on this node")
        item = Proposal(channel_id=channel_id, seq=cs.seq, state=codec.encode(cs), proposer=proposer,
                        signature=signature)
        self._proposals[channel_id] = item
        return proposal_json(item)

    async def countersign(self, channel_id: str, seq: int, signature: bytes) -> dict[str, Any]:
        proposal = self._proposals.get(channel_id)
        if proposal is None or proposal.seq != seq:
            raise errors.fail("not_found", f"no proposal {seq} of channel {channel_id}")
        cs = codec.decode(proposal.state, ChannelState)
        channel, keys = await self._open_channel(channel_id, cs)
        other = channel.party_b if proposal.proposer == channel.party_a else channel.party_a
        if not verify_channel_state(keys[other], signature, cs, chain_id=self.backend.chain_id):
            raise errors.fail(errors.BAD_COSIGNATURE, f"the signature is not {other}'s")
        by_party = {proposal.proposer: proposal.signature, other: signature}
        item = CoSigned(channel_id=channel_id, seq=cs.seq, state=proposal.state,
                        signature_a=by_party[channel.party_a], signature_b=by_party[channel.party_b])
        if not await self._durably(self.store.put_cosigned(item)):
            raise errors.fail(errors.STALE_STATE, f"a state newer than {cs.seq} is stored")
        if self._proposals.get(channel_id) is proposal:
            del self._proposals[channel_id]
        return cosigned_json(item)

    async def store_cosigned(self, channel_id: str, cs: ChannelState, *, signature_a: bytes,
                             signature_b: bytes) -> dict[str, Any]:
        state = await self.backend.read_state()
        channel = self._channel(state, channel_id, cs)
        if channel.status == "settled":
            raise errors.fail(errors.CHANNEL_NOT_OPEN, f"channel {channel_id} is settled")
        ch.check_co_signed(state, channel, cs, signature_a=signature_a, signature_b=signature_b,
                           chain_id=self.backend.chain_id)
        item = CoSigned(channel_id=channel_id, seq=cs.seq, state=codec.encode(cs), signature_a=signature_a,
                        signature_b=signature_b)
        if not await self._durably(self.store.put_cosigned(item)):
            raise errors.fail(errors.STALE_STATE, f"state {cs.seq} is not newer than the stored one")
        if channel.status == "closing":
            self._closing.add(channel_id)
            self._wake.set()
        return cosigned_json(item)

    async def _open_channel(self, channel_id: str, cs: ChannelState) -> tuple[Channel, dict[str, bytes]]:
        """The open channel ``cs`` belongs to, with its parties' keys (read at one block boundary)."""
        state = await self.backend.read_state()
        channel = self._channel(state, channel_id, cs)
        if channel.status != "open":
            raise errors.fail(errors.CHANNEL_NOT_OPEN, f"channel {channel_id} is {channel.status}")
        return channel, {p: state.accounts[p].public_key for p in (channel.party_a, channel.party_b)}

    @staticmethod
    def _channel(state: Any, channel_id: str, cs: ChannelState) -> Channel:
        if cs.channel_id != channel_id:
            raise errors.fail(errors.BAD_CHANNEL_STATE, "the state names another channel")
        channel = ch.get_channel(state, channel_id)
        ch.check_state_fits(channel, cs)
        return channel

    @staticmethod
    async def _durably(write: Any) -> Any:
        try:
            return await write
        except StoreFull as exc:
            raise errors.fail(errors.LIMIT_REACHED, str(exc)) from None

    # --- the watchtower ----------------------------------------------------------------------

    def _on_block(self, committed: CommittedBlock) -> None:
        if self._closing or any(tag in leaf for leaf in committed.leaves for tag in _WAKE_TAGS):
            self._wake.set()

    async def _watch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.scan()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watchtower scan failed")

    async def scan(self) -> int:
        """Challenge every closing channel whose posted state is older than the one held here;
        returns how many challenges were submitted."""
        held = await self.store.all_latest()
        state = await self.backend.read_state()
        now, height = state.meta.timestamp_ms, state.meta.height
        closing: set[str] = set()
        raws: list[bytes] = []
        for item in held:
            channel = state.channels.get(item.channel_id)
            if channel is None or channel.status != "closing" or now >= channel.deadline_ms:
                self._answered.pop(item.channel_id, None)
                continue
            closing.add(item.channel_id)
            if item.seq <= channel.seq:
                continue
            sent = self._answered.get(item.channel_id)
            if sent is not None and sent[0] == item.seq and height < sent[1] + RESUBMIT_BLOCKS:
                continue
            raw = self._challenge_tx(state, item)
            if raw is not None:
                raws.append(raw)
                self._answered[item.channel_id] = (item.seq, height)
                log.warning("watchtower: channel %s closed at seq %d, challenging with seq %d",
                            item.channel_id[:16], channel.seq, item.seq)
        self._closing = closing
        if raws:
            results = await self.backend.submit(raws)
            for result in results:
                if result.code is not None:
                    log.warning("watchtower: challenge refused: %s %s", result.code, result.message)
            self.challenges_submitted += sum(1 for r in results if r.code is None)
        return len(raws)

    def _challenge_tx(self, state: Any, item: CoSigned) -> bytes | None:
        account = state.accounts.get(self.address)
        if account is None or account.status != "active":
            log.error("watchtower: this node's account %s is not active; cannot challenge", self.address)
            return None
        wall_ms = clock.now_ms()
        self._last_nonce = max(self._last_nonce + 1, account.nonce + 1, wall_ms)
        body = ChallengeChannel(state=codec.decode(item.state, ChannelState), signature_a=item.signature_a,
                                signature_b=item.signature_b)
        tx = Tx(chain_id=self.backend.chain_id, sender=self.address, public_key=self.signer.public_key,
                nonce=self._last_nonce, expires_at_ms=wall_ms + CHALLENGE_TTL_MS, body=body)
        return sign_tx(tx, self.signer)

