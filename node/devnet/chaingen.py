"""Offline chain generation: a long committed chain for a generated network, built without
running consensus, for measurements (state sync vs replay) and tests.

Every block is what a live network would commit: signed transfers between the network's
accounts, real ``QuorumCert``s signed with the validators' keys, an ``executed_state_root``
its author had executed, executed and stored by the node's own execution pipeline
(``contracts.apply_block``, ``Storage.store_committed``). The chain is built in the first
home and its database copied into the others; the block after the last committed one is
saved as pending in every home, so the network resumes on top of it when started.

``python -m node.devnet.chaingen --out DIR --blocks N [--nodes 4] [--homes 3]`` generates
the network in ``DIR`` with its genesis time far enough in the past, builds ``N`` blocks
into the first ``--homes`` validator homes and leaves the others empty. ``--measure``
(or ``--measure-only`` on an existing ``DIR``) then starts the other nodes and times the
last one, from an empty data directory to ``/readyz`` 200, with state sync and with
replay from genesis (``docs/STATESYNC.md``). With ``--observer`` the timed node is a new
observer (a ``gridchain join`` home following validators 0 and 1 over observer links,
its node key named on chain first) while every validator runs (``docs/OBSERVERS.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from consensus import codec, crypto
from consensus.types import Block, BlockHeader, QuorumCert, VoteData, block_id, payload_root
from contracts.transactions import Transfer, Tx, sign_tx
from node.chain.admission import BoundedSet
from node.chain.driver import Driver
from node.chain.mempool import Mempool
from node.chain.storage import DB_FILE, Storage
from node.devnet.localnet import NODE_LOG, LocalNet, http_get_json, http_status
from node.ops import genesis as gen
from node.ops.config import GENESIS_FILE, KEY_FILE, data_path, load_config
from node.ops.keys import load_key_file
from node.ops.metrics import NodeMetrics

BATCH = 64
"""Blocks executed and stored per SQLite transaction (as the execution pipeline batches)."""


def sign_qc(vote_data: VoteData, signers: Sequence[crypto.Signer], chain_id: str) -> QuorumCert:
    message = codec.encode(vote_data)
    return QuorumCert(vote_data=vote_data, signers=tuple(range(len(signers))), signatures=tuple(
        s.sign(chain_id=chain_id, kind=crypto.KIND_VOTE, message=message) for s in signers))


class ChainBuilder:
    """Builds blocks on top of a driver's executed state (one home of the network)."""

    def __init__(self, driver: Driver, signers: Sequence[crypto.Signer], senders: Sequence[Any],
                 *, interval_ms: int, txs_per_block: int) -> None:
        self.driver = driver
        self.signers = list(signers)
        self.senders = list(senders)
        self.nonces = [0] * len(senders)
        self.interval_ms = interval_ms
        self.txs_per_block = txs_per_block
        assert driver.exec is not None
        self.parent = driver.exec.last_block
        self.parent_qc = driver.storage.load_commit_qc() or QuorumCert(vote_data=VoteData(
            epoch=0, round=0, height=0, block_id=block_id(self.parent.header),
            parent_id=block_id(self.parent.header), parent_round=0))
        if self.parent.height > 0:  # resume: the certified child of the head was saved as pending
            pending = driver.storage.load_pending_blocks(self.parent.height)
            assert pending, "no pending child of the stored head"
            self._next: Block | None = pending[0]
        else:
            self._next = None

    def _txs(self, height: int, timestamp_ms: int) -> tuple[bytes, ...]:
        out = []
        for i in range(self.txs_per_block):
            k = (height * self.txs_per_block + i) % len(self.senders)
            sender, to = self.senders[k], self.senders[(k + 1) % len(self.senders)]
            self.nonces[k] += 1
            tx = Tx(chain_id=self.driver.genesis.chain_id, sender=sender.address, public_key=sender.public_key,
                    nonce=self.nonces[k], expires_at_ms=timestamp_ms + 60_000,
                    body=Transfer(to=to.address, amount_u=1))
            out.append(sign_tx(tx, sender.signer))
        return tuple(out)

    def _block(self, parent: Block, parent_qc: QuorumCert) -> Block:
        exec_ = self.driver.exec
        assert exec_ is not None
        height = parent.height + 1
        timestamp = self.driver.genesis.genesis_time_ms + height * self.interval_ms
        payload = self._txs(height, timestamp)
        header = BlockHeader(epoch=0, round=height, height=height, parent_qc=parent_qc,
                             author=height % len(self.signers), timestamp_ms=timestamp,
                             tx_root=payload_root(payload), executed_height=exec_.height,
                             executed_state_root=exec_.root)
        return Block(header=header, payload=payload)

    def _certify(self, block: Block) -> QuorumCert:
        data = VoteData(epoch=0, round=block.round, height=block.height, block_id=block_id(block.header),
                        parent_id=block.parent_id, parent_round=block.header.parent_qc.round)
        return sign_qc(data, self.signers, self.driver.genesis.chain_id)

    async def extend(self, count: int) -> None:
        """Commit ``count`` more blocks (in batches, each with its commit QC)."""
        done = 0
        while done < count:
            batch: list[Block] = []
            parent, qc = self.parent, self.parent_qc
            for _ in range(min(BATCH, count - done)):
                block = self._next if self._next is not None else self._block(parent, qc)
                self._next = None
                batch.append(block)
                parent, qc = block, self._certify(block)
            child = self._block(parent, qc)  # its QC commits the batch (a 2-chain)
            commit_qc = self._certify(child)
            await self.driver.execute_blocks(batch, commit_qc)
            assert self.driver.halted is None, self.driver.halted
            self.parent, self.parent_qc, self._next = parent, qc, child
            done += len(batch)
        assert self._next is not None
        await self.driver.storage.save_pending_block(self._next, block_id(self._next.header))


def open_driver(home: Path) -> Driver:
    config = load_config(home, env={})
    genesis = gen.load_genesis(home / GENESIS_FILE)
    storage = Storage.open(data_path(home, config))
    driver = Driver(config=config, genesis=genesis, signer=load_key_file(home / KEY_FILE).signer, storage=storage,
                    mempool=Mempool(capacity=10, account_limit=10), metrics=NodeMetrics(),
                    verified=BoundedSet(10), admitted_at={})
    driver.load()
    return driver


async def build_chain(net_dir: Path, blocks: int, *, homes: int, txs_per_block: int = 2, interval_ms: int = 50,
                      progress: Callable[[int], None] | None = None) -> None:
    """Commit ``blocks`` more blocks into the first ``homes`` validator homes of ``net_dir``."""
    network = json.loads((net_dir / "network.json").read_text())
    node_homes = [Path(n["home"]) for n in network["nodes"]]
    signers = [load_key_file(h / KEY_FILE).signer for h in node_homes]
    accounts = json.loads((net_dir / "accounts.json").read_text())
    # The bench accounts when there are any (the demo accounts stay untouched for live tests).
    wanted = [a for a in accounts if a["name"].startswith("bench-")] or [
        a for a in accounts if a["role"] in ("consumer", "prosumer")]
    senders = [load_key_file(Path(a["key_file"])) for a in wanted]
    driver = open_driver(node_homes[0])
    builder = ChainBuilder(driver, signers, senders, interval_ms=interval_ms, txs_per_block=txs_per_block)
    step = 1_000
    for first in range(0, blocks, step):
        await builder.extend(min(step, blocks - first))
        if progress is not None:
            progress(first + min(step, blocks - first))
    await driver.stop()
    await driver.storage.close()
    source = data_path(node_homes[0], driver.config) / DB_FILE
    with sqlite3.connect(source) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for home in node_homes[1:homes]:
        target = data_path(home, load_config(home, env={}))
        safety = Storage.open(target)
        saved = safety.load_safety()
        await safety.close()
        shutil.rmtree(target)
        target.mkdir(parents=True)
        shutil.copyfile(source, target / DB_FILE)
        if saved is not None:  # each validator keeps its own safety data
            conn = sqlite3.connect(target / DB_FILE)
            with conn:
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('safety', ?)", (codec.encode(saved),))
            conn.close()
    for home in node_homes[homes:]:
        shutil.rmtree(data_path(home, load_config(home, env={})), ignore_errors=True)


def generate(out: Path, *, nodes: int, blocks: int, interval_ms: int, base_port: int, accounts: int) -> None:
    """A fresh network whose genesis lies ``blocks * interval_ms`` (plus a minute) in the past."""
    genesis_time = int(time.time() * 1000) - blocks * interval_ms - 60_000
    gen.generate_network(out, nodes=gen.parse_nodes(str(nodes)), base_port=base_port, slot_ms=60_000,
                         chain_id="gridchain-statesync", genesis_time_ms=genesis_time, bench_accounts=accounts,
                         force=True)


def time_new_node(net_dir: Path, *, node: int, state_sync: bool, timeout_s: float = 7_200.0) -> dict[str, Any]:
    """Start the network's other nodes (if not running), then node ``node`` from an empty data
    directory, with or without state sync; the seconds until its ``/readyz`` answers 200."""
    net = LocalNet(net_dir, env={"GRIDCHAIN_STATE_SYNC": "1" if state_sync else "0"})
    others = [i for i in range(len(net.nodes)) if i != node]
    try:
        for i in others:
            net.start(i)
        net.wait_ready(others, timeout_s=600)
        shutil.rmtree(net.home(node) / "data", ignore_errors=True)
        head = max(net.height(i) for i in others)
        started = time.monotonic()
        net.start(node)
        net.wait_ready([node], timeout_s=timeout_s)
        seconds = time.monotonic() - started
        return {"state_sync": state_sync, "chain_height": head, "ready_s": round(seconds, 1),
                "height_when_ready": net.height(node)}
    finally:
        net.stop_all()


_RUN_CLI = "import sys; from node.cli import main; sys.exit(main())"


def _tx_status(url: str) -> str | None:
    try:
        return http_get_json(url).get("status")  # type: ignore[no-any-return]
    except OSError:  # 404 until it is known
        return None


def time_new_observer(net_dir: Path, *, state_sync: bool, timeout_s: float = 7_200.0) -> dict[str, Any]:
    """Start every validator, then a new observer from an empty data directory, with or
    without state sync; the seconds until its ``/readyz`` answers 200."""
    import os
    import subprocess
    import sys
    import urllib.request

    from contracts.transactions import SetNodeKey
    from node.ops.observers import create_observer_home

    net = LocalNet(net_dir)
    home, port = Path(net_dir) / "observer", int(net.nodes[0]["p2p_url"].rsplit(":", 1)[1].split("/")[0]) + 90
    made = create_observer_home(home, genesis_json=(Path(net_dir) / "genesis.json").read_bytes(), name="observer",
                                peers=[net.nodes[0]["p2p_url"], net.nodes[1]["p2p_url"]], p2p_port=port,
                                api_port=port + 1, metrics_port=port + 2, force=True)
    shutil.rmtree(home / "data", ignore_errors=True)
    proc = None
    try:
        net.start_all()
        net.wait_ready(timeout_s=600)
        accounts = {a["name"]: a for a in json.loads((Path(net_dir) / "accounts.json").read_text())}
        key = load_key_file(accounts["retailer-1"]["key_file"])
        now = int(time.time() * 1000)
        raw = sign_tx(Tx(chain_id=net.network["chain_id"], sender=key.address, public_key=key.public_key,
                         nonce=now, expires_at_ms=now + 600_000,
                         body=SetNodeKey(node_key=bytes.fromhex(made["node_key"]))), key.signer)
        request = urllib.request.Request(net.api(0) + "/v1/transactions", data=json.dumps({"raw": raw.hex()}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            tx_hash = json.loads(response.read())["tx_hash"]
        while _tx_status(f"{net.api(0)}/v1/transactions/{tx_hash}") not in ("committed", "failed"):
            time.sleep(0.2)
        head = max(net.height(i) for i in net.validators())
        started = time.monotonic()
        with open(home / NODE_LOG, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-c", _RUN_CLI, "node", "--home", str(home)], stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "GRIDCHAIN_STATE_SYNC": "1" if state_sync else "0"})
        api = f"http://127.0.0.1:{port + 1}"
        while http_status(api + "/readyz") != 200:
            if time.monotonic() - started > timeout_s or proc.poll() is not None:
                raise TimeoutError(f"the observer is not ready after {time.monotonic() - started:.0f} s")
            time.sleep(0.2)
        seconds = time.monotonic() - started
        return {"node": "observer", "state_sync": state_sync, "chain_height": head, "ready_s": round(seconds, 1),
                "height_when_ready": http_get_json(api + "/v1/status")["height"]}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        net.stop_all()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.devnet.chaingen", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--blocks", type=int, default=0)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--homes", type=int, default=3, help="homes that get the chain (the rest stay empty)")
    parser.add_argument("--txs-per-block", type=int, default=2)
    parser.add_argument("--accounts", type=int, default=200, help="funded bench accounts in genesis")
    parser.add_argument("--interval-ms", type=int, default=50, help="block time step")
    parser.add_argument("--base-port", type=int, default=7100)
    parser.add_argument("--measure", action="store_true",
                        help="then time a new node (the last one) with state sync and with replay")
    parser.add_argument("--measure-only", action="store_true", help="time an already generated --out")
    parser.add_argument("--observer", action="store_true", help="time a new observer instead of the last node")
    args = parser.parse_args(argv)

    def measure() -> None:
        for state_sync in (True, False):
            result = (time_new_observer(args.out, state_sync=state_sync) if args.observer
                      else time_new_node(args.out, node=args.nodes - 1, state_sync=state_sync))
            print(json.dumps(result), flush=True)

    if args.measure_only:
        measure()
        return 0
    if args.blocks < 1:
        parser.error("--blocks N (N >= 1) is needed unless --measure-only")
    generate(args.out, nodes=args.nodes, blocks=args.blocks, interval_ms=args.interval_ms,
             base_port=args.base_port, accounts=args.accounts)
    started = time.monotonic()

    def say(done: int) -> None:
        print(f"{done} blocks committed ({time.monotonic() - started:.0f} s)", flush=True)

    asyncio.run(build_chain(args.out, args.blocks, homes=args.homes, txs_per_block=args.txs_per_block,
                            interval_ms=args.interval_ms, progress=say))
    print(json.dumps({"blocks": args.blocks, "seconds": round(time.monotonic() - started, 1),
                      "homes_with_chain": args.homes}), flush=True)
    if args.measure:
        measure()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
