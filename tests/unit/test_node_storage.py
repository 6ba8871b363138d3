"""node.chain.storage: durable safety data, journal, committed blocks, snapshots."""

from __future__ import annotations

from pathlib import Path

from consensus import codec
from consensus.types import Block, BlockHeader, QuorumCert, SafetyData, VoteData
from node.chain.storage import BlockRecord, Storage


def _block(height: int, payload: tuple[bytes, ...] = ()) -> Block:
    qc = QuorumCert(vote_data=VoteData(epoch=0, round=height - 1, height=height - 1,
                                       block_id=bytes(32), parent_id=bytes(32), parent_round=0))
    header = BlockHeader(epoch=0, round=height, height=height, parent_qc=qc, author=0, timestamp_ms=height,
                         tx_root=bytes(32), executed_height=0, executed_state_root=bytes(32))
    return Block(header=header, payload=payload)


def _record(block: Block) -> BlockRecord:
    return BlockRecord(block=block, block_bytes=codec.encode(block), block_id=codec.digest_of(block.header),
                       state_root=bytes([block.height]) * 32, receipts_root=bytes(32), receipts_bytes=b"r",
                       tx_results=[(codec.digest(tx), "ok", True) for tx in block.payload])


async def test_safety_data_survives_reopen(tmp_path: Path) -> None:
    store = Storage.open(tmp_path)
    assert store.load_safety() is None
    await store.save_safety(SafetyData(epoch=0, last_voted_round=7, one_chain_round=6))
    await store.close()
    store = Storage.open(tmp_path)
    assert store.load_safety() == SafetyData(epoch=0, last_voted_round=7, one_chain_round=6)
    await store.close()


async def test_journal_keeps_order_until_block_commits_the_tx(tmp_path: Path) -> None:
    store = Storage.open(tmp_path)
    txs = [b"tx-a", b"tx-b", b"tx-c"]
    await store.journal_add([(codec.digest(t), t) for t in txs])
    await store.journal_add([(codec.digest(txs[0]), txs[0])])  # duplicate is ignored
    assert store.load_journal() == txs
    block = _block(1, payload=(b"tx-b",))
    await store.store_committed([_record(block)], commit_qc=block.header.parent_qc)
    await store.close()
    store = Storage.open(tmp_path)
    assert store.load_journal() == [b"tx-a", b"tx-c"]
    loc = store.tx_location(codec.digest(b"tx-b"))
    assert loc is not None and (loc.height, loc.index, loc.code) == (1, 0, "ok")
    assert store.tx_location(codec.digest(b"tx-a")) is None
    await store.close()


async def test_blocks_index_and_snapshots_are_bounded(tmp_path: Path) -> None:
    store = Storage.open(tmp_path)
    for h in range(1, 6):
        block = _block(h, payload=(f"t{h}".encode(),))
        await store.store_committed([_record(block)], commit_qc=block.header.parent_qc,
                                    snapshot=(h, f"state{h}".encode(), bytes(32)))
    assert store.latest_height() == 5
    stored = store.block(3)
    assert stored is not None and codec.decode(stored.block_bytes, Block) == _block(3, payload=(b"t3",))
    assert store.height_of(stored.block_id) == 3
    assert [b.height for b in store.blocks_range(2, 4)] == [2, 3, 4]
    assert store.latest_snapshot() == (5, b"state5", bytes(32))
    assert store.receipts(5) == b"r"
    assert set(store.tx_locations([codec.digest(b"t1"), codec.digest(b"zz")])) == {codec.digest(b"t1")}
    assert store.load_commit_qc() == _block(5).header.parent_qc
    await store.close()


async def test_tx_index_keeps_the_inclusion_that_counted(tmp_path: Path) -> None:
    """The same raw tx included three times: first not counted (sender not yet active),
    then counted (failed, nonce used up), then replayed (stale, not counted). The index
    shows the counted one; a hash that never counted keeps its first inclusion."""
    store = Storage.open(tmp_path)
    h, other = codec.digest(b"tx"), codec.digest(b"never")

    def record(height: int, results: list[tuple[bytes, str, bool]]) -> BlockRecord:
        block = _block(height)
        return BlockRecord(block=block, block_bytes=codec.encode(block), block_id=codec.digest_of(block.header),
                           state_root=bytes(32), receipts_root=bytes(32), receipts_bytes=b"r",
                           tx_results=results)

    await store.store_committed([record(1, [(h, "not_registered", False), (other, "bad_signature", False)])],
                                commit_qc=None)
    await store.store_committed([record(2, [(other, "bad_signature", False), (h, "insufficient_balance", True)]),
                                 record(3, [(h, "stale_nonce", False)])], commit_qc=None)
    loc = store.tx_location(h)
    assert loc is not None and (loc.height, loc.index, loc.code) == (2, 1, "insufficient_balance")
    first = store.tx_location(other)
    assert first is not None and (first.height, first.code) == (1, "bad_signature")
    await store.close()
