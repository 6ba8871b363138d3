"""node.net.statesync: chunking, the offer and proof checks, and a restore between two
in-process nodes — accepted when everything verifies, refused with nothing stored when a
chunk, the root, the certificate or the size is wrong."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consensus import codec
from consensus.types import Block, QuorumCert
from contracts.state import checkpoint_root, decode_state, encode_state
from node.chain.admission import BoundedSet
from node.chain.driver import Driver
from node.chain.mempool import Mempool
from node.chain.storage import Storage
from node.devnet import chaingen
from node.net import snapshots as sp
from node.net.transport import FRAME_SYNC_REQUEST, FRAME_SYNC_RESPONSE, SyncRequest, SyncResponse
from node.ops.config import GENESIS_FILE, KEY_FILE, load_config
from node.ops.genesis import load_genesis
from node.ops.keys import load_key_file
from node.ops.metrics import NodeMetrics

CHAIN_BLOCKS = 300
SERVER, CLIENT = 0, 3


# ---------------------------------------------------------------------- pure checks
def _info(data: bytes, height: int = 256, **changes: Any) -> sp.SnapshotInfo:
    info = sp.SnapshotInfo(height=height, state_root=checkpoint_root(height, data), size=len(data),
                           chunk_hashes=sp.chunk_hashes(data), header=_header(height))
    return msgspec.structs.replace(info, **changes)


def _header(height: int) -> Any:
    from consensus.types import BlockHeader, VoteData

    qc = QuorumCert(vote_data=VoteData(epoch=0, round=height - 1, height=height - 1, block_id=bytes(32),
                                       parent_id=bytes(32), parent_round=height - 2))
    return BlockHeader(epoch=0, round=height, height=height, parent_qc=qc, author=0, timestamp_ms=1,
                       tx_root=bytes(32), executed_height=0, executed_state_root=bytes(32))


def test_chunks_cover_the_bytes_and_each_is_checked_for_length_and_hash() -> None:
    data = bytes(range(256)) * (sp.CHUNK_BYTES // 256) * 2 + b"tail"
    info = _info(data)
    assert len(info.chunk_hashes) == 3
    sp.check_offer(info)
    chunks = [data[i : i + sp.CHUNK_BYTES] for i in range(0, len(data), sp.CHUNK_BYTES)]
    assert b"".join(chunks) == data and len(chunks[-1]) == 4
    for index, chunk in enumerate(chunks):
        sp.check_chunk(info, index, chunk)
    sp.check_snapshot(info, data)
    with pytest.raises(sp.SnapshotRefused, match="advertised hash"):
        sp.check_chunk(info, 1, bytes([chunks[1][0] ^ 1]) + chunks[1][1:])
    with pytest.raises(sp.SnapshotRefused, match="bytes, expected"):
        sp.check_chunk(info, 2, chunks[2] + b"x")
    with pytest.raises(sp.SnapshotRefused, match="advertised state root"):
        sp.check_snapshot(msgspec.structs.replace(info, state_root=bytes(32)), data)


@pytest.mark.parametrize(("changes", "why"), [
    ({"height": 255}, "not a checkpoint"),
    ({"size": sp.MAX_CHUNKS * sp.CHUNK_BYTES + 1}, "oversized"),
    ({"size": 0}, "oversized"),
    ({"chunk_hashes": ()}, "chunk hashes for"),
    ({"chunk_hashes": (b"short",)}, "not 32 bytes"),
    ({"state_root": b"x"}, "does not fit"),
])
def test_offers_out_of_bounds_are_refused(changes: dict[str, Any], why: str) -> None:
    with pytest.raises(sp.SnapshotRefused, match=why):
        sp.check_offer(_info(b"state", **changes))


# ---------------------------------------------------------------------- two in-process nodes
@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-validator network whose first home holds a committed chain of CHAIN_BLOCKS blocks."""
    out = tmp_path_factory.mktemp("statesync") / "net"
    chaingen.generate(out, nodes=4, blocks=CHAIN_BLOCKS, interval_ms=50, base_port=7300, accounts=0)
    asyncio.run(chaingen.build_chain(out, CHAIN_BLOCKS, homes=1))
    return out


def _home(network: Path, index: int) -> Path:
    return Path(json.loads((network / "network.json").read_text())["nodes"][index]["home"])


def _client(network: Path, data_dir: Path, **config: Any) -> Driver:
    home = _home(network, CLIENT)
    node_config = msgspec.structs.replace(load_config(home, env={}), state_sync=True, **config)
    driver = Driver(config=node_config, genesis=load_genesis(home / GENESIS_FILE),
                    signer=load_key_file(home / KEY_FILE).signer, storage=Storage.open(data_dir),
                    mempool=Mempool(capacity=10, account_limit=10), metrics=NodeMetrics(),
                    verified=BoundedSet(100), admitted_at={})
    driver.load()
    return driver


Tamper = Callable[[int, Any], Any]
_TYPES: dict[int, Any] = {FRAME_SYNC_REQUEST: SyncRequest, FRAME_SYNC_RESPONSE: SyncResponse,
                          sp.FRAME_STATESYNC_REQUEST: sp.StateSyncRequest,
                          sp.FRAME_STATESYNC_RESPONSE: sp.StateSyncResponse}


class Wire:
    """Delivers frames between in-process drivers (decoded as the transport would), after
    the sender's ``tamper`` had its way with each one."""

    def __init__(self, me: int, nodes: dict[int, Driver], tamper: Tamper | None = None) -> None:
        self.me, self.nodes, self.tamper = me, nodes, tamper
        self.tasks: set[asyncio.Task[Any]] = set()

    def connected(self) -> list[int]:
        return sorted(p for p in self.nodes if p != self.me)

    def send(self, peer: int, kind: int, payload: bytes) -> bool:
        value = codec.decode(payload, _TYPES[kind])
        if self.tamper is not None:
            value = self.tamper(kind, value)
        target = self.nodes[peer]
        handler = {FRAME_SYNC_REQUEST: target.on_sync_request, FRAME_SYNC_RESPONSE: target.on_sync_response,
                   sp.FRAME_STATESYNC_REQUEST: target.on_statesync_request,
                   sp.FRAME_STATESYNC_RESPONSE: target.on_statesync_response}[kind]
        asyncio.get_running_loop().call_soon(self._run, handler, value)
        return True

    def _run(self, handler: Any, value: Any) -> None:
        result = handler(self.me, value)
        if asyncio.iscoroutine(result):
            task = asyncio.get_running_loop().create_task(result)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def broadcast(self, kind: int, payload: bytes) -> None:
        for peer in self.connected():
            self.send(peer, kind, payload)


async def _pair(network: Path, tmp_path: Path, tamper: Tamper | None = None) -> tuple[Driver, Driver]:
    server = chaingen.open_driver(_home(network, SERVER))
    client = _client(network, tmp_path / "client")
    nodes = {SERVER: server, CLIENT: client}
    server.transport = Wire(SERVER, nodes, tamper)
    client.transport = Wire(CLIENT, nodes)
    return server, client


async def _close(*drivers: Driver) -> None:
    for driver in drivers:
        await driver.stop()
        await driver.storage.close()


def _nothing_stored(client: Driver) -> None:
    assert client.exec is not None and client.exec.height == 0
    assert client.storage.latest_height() == 0 and client.storage.latest_snapshot() is None
    assert client.storage.load_meta(sp.BASE_KEY) is None and client.storage.load_commit_qc() is None


async def test_a_fresh_node_restores_a_certified_snapshot_and_serves_it(network: Path, tmp_path: Path) -> None:
    server, client = await _pair(network, tmp_path)
    assert server.storage.checkpoints()[0][0] == 256
    assert await client._state_sync() is True
    assert client.exec is not None and server.exec is not None
    head = client.exec.height
    assert 256 < head <= CHAIN_BLOCKS
    assert client.exec.root == server.storage.block(head).state_root  # type: ignore[union-attr]
    assert encode_state(client.exec.state) == encode_state(_replayed(server, head))
    assert client.storage.first_height() == 257 and client.pruned_height() == 256
    assert client.storage.checkpoints()[0][:2] == server.storage.checkpoints()[0][:2]
    assert client.storage.load_commit_qc() is not None
    # What was stored loads again after a restart ...
    again = _client(network, tmp_path / "client-again")
    await again.storage.close()
    reloaded = Driver(config=client.config, genesis=client.genesis, signer=client.signer, storage=client.storage,
                      mempool=Mempool(capacity=10, account_limit=10), metrics=NodeMetrics(),
                      verified=BoundedSet(10), admitted_at={})
    reloaded.load()
    assert reloaded.exec is not None and (reloaded.exec.height, reloaded.exec.root) == (head, client.exec.root)
    assert reloaded.exec.last_block_id == client.exec.last_block_id
    # ... the sync protocol refuses to serve below the snapshot, and the snapshot is offered on.
    got: list[Any] = []
    client.transport = type("T", (), {"send": lambda self, p, k, payload: got.append(payload) or True})()
    client.on_sync_request(SERVER, SyncRequest(from_height=10, count=5))
    assert codec.decode(got[-1], SyncResponse).blocks == ()
    await client._offer(SERVER, client.transport.send)
    offered = codec.decode(got[-1], sp.SnapshotList).snapshots
    assert offered and offered[0].height == 256 and offered[0].header.height == 256
    reloaded.exec_pool.shutdown(wait=True)
    await _close(server, client)


def _replayed(server: Driver, height: int) -> Any:
    """The server's state at ``height``: its checkpoint snapshot plus the blocks after it."""
    from contracts.executor import apply_block
    from node.chain.execution import block_input

    snap = next(s for s in server.storage.checkpoints() if s[0] <= height)
    state = decode_state(server.storage.snapshot_slice(snap[0], 0, snap[2]) or b"")
    state.root = snap[1]
    for stored in server.storage.blocks_range(snap[0] + 1, height):
        apply_block(state, block_input(codec.decode(stored.block_bytes, Block)))
    return state


def _flip_chunk(kind: int, value: Any) -> Any:
    if isinstance(value, sp.Chunk) and value.data:
        return msgspec.structs.replace(value, data=bytes([value.data[0] ^ 1]) + value.data[1:])
    return value


def _wrong_root(kind: int, value: Any) -> Any:
    if isinstance(value, sp.SnapshotList):
        return sp.SnapshotList(snapshots=tuple(msgspec.structs.replace(i, state_root=bytes(32))
                                               for i in value.snapshots))
    return value


def _oversized(kind: int, value: Any) -> Any:
    if isinstance(value, sp.SnapshotList):
        return sp.SnapshotList(snapshots=tuple(
            msgspec.structs.replace(i, size=(sp.MAX_CHUNKS + 1) * sp.CHUNK_BYTES,
                                    chunk_hashes=(bytes(32),) * (sp.MAX_CHUNKS + 1)) for i in value.snapshots))
    return value


def _bad_commit_qc(kind: int, value: Any) -> Any:
    if isinstance(value, SyncResponse) and value.commit_qc is not None:
        qc = value.commit_qc
        forged = msgspec.structs.replace(qc, signatures=(bytes(64), *qc.signatures[1:]))
        return msgspec.structs.replace(value, commit_qc=forged)
    return value


class _ForgedState:
    """Serves a different state (a balance doubled) whose offer is consistent with itself:
    chunk hashes and root recomputed from the forged bytes — but that root is not certified."""

    def __init__(self) -> None:
        self.data = b""

    def __call__(self, kind: int, value: Any) -> Any:
        if isinstance(value, sp.SnapshotList):
            info = value.snapshots[0]
            real = _SERVER_BYTES[info.height]
            state = decode_state(real)
            address, account = next(iter(state.accounts.items()))
            state.accounts[address] = msgspec.structs.replace(account, balance_u=account.balance_u * 2 + 1)
            self.data = encode_state(state)
            return sp.SnapshotList(snapshots=(msgspec.structs.replace(
                info, state_root=checkpoint_root(info.height, self.data), size=len(self.data),
                chunk_hashes=sp.chunk_hashes(self.data)),))
        if isinstance(value, sp.Chunk):
            start = value.index * sp.CHUNK_BYTES
            return msgspec.structs.replace(value, data=self.data[start : start + sp.CHUNK_BYTES])
        return value


_SERVER_BYTES: dict[int, bytes] = {}


@pytest.mark.parametrize(("tamper", "why"), [
    (_flip_chunk, "chunk 0 does not match its advertised hash"),
    (_wrong_root, "not the certified one"),
    (_oversized, "oversized"),
    (_bad_commit_qc, "bad commit QC"),
    (_ForgedState, "not the certified one"),
], ids=["bad_chunk", "wrong_root", "oversized", "uncertified_block", "forged_state"])
async def test_a_bad_snapshot_is_refused_and_nothing_is_stored(
        network: Path, tmp_path: Path, tamper: Any, why: str, caplog: pytest.LogCaptureFixture) -> None:
    server, client = await _pair(network, tmp_path)
    for height, _root, size in server.storage.checkpoints():
        _SERVER_BYTES[height] = server.storage.snapshot_slice(height, 0, size) or b""
    server.transport.tamper = tamper() if isinstance(tamper, type) else tamper
    with caplog.at_level("WARNING", logger="gridchain.statesync"):
        assert await client._state_sync() is False
    assert why in caplog.text and "refused" in caplog.text
    assert client.metrics.dropped.labels(reason="bad_snapshot")._value.get() == 1
    _nothing_stored(client)
    await _close(server, client)


async def test_a_later_certified_root_is_checked_by_executing_up_to_it(network: Path, tmp_path: Path) -> None:
    """A proof block may name an executed height above the snapshot's: the restored state
    executes the blocks up to it and must reach that height's certified root."""
    server, client = await _pair(network, tmp_path)
    height, root, size = server.storage.checkpoints()[0]
    data = server.storage.snapshot_slice(height, 0, size) or b""
    header = codec.decode(server.storage.block(height).block_bytes, Block).header  # type: ignore[union-attr]
    info = sp.SnapshotInfo(height=height, state_root=root, size=size, chunk_hashes=sp.chunk_hashes(data),
                           header=header)
    blocks = [codec.decode(b.block_bytes, Block) for b in server.storage.blocks_range(height + 1, 290)]
    found = server.storage.commit_qc_at_or_above(290)
    assert found is not None
    blocks += [codec.decode(b.block_bytes, Block) for b in server.storage.blocks_range(291, found[0])]
    later = server.storage.block(280)
    assert later is not None
    with pytest.raises(sp.SnapshotRefused, match="height 280 is not the certified one"):
        await client._install(info, data, blocks, found[1], [(1, 280, bytes(32))])
    _nothing_stored(client)
    assert await client._install(info, data, blocks, found[1], [(1, 280, later.state_root)]) == len(blocks)
    assert client.exec is not None and client.exec.height == found[0]
    assert client.storage.block(found[0]).state_root == server.storage.block(found[0]).state_root  # type: ignore[union-attr]
    await _close(server, client)


async def test_without_an_offer_the_node_replays_from_genesis(network: Path, tmp_path: Path) -> None:
    server, client = await _pair(network, tmp_path)
    server.config = msgspec.structs.replace(server.config)
    client.config = msgspec.structs.replace(client.config, state_sync=False)
    assert await client._state_sync() is False  # disabled: not even asked
    client.config = msgspec.structs.replace(client.config, state_sync=True)
    empty = _client(network, tmp_path / "empty-server")
    client.transport = Wire(CLIENT, {SERVER: empty, CLIENT: client})
    empty.transport = Wire(SERVER, {SERVER: empty, CLIENT: client})
    assert await client._state_sync() is False  # the peer has no snapshot
    _nothing_stored(client)
    await _close(server, client, empty)


def test_claims_count_only_when_f_plus_one_proposers_make_them() -> None:
    root = bytes(32)
    assert not sp.vouched([(2, 256, root)] * 10, f=1)  # one proposer, however often: maybe the Byzantine one
    assert sp.vouched([(2, 256, root), (0, 257, root)], f=1)
    assert sp.vouched([(0, 256, root)], f=0)


async def test_garbage_state_sync_frames_are_dropped_at_the_edge() -> None:
    from consensus import crypto
    from node.net.transport import PeerLink, Transport
    from node.ops.config import NodeConfig

    seen: list[Any] = []
    dropped: list[str] = []
    transport = Transport(
        config=NodeConfig(name="n0", role="grid", node_id=0), chain_id="c", signer=crypto.Signer(bytes(32)),
        validator_keys=[], validate=lambda m, s: None, on_consensus=lambda p, v: None, on_txs=lambda p, v: None,
        on_sync_request=lambda p, v: None, on_sync_response=lambda p, v: None, drop_counter=dropped.append,
        extra_frames={sp.FRAME_STATESYNC_REQUEST: (sp.StateSyncRequest, lambda p, v: seen.append(v)),
                      sp.FRAME_STATESYNC_RESPONSE: (sp.StateSyncResponse, lambda p, v: seen.append(v))},
    )
    link = PeerLink(node_id=1, ws=None)
    for frame in (b"\x05garbage", b"\x06" + codec.encode({"chunk": 1}),
                  b"\x06" + codec.encode(sp.GetChunk(256, 0))):
        await transport._on_frame(link, frame)
    assert seen == [] and dropped == ["malformed"] * 3 and link.bad_frames == 3
    await transport._on_frame(link, bytes([sp.FRAME_STATESYNC_REQUEST]) + codec.encode(sp.GetChunk(256, 0)))
    assert seen == [sp.GetChunk(256, 0)]


def test_state_sync_is_off_by_default_and_set_by_the_environment(network: Path) -> None:
    from node.ops.config import ConfigError

    home = _home(network, CLIENT)
    assert load_config(home, env={}).state_sync is False
    assert load_config(home, env={"GRIDCHAIN_STATE_SYNC": "1"}).state_sync is True
    assert load_config(home, env={"GRIDCHAIN_STATE_SYNC": "false"}).state_sync is False
    with pytest.raises(ConfigError, match="GRIDCHAIN_STATE_SYNC"):
        load_config(home, env={"GRIDCHAIN_STATE_SYNC": "maybe"})
