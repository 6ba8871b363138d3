"""Process cluster under load: a validator killed while blocks carry thousands of transactions
restarts and catches up (byte-bounded sync of large blocks), and every accepted tx commits once.

Setup: 4 validators, 128 funded accounts, pre-signed transfers offered as fast as the cluster
accepts them through the batched submit endpoint (the same load as ``gridchain bench``).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from node.cli.bench import _offer, _presign
from node.devnet.localnet import LocalNet
from node.ops import genesis as gen
from tests.integration.cluster_util import assert_same_chain, free_base_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster_load"), pytest.mark.timeout(300)]


def test_validator_killed_under_load_catches_up_and_nothing_is_lost(tmp_path: Path) -> None:
    out = tmp_path / "net"
    gen.generate_network(out, nodes=gen.parse_nodes("4"), base_port=free_base_port(), slot_ms=60_000,
                         chain_id="gridchain-load", demo_accounts=False, bench_accounts=128)
    accounts = [a for a in json.loads((out / "accounts.json").read_text()) if a["name"].startswith("bench-")]
    per_node = _presign(out, accounts, 24_000, 4, "gridchain-load")
    per_node[3] = []  # the victim's clients stay away while it is down
    net = LocalNet(out)
    net.start_all()
    try:
        net.wait_ready(timeout_s=60)
        sent: dict[bytes, float] = {}
        rejected = [0]
        urls = [n["api_url"] for n in net.nodes]
        loader = threading.Thread(target=lambda: asyncio.run(
            _offer(urls, per_node, rate=0, batch=500, duration_s=60, sent_at=sent, rejected=rejected)))
        loader.start()
        wait_until("load to reach the chain", lambda: net.height(0) >= 3)
        net.kill(3)
        time.sleep(4)
        net.start(3)
        loader.join(timeout=120)
        assert rejected == [0] and len(sent) == sum(len(p) for p in per_node)
        wait_until("all accepted txs committed",
                   lambda: all((net.status(i) or {}).get("mempool_size", 1) == 0 for i in range(3)), timeout_s=90)
        target = max(net.height(i) for i in range(3))
        wait_until("the victim to catch up", lambda: net.height(3) >= target, timeout_s=90)
        assert_same_chain(net, [0, 1, 2, 3], target)
        # Every transfer committed exactly once with a successful receipt on the caught-up node.
        db = net.home(3) / "data" / "chain.sqlite"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            codes = dict(conn.execute("SELECT code, COUNT(*) FROM txs GROUP BY code").fetchall())
        assert codes == {"ok": len(sent)}
    finally:
        net.stop_all()
