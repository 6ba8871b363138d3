"""A tiny in-process network of real consensus cores for the consensus unit tests
(and a throughput/signature-count measurement when run as a script).

Virtual time, fixed message delay, no randomness: messages are encoded with the
one codec, decoded and validated with ``check_message`` at the receiver like the
real node. Hooks let a test drop nodes, intercept what a node sends (Byzantine
behaviour) or restart a node. This is not the simulator (node/sim); it is the
smallest harness that lets a unit test drive several cores at once.

    python -m tests.unit.consensus_net   # events/s and signatures per block
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from consensus import codec, crypto
from consensus.actions import (
    Action,
    Broadcast,
    Commit,
    FetchBlocks,
    PersistSafety,
    RequestPayload,
    ScheduleTick,
    Send,
)
from consensus.committee import Committee
from consensus.config import ConsensusParams
from consensus.core import Core, RestorePoint, make_genesis_block
from consensus.events import BlocksFetched, Event, MessageReceived, PayloadReady, Tick
from consensus.types import Block, Message, SafetyData, VoteMsg, block_id
from consensus.validation import check_message

CHAIN_ID = "gridchain-test"
EPOCH = 1
GENESIS_MS = 1_000


def make_signers(n: int) -> list[crypto.Signer]:
    return [crypto.Signer(bytes([i + 1]) * 32) for i in range(n)]


def make_committee(signers: list[crypto.Signer]) -> Committee:
    return Committee(CHAIN_ID, EPOCH, [s.public_key for s in signers])


GENESIS = make_genesis_block(CHAIN_ID, EPOCH, GENESIS_MS)

# A hook sees (sender, action) for every Send/Broadcast and returns the list of
# (receiver, message) deliveries to make instead, or None for the normal ones.
SendHook = Callable[[int, Action], list[tuple[int, Message]] | None]


@dataclass
class Net:
    n: int = 4
    params: ConsensusParams = field(default_factory=ConsensusParams)
    delay_ms: int = 5
    send_hook: SendHook | None = None
    down: set[int] = field(default_factory=set)
    txs_per_block: int = 1

    def __post_init__(self) -> None:
        self.signers = make_signers(self.n)
        self.cores: list[Core] = [self._new_core(i, SafetyData(epoch=EPOCH)) for i in range(self.n)]
        self.disk: list[SafetyData | None] = [None] * self.n
        self.chains: list[list[bytes]] = [[] for _ in range(self.n)]
        self.blocks: dict[bytes, Block] = {block_id(GENESIS.header): GENESIS}
        self.votes_seen: dict[tuple[int, int], set[bytes]] = {}
        self.messages = 0
        self.persist_log: list[tuple[int, int]] = []
        self._timer: dict[int, int] = {}
        """(node, highest round signed) for every PersistSafety, in order."""
        self.now_ms = GENESIS_MS
        self._queue: list[tuple[int, int, int, Event]] = []
        self._seq = 0
        for i in range(self.n):
            self._push(GENESIS_MS, i, Tick(now_ms=GENESIS_MS))

    def _new_core(self, i: int, safety: SafetyData | None, restore: RestorePoint | None = None) -> Core:
        return Core(committee=make_committee(self.signers), params=self.params, me=i,
                    signer=self.signers[i], genesis_block=GENESIS, safety=safety, restore=restore)

    def _push(self, at_ms: int, node: int, event: Event) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at_ms, self._seq, node, event))

    def restart(self, i: int, *, wipe: bool, restore: RestorePoint | None = None) -> None:
        """Replace node ``i``'s core: from its persisted safety data, or wiped (None);
        ``restore`` as the runtime would reload it from storage (None: from genesis)."""
        self.cores[i] = self._new_core(i, None if wipe else self.disk[i], restore)
        if restore is None:
            self.chains[i] = []  # the new core starts from genesis and commits everything again
        self.wake(i)

    def wake(self, i: int) -> None:
        """Deliver a Tick to node ``i`` now (e.g. when it comes back from being down)."""
        self._timer[i] = self.now_ms
        self._push(self.now_ms, i, Tick(now_ms=self.now_ms))

    def run_until(self, until_ms: int) -> None:
        while self._queue and self._queue[0][0] <= until_ms:
            at_ms, _, node, event = heapq.heappop(self._queue)
            self.now_ms = at_ms
            if node in self.down:
                continue
            if isinstance(event, Tick) and self._timer.get(node, at_ms) != at_ms:
                continue  # a timer that was re-armed since
            self._carry_out(node, self.cores[node].handle(event))
        self.now_ms = until_ms

    def _carry_out(self, node: int, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, PersistSafety):
                self.disk[node] = action.data
                self.persist_log.append((node, max(action.data.last_voted_round,
                                                   action.data.highest_timeout_round)))
            elif isinstance(action, (Send, Broadcast)):
                self._send(node, action)
            elif isinstance(action, ScheduleTick):
                # One timer per node, re-armed by every ScheduleTick (like node.chain.driver).
                at = max(self.now_ms, action.at_ms)
                self._timer[node] = at
                self._push(at, node, Tick(now_ms=at))
            elif isinstance(action, RequestPayload):
                payload = tuple(b"tx-%d-%d" % (action.round, k) for k in range(self.txs_per_block))
                self._push(self.now_ms, node, PayloadReady(
                    round=action.round, payload=payload, executed_height=0,
                    executed_state_root=bytes(32)))
            elif isinstance(action, Commit):
                for block in action.blocks:
                    bid = block_id(block.header)
                    self.blocks[bid] = block
                    self.chains[node].append(bid)
            elif isinstance(action, FetchBlocks):
                self._answer_fetch(node, action)

    def _answer_fetch(self, node: int, action: FetchBlocks) -> None:
        peer = self.cores[action.peer]
        blocks = peer.blocks_from(action.block_id, action.count)
        if not blocks and action.block_id in self.blocks:  # committed: from "storage"
            out, current = [], action.block_id
            while current in self.blocks and len(out) < action.count:
                block = self.blocks[current]
                out.append(block)
                if block.height == 0:
                    break
                current = block.parent_id
            blocks = out
        self._push(self.now_ms + 2 * self.delay_ms, node, BlocksFetched(blocks=tuple(blocks)))

    def _send(self, sender: int, action: Send | Broadcast) -> None:
        deliveries = self.send_hook(sender, action) if self.send_hook else None
        if deliveries is None:
            targets = [action.to] if isinstance(action, Send) else [j for j in range(self.n) if j != sender]
            deliveries = [(j, action.message) for j in targets]
        for receiver, message in deliveries:
            data = codec.encode(message)
            decoded = codec.decode(data, Message)  # type: ignore[arg-type]
            check_message(decoded, sender=sender, committee=self.cores[receiver]._committee)
            if isinstance(decoded, VoteMsg):
                vote = decoded.vote
                self.votes_seen.setdefault((vote.author, vote.vote_data.round), set()).add(
                    codec.encode(vote.vote_data))
            self.messages += 1
            self._push(self.now_ms + self.delay_ms, receiver, MessageReceived(sender=sender, message=decoded))

    # --- checks ------------------------------------------------------------------------

    def assert_agreement(self) -> None:
        """Every pair of chains agrees on their common prefix."""
        longest = max(self.chains, key=len)
        for chain in self.chains:
            assert chain == longest[: len(chain)], "two nodes committed different blocks"

    def double_voters(self) -> list[tuple[int, int]]:
        return [key for key, datas in self.votes_seen.items() if len(datas) > 1]


def _measure() -> None:  # pragma: no cover - a measurement, not a test
    import time

    counts = {"sign": 0, "verify": 0}
    real_sign, real_verify = crypto.Signer.sign, crypto.verify

    def counting_sign(self: crypto.Signer, **kw: object) -> bytes:
        counts["sign"] += 1
        return real_sign(self, **kw)  # type: ignore[arg-type]

    def counting_verify(*args: object, **kw: object) -> bool:
        counts["verify"] += 1
        return real_verify(*args, **kw)  # type: ignore[arg-type]

    crypto.Signer.sign = counting_sign  # type: ignore[method-assign]
    crypto.verify = counting_verify  # type: ignore[assignment]
    import consensus.validation as validation
    validation.crypto.verify = counting_verify  # type: ignore[assignment]
    real_handle = Core.handle
    for n in (4, 7, 10, 16):
        counts.update(sign=0, verify=0)
        net = Net(n=n)
        handled = 0

        def counting_handle(self: Core, event: Event, real: Callable = real_handle) -> list[Action]:
            nonlocal handled
            handled += 1
            return real(self, event)

        Core.handle = counting_handle  # type: ignore[method-assign]
        start = time.perf_counter()
        net.run_until(GENESIS_MS + 20_000)
        elapsed = time.perf_counter() - start
        Core.handle = real_handle  # type: ignore[method-assign]
        net.assert_agreement()
        blocks = min(len(c) for c in net.chains)
        print(f"n={n:2d} blocks={blocks} events={handled} wall={elapsed:.2f}s "
              f"(incl. codec+validation+signing) events/s={handled / elapsed:,.0f} "
              f"signatures/block={counts['sign'] / blocks:.2f} "
              f"verifications/block={counts['verify'] / blocks:.2f} "
              f"(per node {counts['verify'] / blocks / n:.2f}) messages/block={net.messages / blocks:.2f}")
    # The core alone: replay recorded events into fresh cores without validation.
    net = Net(n=4)
    recorded: list[tuple[int, Event]] = []

    def recording_handle(self: Core, event: Event) -> list[Action]:
        recorded.append((self.me, event))
        return real_handle(self, event)

    Core.handle = recording_handle  # type: ignore[method-assign]
    net.run_until(GENESIS_MS + 20_000)
    Core.handle = real_handle  # type: ignore[method-assign]
    fresh = Net(n=4)
    start = time.perf_counter()
    for node, event in recorded:
        fresh.cores[node].handle(event)
    elapsed = time.perf_counter() - start
    print(f"core.handle() alone (replay of {len(recorded)} events, 4 nodes, signing included, "
          f"no validation): {len(recorded) / elapsed:,.0f} events/s")


if __name__ == "__main__":  # pragma: no cover
    _measure()
