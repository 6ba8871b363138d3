"""``gridchain bench``: committed transactions per second, commit latency, execution and memory of a local cluster.

What it does:

1. generates a network with ``--accounts`` funded bench accounts (prosumers for the
   market workload) and ``--slot-ms`` market slots in a temporary (or ``--home``)
   directory, measures the single-core Ed25519 verification rate in this process
   (``node.cli.bench_measure.verify_rate``) and starts ``--nodes`` node processes on
   127.0.0.1;
2. pre-signs the workload (``node.cli.bench_workload``: ``market`` — orders for the
   coming slots, readings in a burst after each slot, every slot cleared at its gate
   and settled after its meter window — or ``transfer``) before the clock starts;
   with ``--soak`` each slot is signed just ahead of time instead;
3. offers each transaction when it is due through the REST API's batched submit
   (``application/msgpack``) at ``--rate`` tx/s (``--rate 0``: transfers as fast as
   accepted, the market at ``SATURATION_RATE``); a 429/503 answer is honoured by
   waiting its Retry-After and resending, an order whose gate is about to close is
   dropped instead (``missed_deadline``);
4. watches node 0's committed blocks (read-only on its SQLite database) and records
   when each submitted transaction became visible there (committed and executed);
5. at the end reads each node's RSS, stops the nodes and replays node 0's chain
   in-process to time every block's execution, each slot's clearing and settlement.

Commit latency = time from the accepted submit request being sent to the commit
being visible on node 0. Committed tx/s = committed / (last commit − start of load).
``--json`` prints one JSON object; otherwise a table and the same object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from consensus import codec
from node.cli import bench_measure as bm
from node.cli import bench_workload as bw
from node.cli.bench_measure import (
    Watcher as Watcher,  # the load generator's parts, used elsewhere too
)

SEND_TICK_S = 0.02
POLL_S = 0.02
DRAIN_S = 30.0
SOAK_REPORT_S = 60.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("bench", help="load benchmark: committed tx/s, latency, execution, RSS")
    parser.add_argument("--workload", choices=("market", "transfer"), default="market")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--base-port", type=int, default=7600)
    parser.add_argument("--duration-s", type=float, default=40.0, help="how long to offer load")
    parser.add_argument("--rate", type=int, default=0, help="offered tx/s; 0 = saturation")
    parser.add_argument("--max-txs", type=int, default=120_000, help="cap of pre-signed transfers with --rate 0")
    parser.add_argument("--accounts", type=int, default=None, help="bench accounts (market 1000, transfer 256)")
    parser.add_argument("--slot-ms", type=int, default=10_000, help="market slot length")
    parser.add_argument("--batch", type=int, default=500, help="max txs per submit request")
    parser.add_argument("--round-timeout-ms", type=int, default=1_000)
    parser.add_argument("--soak", action="store_true", help="print RSS and latency every minute; sign lazily")
    parser.add_argument("--json", action="store_true", help="print only one JSON object")
    parser.add_argument("--home", type=Path, default=None, help="network dir (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="leave the network directory in place")
    parser.set_defaults(func=run)


def _presign(network_dir: Path, accounts: list[dict[str, Any]], total: int, nodes: int,
             chain_id: str) -> list[list[tuple[bytes, bytes]]]:
    """Transfers per node: (hash, raw) in submission order (kept for the cluster load test)."""
    participants = bw.load_participants(accounts, nodes)
    items = bw.transfer_items(chain_id, participants, total=total, rate=0, nodes=nodes,
                              start_ms=int(time.time() * 1000))
    return [[(it.tx_hash, it.raw) for it in node_items] for node_items in items]


async def _offer(urls: list[str], per_node: list[list[tuple[bytes, bytes]]], *, rate: int, batch: int,
                 duration_s: float, sent_at: dict[bytes, float], rejected: list[int]) -> None:
    """Offer (hash, raw) lists at ``rate`` (0: as fast as accepted); see ``offer``."""
    queues = [[bw.Item(i * len(urls) / rate if rate else 0.0, float("inf"), "transfer", h, raw)
               for i, (h, raw) in enumerate(items)] for items in per_node]
    stats = OfferStats()
    await offer(urls, [_heap(q) for q in queues], batch=batch, duration_s=duration_s, sent_at=sent_at,
                stats=stats, t0=time.monotonic())
    rejected[0] += sum(stats.rejected.values())


class OfferStats:
    def __init__(self) -> None:
        self.rejected: dict[str, int] = {}
        self.refused_requests = 0
        """429/503 answers (shed load)."""
        self.missed_deadline = 0
        self.answer_s: list[float] = []
        """How long each answered submit request took."""


def _heap(items: list[bw.Item]) -> list[tuple[float, int, bw.Item]]:
    heap = [(it.due_s, i, it) for i, it in enumerate(items)]
    heapq.heapify(heap)
    return heap


async def offer(urls: list[str], heaps: list[list[tuple[float, int, bw.Item]]], *, batch: int, duration_s: float,
                sent_at: dict[bytes, float], stats: OfferStats, t0: float) -> None:
    """Each node's items when due (per-node heaps by due time; a soak run keeps pushing)."""
    headers = {"Content-Type": "application/msgpack"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def post(url: str, items: list[bw.Item]) -> float:
            """0 when answered; else the seconds to wait (429/503)."""
            body = codec.encode([it.raw for it in items])
            t = time.monotonic()
            async with session.post(url + "/v1/transactions", data=body, headers=headers) as response:
                if response.status in (429, 503):
                    stats.refused_requests += 1
                    return max(0.05, float(response.headers.get("Retry-After", "0.2")))
                result = await response.json()
            stats.answer_s.append(time.monotonic() - t)
            for item, answer in zip(items, result.get("results", []), strict=False):
                error = answer.get("error")
                if error is None:
                    sent_at.setdefault(item.tx_hash, t)
                else:
                    code = error.get("code", "?") if isinstance(error, dict) else str(error)
                    stats.rejected[code] = stats.rejected.get(code, 0) + 1
            return 0.0

        async def node_loop(index: int) -> None:
            heap = heaps[index]
            while time.monotonic() - t0 < duration_s:
                now = time.monotonic() - t0
                items: list[bw.Item] = []
                while heap and heap[0][0] <= now and len(items) < batch:
                    item = heapq.heappop(heap)[2]
                    if item.deadline_s < now:
                        stats.missed_deadline += 1
                    else:
                        items.append(item)
                if not items:
                    await asyncio.sleep(SEND_TICK_S)
                    continue
                wait_s = await post(urls[index], items)
                if wait_s:
                    for k, item in enumerate(items):  # back in line, same due time
                        heapq.heappush(heap, (item.due_s, -len(items) + k, item))
                    await asyncio.sleep(wait_s)

        await asyncio.gather(*(node_loop(i) for i in range(len(urls))))


async def _soak_feed(workload: bw.MarketWorkload, slots: list[int], heaps: list[Any], t0: float,
                     kind_of: dict[bytes, str]) -> None:
    """Sign each slot's transactions one slot ahead of its order window."""
    for n, slot in enumerate(slots):
        lead = workload._t(bw.gate_close_ms(workload.genesis, slot)) - 2.5 * workload.slot_s
        while time.monotonic() - t0 < lead:
            await asyncio.sleep(0.5)
        per_node = await asyncio.to_thread(workload.slot_items, slot)
        for node, items in enumerate(per_node):
            for k, item in enumerate(items):
                kind_of[item.tx_hash] = item.kind
                heapq.heappush(heaps[node], (item.due_s, n * 10_000_000 + k, item))


async def _soak_report(watcher: bm.Watcher, sent_at: dict[bytes, float], net: Any, nodes: int, t0: float,
                       stop: asyncio.Event) -> None:
    last_t, last_count = t0, 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=SOAK_REPORT_S)
        now = time.monotonic()
        recent = [c - sent_at[h] for h, c in watcher.committed_at.items() if c > last_t and h in sent_at]
        count = len(watcher.committed_at)
        lat = bm.latency_summary(recent)
        print(json.dumps({"soak_t_s": round(now - t0), "committed": count,
                          "tx_per_s": round((count - last_count) / max(now - last_t, 1e-9), 1),
                          "p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"],
                          "rss_mb": [bm.rss_mb(net.pid(i)) for i in range(nodes)]}), flush=True)
        last_t, last_count = now, count


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(text, file=sys.stderr, flush=True)


async def _bench(args: argparse.Namespace, network_dir: Path, rate0: float) -> dict[str, Any]:
    from node.devnet.localnet import LocalNet
    from node.ops.genesis import load_genesis

    network = json.loads((network_dir / "network.json").read_text())
    genesis = load_genesis(network_dir / "genesis.json")
    accounts = [a for a in json.loads((network_dir / "accounts.json").read_text()) if a["name"].startswith("bench-")]
    participants = bw.load_participants(accounts, args.nodes)
    # One load generator on one address: the per-client-address API limit would measure itself.
    net = LocalNet(network_dir, log_level="warning",
                   env={"GRIDCHAIN_RATE_LIMIT_CLIENT_PER_MIN": "0", "GRIDCHAIN_SHED_LATENCY_MS": "1500"})
    net.start_all()
    try:
        kind_of: dict[bytes, str] = {}
        workload = None
        if args.workload == "market":
            rate = args.rate or bw.SATURATION_RATE
            t_sign = time.perf_counter()
            bw.transfer_items(genesis.chain_id, bw.load_participants(accounts[:1], 1), total=200, rate=0, nodes=1,
                              start_ms=0)
            per_tx = (time.perf_counter() - t_sign) / 200
            lead_s = 15.0 if args.soak else 15.0 + 2.0 * per_tx * rate * (args.duration_s + args.slot_ms / 1000)
            start_ms = int(time.time() * 1000 + lead_s * 1000)
            workload = bw.MarketWorkload(genesis, participants, start_ms=start_ms, duration_s=args.duration_s,
                                         rate=rate, nodes=args.nodes)
            slots = workload.slots()
            _say(args, f"market: {len(participants)} prosumers, slots {slots[0]}..{slots[-1]} of "
                       f"{args.slot_ms} ms, {workload.orders_per_slot} orders per slot, {rate} tx/s offered")
            per_node = [[] for _ in range(args.nodes)] if args.soak else workload.all_items()
        else:
            total = int(args.rate * args.duration_s) if args.rate > 0 else args.max_txs
            start_ms = 0
            per_node = bw.transfer_items(genesis.chain_id, participants, total=total, rate=args.rate,
                                         nodes=args.nodes, start_ms=int(time.time() * 1000))
        for items in per_node:
            for item in items:
                kind_of[item.tx_hash] = item.kind
        _say(args, f"pre-signed {len(kind_of)} transactions; waiting for {args.nodes} nodes ...")
        net.wait_ready(timeout_s=120)
        rss_start = [bm.rss_mb(net.pid(i)) for i in range(args.nodes)]
        watcher = bm.Watcher(Path(network["nodes"][0]["home"]) / "data" / "chain.sqlite")
        sent_at: dict[bytes, float] = {}
        stats = OfferStats()
        stop = asyncio.Event()
        consensus: list[tuple[float, int, int]] = []

        async def watch() -> None:
            while not stop.is_set():
                watcher.poll()
                await asyncio.sleep(POLL_S)

        async def watch_consensus() -> None:
            """Node 0's consensus-committed height against its executed height, every 0.1 s."""
            url = network["nodes"][0]["api_url"] + "/v1/status"
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                while not stop.is_set():
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.get(url) as response:
                            status = await response.json()
                        consensus.append((time.monotonic(), int(status["committed_height"]),
                                          int(status["execution_lag_blocks"])))
                    await asyncio.sleep(0.1)

        if start_ms:
            await asyncio.sleep(max(0.0, start_ms / 1000 - time.time()))
        late_s = max(0.0, time.time() - start_ms / 1000) if start_ms else 0.0
        t0 = time.monotonic() - late_s
        heaps = [_heap(items) for items in per_node]
        watch_task = asyncio.create_task(watch())
        soak_tasks: list[asyncio.Task[None]] = [asyncio.create_task(watch_consensus())]
        if args.soak:
            assert workload is not None
            soak_tasks += [asyncio.create_task(_soak_feed(workload, workload.slots(), heaps, t0, kind_of)),
                           asyncio.create_task(_soak_report(watcher, sent_at, net, args.nodes, t0, stop))]
        _say(args, f"offering load for {args.duration_s:.0f} s ({args.workload}) ...")
        await offer([n["api_url"] for n in network["nodes"]], heaps, batch=args.batch, duration_s=args.duration_s,
                    sent_at=sent_at, stats=stats, t0=t0)
        t_sent = time.monotonic()
        while time.monotonic() < t_sent + DRAIN_S and any(h not in watcher.committed_at for h in sent_at):
            await asyncio.sleep(0.1)
        stop.set()
        for task in soak_tasks[1:2]:
            task.cancel()
        for task in (watch_task, *soak_tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        watcher.poll()
        rss = [bm.rss_mb(net.pid(i)) for i in range(args.nodes)]
        node_latency: dict[str, Any] = {}
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, KeyError):
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, \
                    session.get(network["nodes"][0]["metrics_url"]) as response:
                node_latency = bm.histogram_summary(await response.text(), "gridchain_commit_latency_seconds")
        heights = [net.height(i) for i in range(args.nodes)]
    finally:
        net.stop_all()
    db_path = Path(network["nodes"][0]["home"]) / "data" / "chain.sqlite"
    _say(args, "replaying node 0's chain to time block execution ...")
    replayed = bm.replay(db_path, genesis)
    return _report(args, rate0=rate0, watcher=watcher, sent_at=sent_at, stats=stats, t0=t0, t_sent=t_sent,
                   kind_of=kind_of, replayed=replayed, rss=rss, heights=heights, late_s=late_s,
                   consensus=consensus, node_latency=node_latency, rss_start=rss_start)


def _report(args: argparse.Namespace, *, rate0: float, watcher: bm.Watcher, sent_at: dict[bytes, float],
            stats: OfferStats, t0: float, t_sent: float, kind_of: dict[bytes, str], replayed: bm.Replay,
            rss: list[float | None], heights: list[int], late_s: float,
            consensus: list[tuple[float, int, int]], node_latency: dict[str, Any],
            rss_start: list[float | None]) -> dict[str, Any]:
    committed = [h for h in sent_at if h in watcher.committed_at]
    span = max((watcher.committed_at[h] for h in committed), default=t0) - t0
    latencies = [watcher.committed_at[h] - sent_at[h] for h in committed]
    by_kind: dict[str, int] = {}
    for h in committed:
        by_kind[kind_of.get(h, "?")] = by_kind.get(kind_of.get(h, "?"), 0) + 1
    rate = round(len(committed) / span, 1) if committed and span > 0 else 0.0
    special = {height for height, _, _ in (*replayed.clearing.values(), *replayed.settlement.values())}
    special_lat = [watcher.committed_at[h] - sent_at[h] for h in committed if watcher.block_of.get(h) in special]
    return {
        "workload": args.workload, "nodes": args.nodes, "rate_offered": args.rate or "saturation",
        "duration_s": args.duration_s, "late_start_s": round(late_s, 1),
        "verify_per_s_single_core": round(rate0),
        "accepted": len(sent_at), "refused_requests_429_503": stats.refused_requests,
        "rejected": stats.rejected, "missed_deadline": stats.missed_deadline,
        "committed": len(committed), "committed_tx_per_s": rate,
        "ratio_to_verify_rate": round(rate / rate0, 3) if rate0 else None,
        "committed_tx_per_s_by_kind": {k: round(v / span, 1) for k, v in sorted(by_kind.items())} if span > 0 else {},
        "failed_receipts": watcher.failed_by_code(),
        "latency": bm.latency_summary(latencies),
        "submit_answer_time": bm.latency_summary(stats.answer_s),
        "node0_admission_to_execution": node_latency,
        "latency_clearing_settlement_blocks": bm.latency_summary(special_lat),
        "execution": {
            "blocks": replayed.blocks, "txs": replayed.txs, "roots_match": replayed.roots_match,
            "max_block_ms": round(1000 * replayed.max_block_s, 1), "max_block_height": replayed.max_block_height,
            "clearing": [{"slot": s, "height": h, "orders": n, "ms": round(1000 * t, 1)}
                         for s, (h, t, n) in sorted(replayed.clearing.items())],
            "settlement": [{"slot": s, "height": h, "accounts": n, "ms": round(1000 * t, 1)}
                           for s, (h, t, n) in sorted(replayed.settlement.items())],
        },
        "consensus": bm.consensus_gaps(consensus, t0=t0, t_end=t_sent),
        "rss_mb_ready": rss_start, "rss_mb": rss, "heights": heights,
        "note": "machine may be shared: compare ratio_to_verify_rate, measured in this run",
    }


def run(args: argparse.Namespace) -> int:
    from node.ops import genesis as gen

    if args.accounts is None:
        args.accounts = 1_000 if args.workload == "market" else 256
    temp = None
    if args.home is None:
        temp = tempfile.TemporaryDirectory(prefix="gridchain-bench-")
        network_dir = Path(temp.name) / "net"
    else:
        network_dir = args.home
    try:
        if not (network_dir / "network.json").exists():
            _say(args, f"generating a network of {args.nodes} nodes and {args.accounts} accounts ...")
            gen.generate_network(network_dir, nodes=gen.parse_nodes(str(args.nodes)), base_port=args.base_port,
                                 slot_ms=args.slot_ms, chain_id="gridchain-bench",
                                 round_timeout_ms=args.round_timeout_ms, demo_accounts=False,
                                 bench_accounts=args.accounts,
                                 bench_role="prosumer" if args.workload == "market" else "consumer")
        rate0 = bm.verify_rate()
        _say(args, f"single-core Ed25519 verification: {rate0:,.0f}/s")
        result = asyncio.run(_bench(args, network_dir, rate0))
    except (TimeoutError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if temp is not None and not args.keep:
            temp.cleanup()
    if not args.json:
        print()
        for key, value in result.items():
            print(f"  {key:<34} {value}")
    print(json.dumps(result))
    return 0
