"""``gridchain bench``: committed transactions per second and commit latency on a local cluster.

What it does:

1. generates a network with ``--accounts`` funded accounts in a temporary (or
   ``--home``) directory and starts ``--nodes`` node processes on 127.0.0.1;
2. pre-signs every transaction before the clock starts (transfers of 1 µ
   between the bench accounts; each account is pinned to one node so its
   nonces arrive in order);
3. offers them through the REST API's batched submit (``application/msgpack``),
   either at ``--rate`` tx/s (paced every 20 ms) or, with ``--rate 0``, as fast
   as the nodes accept (HTTP 503 back-pressure is honoured by retrying later);
4. watches node 0's committed blocks (read-only on its SQLite database, no load
   on the node's API) and records when each submitted transaction was committed
   and executed there.

Commit latency = time from the submit request being sent to the commit being
visible on node 0. Committed tx/s = committed transactions / (last commit −
first submit). Numbers print as a table and as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from consensus import codec

SEND_TICK_S = 0.02
POLL_S = 0.02
DRAIN_S = 30.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("bench", help="load benchmark: committed tx/s and commit latency p50/p99")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--base-port", type=int, default=7600)
    parser.add_argument("--duration-s", type=float, default=20.0, help="how long to offer load")
    parser.add_argument("--rate", type=int, default=0, help="offered tx/s; 0 = as fast as accepted")
    parser.add_argument("--max-txs", type=int, default=120_000, help="cap of pre-signed txs with --rate 0")
    parser.add_argument("--accounts", type=int, default=256, help="sending accounts")
    parser.add_argument("--batch", type=int, default=500, help="txs per submit request (--rate 0)")
    parser.add_argument("--round-timeout-ms", type=int, default=1_000)
    parser.add_argument("--home", type=Path, default=None, help="network dir (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="leave the network directory in place")
    parser.set_defaults(func=run)


def _presign(network_dir: Path, accounts: list[dict[str, Any]], total: int, nodes: int,
             chain_id: str) -> list[list[tuple[bytes, bytes]]]:
    """Per node: (hash, raw) in submission order."""
    from contracts.transactions import Transfer, Tx, sign_tx
    from node.ops.keys import load_key_file

    keys = [load_key_file(a["key_file"]) for a in accounts]
    expires_at_ms = int(time.time() * 1000) + 3_600_000
    per_node: list[list[tuple[bytes, bytes]]] = [[] for _ in range(nodes)]
    nonces = [0] * len(keys)
    for i in range(total):
        k = i % len(keys)
        nonces[k] += 1
        key = keys[k]
        to = keys[(k + 1) % len(keys)].address
        tx = Tx(chain_id=chain_id, sender=key.address, public_key=key.public_key, nonce=nonces[k],
                expires_at_ms=expires_at_ms, body=Transfer(to=to, amount_u=1))
        raw = sign_tx(tx, key.signer)
        per_node[k % nodes].append((codec.digest(raw), raw))
    return per_node


class Watcher:
    """Polls node 0's database for committed blocks and timestamps their txs."""

    def __init__(self, db_path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
        self.height = self._head()
        self.committed_at: dict[bytes, float] = {}

    def _head(self) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(height), 0) FROM blocks").fetchone()
        return int(row[0])

    def poll(self) -> None:
        from consensus.types import Block

        rows = self.conn.execute("SELECT height, data FROM blocks WHERE height > ? ORDER BY height",
                                 (self.height,)).fetchall()
        now = time.monotonic()
        for height, data in rows:
            block = codec.decode(data, Block)
            for raw in block.payload:
                self.committed_at.setdefault(codec.digest(raw), now)
            self.height = max(self.height, int(height))

    def failed(self) -> int:
        row = self.conn.execute("SELECT COUNT(*) FROM txs WHERE code != 'ok'").fetchone()
        return int(row[0])


async def _offer(urls: list[str], per_node: list[list[tuple[bytes, bytes]]], *, rate: int, batch: int,
                 duration_s: float, sent_at: dict[bytes, float], rejected: list[int]) -> None:
    headers = {"Content-Type": "application/msgpack"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def post(url: str, items: list[tuple[bytes, bytes]]) -> bool:
            body = codec.encode([raw for _, raw in items])
            t = time.monotonic()
            async with session.post(url + "/v1/transactions", data=body, headers=headers) as response:
                if response.status in (429, 503):  # rate limited or mempool full: back off, resend
                    return False
                result = await response.json()
            for (tx_hash, _), item in zip(items, result.get("results", []), strict=False):
                if item.get("error") is None:
                    sent_at.setdefault(tx_hash, t)
                else:
                    rejected[0] += 1
            return True

        async def node_loop(index: int) -> None:
            queue = per_node[index]
            position = 0
            start = time.monotonic()
            share = rate / len(urls)
            while position < len(queue) and time.monotonic() - start < duration_s:
                if rate > 0:
                    due = int(share * (time.monotonic() - start + SEND_TICK_S))
                    count = max(0, min(due - position, len(queue) - position))
                    if count:
                        await post(urls[index], queue[position : position + count])
                        position += count
                    await asyncio.sleep(SEND_TICK_S)
                else:
                    items = queue[position : position + batch]
                    if await post(urls[index], items):
                        position += len(items)
                    else:
                        await asyncio.sleep(0.05)

        await asyncio.gather(*(node_loop(i) for i in range(len(urls))))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _bench(args: argparse.Namespace, network_dir: Path) -> dict[str, Any]:
    from node.devnet.localnet import LocalNet

    network = json.loads((network_dir / "network.json").read_text())
    accounts = [a for a in json.loads((network_dir / "accounts.json").read_text()) if a["name"].startswith("bench-")]
    total = args.rate * int(args.duration_s) if args.rate > 0 else args.max_txs
    print(f"pre-signing {total} transactions from {len(accounts)} accounts ...", flush=True)
    per_node = _presign(network_dir, accounts, total, args.nodes, network["chain_id"])
    # One load generator on one address: the per-client-address API limit would measure itself.
    net = LocalNet(network_dir, log_level="warning", env={"GRIDCHAIN_RATE_LIMIT_CLIENT_PER_MIN": "0"})
    try:
        net.start_all()
        net.wait_ready(timeout_s=90)
        watcher = Watcher(Path(network["nodes"][0]["home"]) / "data" / "chain.sqlite")
        sent_at: dict[bytes, float] = {}
        rejected = [0]
        stop = asyncio.Event()

        async def watch() -> None:
            while not stop.is_set():
                watcher.poll()
                await asyncio.sleep(POLL_S)

        watch_task = asyncio.create_task(watch())
        mode = f"{args.rate} tx/s offered" if args.rate else "max (as fast as accepted)"
        print(f"offering load for {args.duration_s:.0f} s: {mode} to {args.nodes} nodes ...", flush=True)
        t0 = time.monotonic()
        await _offer([n["api_url"] for n in network["nodes"]], per_node, rate=args.rate, batch=args.batch,
                     duration_s=args.duration_s, sent_at=sent_at, rejected=rejected)
        t_sent = time.monotonic()
        deadline = t_sent + DRAIN_S
        while time.monotonic() < deadline and any(h not in watcher.committed_at for h in sent_at):
            await asyncio.sleep(0.1)
        stop.set()
        await watch_task
        watcher.poll()
        latencies = [watcher.committed_at[h] - t for h, t in sent_at.items() if h in watcher.committed_at]
        commit_times = [watcher.committed_at[h] for h in sent_at if h in watcher.committed_at]
        committed = len(latencies)
        span = (max(commit_times) - t0) if commit_times else float("nan")
        heights = [net.height(i) for i in range(args.nodes)]
        return {
            "nodes": args.nodes,
            "mode": "rate" if args.rate else "max",
            "offered_tx_per_s": round(len(sent_at) / max(t_sent - t0, 1e-9), 1),
            "accepted": len(sent_at),
            "rejected": rejected[0],
            "committed": committed,
            "failed_receipts": watcher.failed(),
            "committed_tx_per_s": round(committed / span, 1) if committed else 0.0,
            "latency_p50_ms": round(1000 * _percentile(latencies, 0.50), 1),
            "latency_p99_ms": round(1000 * _percentile(latencies, 0.99), 1),
            "latency_mean_ms": round(1000 * statistics.fmean(latencies), 1) if latencies else None,
            "heights": heights,
        }
    finally:
        net.stop_all()


def run(args: argparse.Namespace) -> int:
    from node.ops import genesis as gen

    temp = None
    if args.home is None:
        temp = tempfile.TemporaryDirectory(prefix="gridchain-bench-")
        network_dir = Path(temp.name) / "net"
    else:
        network_dir = args.home
    try:
        if not (network_dir / "network.json").exists():
            gen.generate_network(network_dir, nodes=gen.parse_nodes(str(args.nodes)), base_port=args.base_port,
                                 slot_ms=60_000, chain_id="gridchain-bench", round_timeout_ms=args.round_timeout_ms,
                                 demo_accounts=False, bench_accounts=args.accounts)
        result = asyncio.run(_bench(args, network_dir))
    except (TimeoutError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if temp is not None and not args.keep:
            temp.cleanup()
    print()
    for key, value in result.items():
        print(f"  {key:<22} {value}")
    print(json.dumps(result))
    return 0
