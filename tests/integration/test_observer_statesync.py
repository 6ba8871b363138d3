"""Process cluster: a new observer (``gridchain join`` home) with state sync on starts from a
certified snapshot served over its observer links, then follows new blocks.

Setup: a chain of a few thousand blocks is generated offline (``node.devnet.chaingen``: real
execution, real signed QCs) into the homes of a 4-validator network on 127.0.0.1; the
validators start, a member names the observer's node key on chain, and the observer starts
with ``GRIDCHAIN_STATE_SYNC=1`` (what ``gridchain node --state-sync`` sets).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contracts.transactions import SetNodeKey, Tx, sign_tx
from node.devnet import chaingen
from node.devnet.localnet import LocalNet, http_status
from node.ops.keys import load_key_file
from tests.integration.cluster_util import (
    Sender,
    all_committed,
    block_at,
    free_base_port,
    http_json,
    submit,
    tx_status,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("statesync"), pytest.mark.timeout(300)]

BLOCKS = 2_600
_RUN_CLI = "import sys; from node.cli import main; sys.exit(main())"


def _name_node_key(net: LocalNet, node_key: bytes) -> None:
    accounts = {a["name"]: a for a in json.loads((net.dir / "accounts.json").read_text())}
    key = load_key_file(accounts["retailer-1"]["key_file"])
    now = int(time.time() * 1000)
    raw = sign_tx(Tx(chain_id=net.network["chain_id"], sender=key.address, public_key=key.public_key, nonce=now,
                     expires_at_ms=now + 600_000, body=SetNodeKey(node_key=node_key)), key.signer)
    [tx_hash] = submit(net, 0, [raw])
    wait_until("set_node_key committed", lambda: tx_status(net, 0, tx_hash) == "committed", timeout_s=30)


def test_a_new_observer_state_syncs_and_follows(tmp_path: Path) -> None:
    out = tmp_path / "net"
    base = free_base_port()
    chaingen.generate(out, nodes=4, blocks=BLOCKS, interval_ms=50, base_port=base, accounts=8)
    asyncio.run(chaingen.build_chain(out, BLOCKS, homes=4))
    net = LocalNet(out)
    home = tmp_path / "observer"
    port = base + 290
    joined = subprocess.run(
        [sys.executable, "-c", _RUN_CLI, "join", "--genesis", str(out / "genesis.json"), "--peers",
         net.nodes[0]["p2p_url"] + "," + net.nodes[1]["p2p_url"], "--home", str(home),
         "--p2p-port", str(port), "--api-port", str(port + 1), "--metrics-port", str(port + 2)],
        capture_output=True, check=True)
    api = f"http://127.0.0.1:{port + 1}"
    observer: subprocess.Popen[bytes] | None = None
    try:
        net.start_all()
        net.wait_ready(timeout_s=60)
        _name_node_key(net, bytes.fromhex(json.loads(joined.stdout)["node_key"]))
        with open(home / "node.log", "ab") as log:
            observer = subprocess.Popen([sys.executable, "-c", _RUN_CLI, "node", "--home", str(home)],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, "GRIDCHAIN_STATE_SYNC": "1"})
        started = time.monotonic()
        wait_until("the observer is ready", lambda: http_status(api + "/readyz") == 200, timeout_s=90)
        ready_s = time.monotonic() - started
        text = (home / "node.log").read_text()
        assert "state sync: restored height" in text, text[-3000:]
        restored = int(text.split("state sync: restored height ")[1].split()[0])
        assert restored >= BLOCKS - 512 and restored % 256 == 0
        print(f"new observer ready by state sync from height {restored} in {ready_s:.1f} s")

        status, body = http_json(api + "/v1/status")
        assert status == 200 and body["node_role"] == "observer" and body["height"] > restored, body
        status, body = http_json(api + "/v1/blocks/5")
        assert status == 404 and body["error"]["code"] == "pruned", body
        status, body = http_json(api + f"/v1/blocks/{restored}")
        assert status == 404 and body["error"]["code"] == "pruned", body

        # New blocks: the observer follows them and agrees with the validators.
        sender = Sender(net)
        hashes = submit(net, 0, [sender.sign() for _ in range(5)])
        wait_until("transfers committed on the validators", lambda: all_committed(net, hashes, [0, 1, 2, 3]),
                   timeout_s=60)
        head = min(net.height(i) for i in range(4))

        def observer_block(height: int) -> dict[str, str] | None:
            code, block = http_json(api + f"/v1/blocks/{height}")
            return block if code == 200 else None

        for height in (restored + 1, head):
            theirs = [wait_until(f"block {height} on node {i}", lambda i=i, h=height: block_at(net, i, h),
                                 timeout_s=30) for i in range(4)]
            mine = wait_until(f"block {height} on the observer", lambda h=height: observer_block(h), timeout_s=30)
            assert len({b["block_id"] for b in [*theirs, mine]}) == 1, f"block ids differ at {height}"
            assert len({b["state_root"] for b in [*theirs, mine]}) == 1, f"state roots differ at {height}"
    finally:
        if observer is not None:
            observer.terminate()
            try:
                observer.wait(10)
            except subprocess.TimeoutExpired:
                observer.kill()
        net.stop_all()
