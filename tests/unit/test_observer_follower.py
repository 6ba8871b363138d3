"""node.chain.follower: an observer executes only committed blocks whose certificate, hash
chain and tx_root verify against the validator set; a link that sends anything else is dropped
and nothing it sent is stored."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import msgspec
import pytest

from consensus import codec, crypto
from consensus.core import genesis_qc
from consensus.types import Block, BlockHeader, QuorumCert, VoteData, block_id, payload_root
from node.chain.follower import Follower
from node.net.observer_links import Head
from node.net.transport import FRAME_SYNC_REQUEST, SyncRequest, SyncResponse
from node.ops.keys import load_key_file
from tests.unit.node_harness import InProcessNode, make_node

PEER = 1_000_001


class FakeLinks:
    """Stands in for ObserverLinks: one upstream link; answers sync requests with ``serve``."""

    def __init__(self) -> None:
        self.dropped: list[tuple[int, str]] = []
        self.requests: list[SyncRequest] = []
        self.serve: SyncResponse | None = None
        self.follower: Follower | None = None

    def upstream(self) -> list[int]:
        return [] if self.dropped else [PEER]

    def send(self, peer: int, kind: int, payload: bytes) -> bool:
        assert kind == FRAME_SYNC_REQUEST
        self.requests.append(codec.decode(payload, SyncRequest))
        if self.serve is not None and self.follower is not None:
            asyncio.get_running_loop().call_soon(self.follower.on_sync_response, peer, self.serve)
        return True

    async def drop(self, peer: int, reason: str) -> None:
        self.dropped.append((peer, reason))


@pytest.fixture
def node(tmp_path: Path) -> InProcessNode:
    return make_node(tmp_path)  # each test stops the driver and closes the storage


def validator_signers(tmp_path: Path) -> list[crypto.Signer]:
    net = tmp_path / "net"
    return [load_key_file(net / name / "validator_key.json").signer
            for name in ("generator", "grid", "retailer", "user")]


def chain_of(n: InProcessNode, count: int, payloads: dict[int, tuple[bytes, ...]] | None = None) -> list[Block]:
    driver = n.driver
    assert driver.exec is not None
    parent = driver.exec.last_block
    blocks = []
    for height in range(1, count + 1):
        payload = (payloads or {}).get(height, ())
        header = BlockHeader(epoch=0, round=height, height=height, parent_qc=genesis_qc(driver.genesis_block),
                             author=height % 4, timestamp_ms=driver.genesis.genesis_time_ms + height,
                             tx_root=payload_root(payload), executed_height=0,
                             executed_state_root=driver.exec.root)
        if height > 1:  # a parent QC that names the parent (its signatures are not what is checked here)
            header = msgspec.structs.replace(header, parent_qc=QuorumCert(vote_data=VoteData(
                epoch=0, round=parent.round, height=parent.height, block_id=block_id(parent.header),
                parent_id=parent.parent_id, parent_round=max(0, parent.round - 1))))
        block = Block(header=header, payload=payload)
        blocks.append(block)
        parent = block
    return blocks


def certify(block: Block, signers: list[crypto.Signer], *, chain_id: str, epoch: int = 0,
            indexes: list[int] | None = None) -> QuorumCert:
    """A QC for a child of ``block`` in the next round: it commits ``block`` (2-chain)."""
    child_id = hashlib.sha256(b"child" + block_id(block.header)).digest()
    data = VoteData(epoch=epoch, round=block.round + 1, height=block.height + 1, block_id=child_id,
                    parent_id=block_id(block.header), parent_round=block.round)
    message = codec.encode(data)
    chosen = indexes if indexes is not None else list(range(len(signers)))
    sigs = tuple(signers[i].sign(chain_id=chain_id, kind=crypto.KIND_VOTE, message=message) for i in chosen)
    return QuorumCert(vote_data=data, signers=tuple(chosen), signatures=sigs)


def refused(n: InProcessNode, reason: str) -> float:
    return float(n.driver.metrics.observer_refused.labels(reason=reason)._value.get())


async def _accept(n: InProcessNode, response: SyncResponse) -> tuple[bool, FakeLinks]:
    links = FakeLinks()
    follower = Follower(driver=n.driver, links=links)  # type: ignore[arg-type]
    ok = await follower.accept(PEER, response)
    return ok, links


async def test_blocks_with_a_quorum_certificate_are_executed_and_stored(node: InProcessNode, tmp_path: Path) -> None:
    signers = validator_signers(tmp_path)
    chain_id = node.driver.genesis.chain_id
    blocks = chain_of(node, 3)
    qc = certify(blocks[-1], signers, chain_id=chain_id, indexes=[0, 1, 3])
    ok, links = await _accept(node, SyncResponse(blocks=tuple(blocks), commit_qc=qc, head_height=3))
    assert ok and not links.dropped
    assert node.storage.latest_height() == 3 and node.driver.exec is not None and node.driver.exec.height == 3
    assert node.storage.load_commit_qc() == qc
    await node.driver.stop()
    await node.storage.close()


@pytest.mark.parametrize("case", ["bad_signature", "wrong_signer_set", "too_few_signers", "wrong_epoch",
                                  "qc_for_another_block", "broken_hash_chain", "wrong_tx_root"])
async def test_a_block_that_does_not_verify_is_refused_the_peer_dropped_nothing_stored(
        node: InProcessNode, tmp_path: Path, case: str) -> None:
    signers = validator_signers(tmp_path)
    chain_id = node.driver.genesis.chain_id
    blocks = chain_of(node, 3, payloads={2: (b"tx-a",)})
    qc = certify(blocks[-1], signers, chain_id=chain_id, indexes=[0, 1, 2])
    expected = "bad_qc"
    if case == "bad_signature":
        bad = bytearray(qc.signatures[1])
        bad[0] ^= 1
        qc = msgspec.structs.replace(qc, signatures=(qc.signatures[0], bytes(bad), qc.signatures[2]))
    elif case == "wrong_signer_set":  # a quorum of keys, but not the validators' keys
        strangers = [crypto.Signer(bytes([i + 7]) * 32) for i in range(4)]
        qc = certify(blocks[-1], strangers, chain_id=chain_id, indexes=[0, 1, 2])
    elif case == "too_few_signers":
        qc = certify(blocks[-1], signers, chain_id=chain_id, indexes=[0, 1])
    elif case == "wrong_epoch":
        qc = certify(blocks[-1], signers, chain_id=chain_id, epoch=1, indexes=[0, 1, 2])
    elif case == "qc_for_another_block":
        qc = certify(blocks[1], signers, chain_id=chain_id, indexes=[0, 1, 2])
    elif case == "broken_hash_chain":
        header = msgspec.structs.replace(blocks[2].header, parent_qc=msgspec.structs.replace(
            blocks[2].header.parent_qc, vote_data=msgspec.structs.replace(
                blocks[2].header.parent_qc.vote_data, block_id=bytes(32))))
        blocks[2] = Block(header=header, payload=blocks[2].payload)
        qc = certify(blocks[-1], signers, chain_id=chain_id, indexes=[0, 1, 2])
        expected = "broken_chain"
    elif case == "wrong_tx_root":
        blocks[1] = Block(header=blocks[1].header, payload=(b"tx-b",))
        expected = "bad_tx_root"
    ok, links = await _accept(node, SyncResponse(blocks=tuple(blocks), commit_qc=qc, head_height=3))
    assert not ok
    assert links.dropped == [(PEER, "bad_block")]
    assert refused(node, expected) == 1
    assert node.storage.latest_height() == 0 and node.driver.exec is not None and node.driver.exec.height == 0
    await node.driver.stop()
    await node.storage.close()


async def test_the_follower_asks_its_upstream_for_what_it_announces_and_becomes_ready(
        node: InProcessNode, tmp_path: Path) -> None:
    signers = validator_signers(tmp_path)
    blocks = chain_of(node, 2)
    qc = certify(blocks[-1], signers, chain_id=node.driver.genesis.chain_id, indexes=[1, 2, 3])
    links = FakeLinks()
    follower = Follower(driver=node.driver, links=links)  # type: ignore[arg-type]
    links.follower = follower
    links.serve = SyncResponse(blocks=tuple(blocks), commit_qc=qc, head_height=2)
    follower.start()
    try:
        follower.on_head(PEER, Head(height=2))
        for _ in range(100):
            if follower.ready:
                break
            await asyncio.sleep(0.02)
        assert follower.ready and not node.driver.syncing
        assert node.storage.latest_height() == 2 and links.requests[0].from_height == 1
    finally:
        await follower.stop()
        await node.driver.stop()
        await node.storage.close()
