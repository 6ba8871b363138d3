"""node.chain.driver and node.chain.backend in-process: persist-before-send, execution pipeline, admission codes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consensus import actions as act
from consensus import codec
from consensus.core import genesis_qc
from consensus.types import (
    Block,
    BlockHeader,
    SafetyData,
    Timeout,
    TimeoutData,
    TimeoutMsg,
    payload_root,
)
from contracts.transactions import Transfer, Tx, sign_tx
from node.chain.admission import BoundedSet
from node.chain.driver import Driver
from node.chain.mempool import Mempool
from node.net.transport import FRAME_TXS
from node.ops.keys import load_key_file
from node.ops.metrics import NodeMetrics
from tests.unit.node_harness import RecordingTransport, make_node


class FakeCore:
    def __init__(self, qc: Any) -> None:
        self.high_qc = qc
        self.high_tc = None
        self.committed_height = 0
        self.last_voted_round = 0
        self.round = 1


@pytest.fixture
def node(tmp_path: Path) -> Any:
    n = make_node(tmp_path)
    return n.driver, n.backend, n.storage, n.accounts


def _transfer(accounts: dict[str, Any], chain_id: str, nonce: int, *, chain: str | None = None) -> bytes:
    key = load_key_file(accounts["consumer-1"]["key_file"])
    tx = Tx(chain_id=chain or chain_id, sender=key.address, public_key=key.public_key, nonce=nonce,
            expires_at_ms=int(time.time() * 1000) + 60_000,
            body=Transfer(to=accounts["consumer-2"]["address"], amount_u=5))
    return sign_tx(tx, key.signer)


async def test_safety_is_durable_before_the_vote_leaves(node: Any) -> None:
    driver, _backend, storage, _ = node
    log: list[str] = []
    driver.transport = RecordingTransport(log=log)
    driver.core = FakeCore(genesis_qc(driver.genesis_block))
    real_save = storage.save_safety

    async def slow_save(data: SafetyData, **kw: Any) -> None:
        await asyncio.sleep(0.05)
        await real_save(data, **kw)
        log.append("persisted")

    storage.save_safety = slow_save
    timeout = TimeoutMsg(timeout=Timeout(data=TimeoutData(epoch=0, round=1, high_qc_round=0), author=0,
                                         signature=bytes(64), high_qc=driver.core.high_qc),
                         sync=driver.core and _sync(driver))
    await driver._carry_out([act.PersistSafety(data=SafetyData(epoch=0, highest_timeout_round=1)),
                             act.Send(to=1, message=timeout)])
    assert log == ["persisted", "send"]
    assert storage.load_safety() == SafetyData(epoch=0, highest_timeout_round=1)
    await storage.close()


def _sync(driver: Driver) -> Any:
    from consensus.types import SyncInfo

    qc = genesis_qc(driver.genesis_block)
    return SyncInfo(high_qc=qc, high_commit_qc=qc)


async def test_admission_then_commit_then_status(node: Any) -> None:
    driver, backend, storage, accounts = node
    driver.transport = RecordingTransport()
    backend.transport = driver.transport
    chain_id = driver.genesis.chain_id
    good = _transfer(accounts, chain_id, 1)
    wrong_chain = _transfer(accounts, chain_id, 2, chain="other-chain")
    tampered = bytearray(_transfer(accounts, chain_id, 3))
    tampered[-1] ^= 1
    backend.start()
    try:
        results = await backend.submit([good, wrong_chain, bytes(tampered), b"\x00junk"])
        assert [r.code for r in results] == [None, "wrong_chain", "bad_signature", "malformed"]
        assert len(driver.mempool) == 1 and storage.load_journal() == [good]
        assert (await backend.tx_status(codec.digest(good))).status == "pending"  # type: ignore[union-attr]
        # Commit a block carrying it: executed, stored, out of the mempool and the journal.
        payload = (good,)
        qc = genesis_qc(driver.genesis_block)
        header = BlockHeader(epoch=0, round=1, height=1, parent_qc=qc, author=1,
                             timestamp_ms=driver.genesis.genesis_time_ms + 1, tx_root=payload_root(payload),
                             executed_height=0, executed_state_root=driver.exec.root)
        block = Block(header=header, payload=payload)
        driver._drop_committed_from_mempool((block,))
        await driver.execute_blocks([block], qc)
        found = await backend.tx_status(codec.digest(good))
        assert found is not None and found.status == "committed" and found.height == 1
        assert len(driver.mempool) == 0 and storage.load_journal() == []
        assert driver.exec.height == 1 and (await backend.block(1)).state_root == driver.exec.root  # type: ignore[union-attr]
        # Resubmitting a committed tx answers with its hash; a replayed nonce is stale.
        again = await backend.submit([good, _transfer(accounts, chain_id, 1)])
        assert [r.code for r in again] == [None, "stale_nonce"]
        # A proposal whose author executed height 1 to another root is not voted for.
        bad = BlockHeader(epoch=0, round=2, height=2, parent_qc=qc, author=2, timestamp_ms=header.timestamp_ms + 1,
                          tx_root=payload_root(()), executed_height=1, executed_state_root=bytes(32))
        assert driver.block_check(Block(header=bad)) is not None
        assert driver.metrics.state_root_mismatch._value.get() == 1
    finally:
        await backend.stop()
        await driver.stop()
        await storage.close()


async def test_restart_loads_the_latest_snapshot_and_replays_the_blocks_after_it(node: Any) -> None:
    import msgspec

    driver, _backend, storage, _ = node
    driver.config = msgspec.structs.replace(driver.config, snapshot_every_blocks=2)
    qc = genesis_qc(driver.genesis_block)
    blocks = []
    for height in (1, 2, 3):
        header = BlockHeader(epoch=0, round=height, height=height, parent_qc=qc, author=height % 4,
                             timestamp_ms=driver.genesis.genesis_time_ms + height, tx_root=payload_root(()),
                             executed_height=0, executed_state_root=bytes(32))
        blocks.append(Block(header=header))
    await driver.execute_blocks(blocks, qc)
    assert storage.latest_snapshot()[0] == 2  # type: ignore[index]
    root, credit = driver.exec.root, driver.exec.state.credit
    reloaded = Driver(config=driver.config, genesis=driver.genesis, signer=driver.signer, storage=storage,
                      mempool=Mempool(capacity=10, account_limit=10), metrics=NodeMetrics(),
                      verified=BoundedSet(10), admitted_at={})
    reloaded.load()  # snapshot at 2, then block 3 replayed
    assert (reloaded.exec.height, reloaded.exec.root, reloaded.exec.state.credit) == (3, root, credit)
    assert [s.round for s in reloaded.exec.history][-3:] == [1, 2, 3]
    await driver.stop()
    await storage.close()


async def test_catch_up_refuses_blocks_whose_payload_does_not_match_tx_root(node: Any) -> None:
    """A sync response whose block carries a payload other than the one its header
    commits to (``tx_root``) is refused before anything is executed."""
    from node.net.transport import SyncResponse

    driver, _backend, storage, _ = node
    assert driver.exec is not None
    parent = driver.exec.last_block
    proof = genesis_qc(driver.genesis_block)

    def response(payload: tuple[bytes, ...], claimed: tuple[bytes, ...]) -> SyncResponse:
        header = BlockHeader(epoch=parent.header.epoch, round=1, height=parent.height + 1, parent_qc=proof,
                             author=0, timestamp_ms=parent.header.timestamp_ms + 1, tx_root=payload_root(claimed),
                             executed_height=0, executed_state_root=bytes(32))
        return SyncResponse(blocks=(Block(header=header, payload=payload),), commit_qc=proof, head_height=1)

    assert "tx_root" in (driver._check_sync(response((b"garbage",), (b"tx",))) or "")
    # The same block with its real payload gets past that check (and fails on the QC here).
    assert "commit QC" in (driver._check_sync(response((b"tx",), (b"tx",))) or "")
    await storage.close()


async def test_a_newly_linked_peer_gets_what_this_node_accepted_and_has_not_committed(node: Any) -> None:
    """Gossip reaches only the peers linked at the time: transactions accepted while cut off
    (or re-admitted from the journal before links came up) go to each peer that links later,
    in gossip-sized batches; ones only relayed from peers, or already committed, do not."""
    driver, backend, storage, accounts = node
    transport = RecordingTransport()
    driver.transport = backend.transport = transport
    chain_id = driver.genesis.chain_id
    mine = [_transfer(accounts, chain_id, n) for n in range(1, 6)]
    backend.config = msgspec.structs.replace(backend.config, gossip_batch_txs=2)
    backend.start()
    try:
        assert [r.code for r in await backend.submit(mine)] == [None] * 5
        key = load_key_file(accounts["consumer-2"]["key_file"])
        relayed = sign_tx(Tx(chain_id=chain_id, sender=key.address, public_key=key.public_key, nonce=1,
                             expires_at_ms=int(time.time() * 1000) + 60_000,
                             body=Transfer(to=accounts["consumer-1"]["address"], amount_u=1)), key.signer)
        await backend.on_gossip(2, (relayed,))
        assert len(driver.mempool) == 6
        # The first transaction commits; the other four are still pending.
        qc = genesis_qc(driver.genesis_block)
        header = BlockHeader(epoch=0, round=1, height=1, parent_qc=qc, author=1,
                             timestamp_ms=driver.genesis.genesis_time_ms + 1, tx_root=payload_root((mine[0],)),
                             executed_height=0, executed_state_root=driver.exec.root)
        block = Block(header=header, payload=(mine[0],))
        driver._drop_committed_from_mempool((block,))
        await driver.execute_blocks([block], qc)

        assert backend.send_pending_to(3) == 4
        batches = [codec.decode(payload, tuple[bytes, ...]) for _peer, _kind, payload in transport.sent]
        assert {peer for peer, _, _ in transport.sent} == {3}
        assert {kind for _, kind, _ in transport.sent} == {FRAME_TXS}
        assert [len(b) for b in batches] == [2, 2]
        assert sorted(raw for b in batches for raw in b) == sorted(mine[1:])
    finally:
        await backend.stop()
        await driver.stop()
        await storage.close()


async def test_recent_blocks_are_bounded_in_bytes_as_well_as_in_count(node: Any) -> None:
    """Full blocks would keep ~1 GB alive at 1,024 of them: the cache also stops at
    RECENT_BLOCKS_BYTES, keeping at least RECENT_BLOCKS_MIN blocks."""
    from node.chain.payload import RECENT_BLOCKS_BYTES, RECENT_BLOCKS_MIN, block_bytes

    driver, _backend, storage, _accounts = node
    qc = genesis_qc(driver.genesis_block)
    big = bytes(2 * 1024 * 1024)
    try:
        for r in range(1, 41):
            header = BlockHeader(epoch=0, round=r, height=0, parent_qc=qc, author=1,
                                 timestamp_ms=driver.genesis.genesis_time_ms + r, tx_root=payload_root((big,)),
                                 executed_height=0, executed_state_root=driver.exec.root)
            driver._remember_block(Block(header=header, payload=(big,)))
        kept = list(driver.recent_blocks.values())
        assert len(kept) >= RECENT_BLOCKS_MIN
        assert sum(block_bytes(b) for b in kept) == driver._recent_bytes <= RECENT_BLOCKS_BYTES + block_bytes(kept[0])
        assert kept[-1].round == 40  # the newest stay
    finally:
        await driver.stop()
        await storage.close()


def test_status_names_the_validators_this_node_is_linked_to(node: Any) -> None:
    """/v1/status `peer_validators`: the transport's linked validator indices (none without one);
    the document's Status schema accepts the answer."""
    import msgspec

    from node.api.openapi import MarketInfo, Status

    driver, backend, _storage, _ = node
    assert backend.status()["peer_validators"] == [] and backend.status()["peers"] == 0
    driver.transport = backend.transport = RecordingTransport()
    status = backend.status()
    assert status["peer_validators"] == [1, 2, 3] and status["peers"] == 3
    market = {f: "" if f == "grid_operator" else 0 for f in MarketInfo.__struct_fields__}
    doc = {**status, "chain_id": "c", "node_id": 0, "node_name": "n", "role": "grid", "market": market}
    assert msgspec.convert(doc, Status, strict=False).peer_validators == (1, 2, 3)
