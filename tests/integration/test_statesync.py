"""Process cluster: a validator whose home was wiped comes back by state sync on a chain
of a few thousand blocks, then agrees with the others on new blocks and state roots.

Setup: the chain is generated offline (``node.devnet.chaingen``: real execution, real
signed QCs) into the four homes of a 4-validator network on 127.0.0.1; the network is
started, one validator is stopped, its data directory removed, and it is restarted
with ``GRIDCHAIN_STATE_SYNC=1`` (what ``gridchain node --state-sync`` sets).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from node.devnet import chaingen
from node.devnet.localnet import NODE_LOG, LocalNet
from tests.integration.cluster_util import (
    Sender,
    all_committed,
    block_at,
    free_base_port,
    http_json,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("statesync"), pytest.mark.timeout(300)]

BLOCKS = 2_600
VICTIM = 3


def test_a_wiped_validator_state_syncs_and_follows(tmp_path: Path) -> None:
    out = tmp_path / "net"
    chaingen.generate(out, nodes=4, blocks=BLOCKS, interval_ms=50, base_port=free_base_port(), accounts=8)
    asyncio.run(chaingen.build_chain(out, BLOCKS, homes=4))
    net = LocalNet(out)
    try:
        net.start_all()
        net.wait_ready(timeout_s=60)
        net.wait_height(BLOCKS + 3, timeout_s=60)
        net.stop(VICTIM)
        shutil.rmtree(net.home(VICTIM) / "data")
        net.env["GRIDCHAIN_STATE_SYNC"] = "1"
        started = time.monotonic()
        net.start(VICTIM)
        net.wait_ready([VICTIM], timeout_s=90)
        ready_s = time.monotonic() - started
        log = (net.home(VICTIM) / NODE_LOG).read_text()
        assert "state sync: restored height" in log, log[-3000:]
        restored = int(log.split("state sync: restored height ")[1].split()[0])
        assert restored >= BLOCKS - 512 and restored % 256 == 0
        print(f"wiped validator ready by state sync from height {restored} in {ready_s:.1f} s")

        # History below the snapshot is not there, and says so.
        status, body = http_json(net.api(VICTIM) + "/v1/blocks/5")
        assert status == 404 and body["error"]["code"] == "pruned", body

        # New transactions commit everywhere; new blocks and state roots agree.
        sender = Sender(net)
        hashes = submit(net, VICTIM, [sender.sign() for _ in range(5)])
        wait_until("transfers committed on every node", lambda: all_committed(net, hashes, [0, 1, 2, 3]),
                   timeout_s=60)
        head = min(net.height(i) for i in range(4))
        for height in (restored + 1, head):
            blocks = [wait_until(f"block {height} on node {i}", lambda i=i, h=height: block_at(net, i, h),
                                 timeout_s=30) for i in range(4)]
            assert len({b["block_id"] for b in blocks}) == 1, f"block ids differ at {height}"
            assert len({b["state_root"] for b in blocks}) == 1, f"state roots differ at {height}"
    finally:
        net.stop_all()
