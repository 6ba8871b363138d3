"""How many observers one machine runs while they follow a loaded chain.

``python -m node.devnet.observer_load --observers 4 --rate 500 --duration-s 30`` generates a
network of 4 validators and N observers on 127.0.0.1, starts them (``LocalNet``), has each
observer's member name its node key, then offers ``--rate`` signed transfers per second to
the validators' APIs (the load generator of ``gridchain bench``) for ``--duration-s``. Meanwhile it
samples every 0.5 s, read-only from each node's SQLite database, how far each observer's
executed height is behind validator 0's, and at the end how long the observers take to
reach validator 0's final height. CPU time per process comes from ``/proc/PID/stat``.

It prints one table and one JSON line: committed tx/s, CPU cores used by the validators,
by each observer and by the load generator, each observer's largest lag (blocks) and its
catch-up time, and ``observers_per_machine``: how many such observers fit in the CPU the
machine has left beside the validators and the load generator (``--cores``, default the
machine's count) — the number this measurement is for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SAMPLE_S = 0.5
CATCH_UP_S = 60.0


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of ``pid`` so far (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _heads(dbs: list[sqlite3.Connection]) -> list[int]:
    return [int(db.execute("SELECT COALESCE(MAX(height), 0) FROM blocks").fetchone()[0]) for db in dbs]


async def measure(network_dir: Path, *, rate: int, duration_s: float, cores: float) -> dict[str, Any]:
    from node.cli.bench import Watcher, _offer, _presign
    from node.devnet.localnet import LocalNet

    network = json.loads((network_dir / "network.json").read_text())
    accounts = [a for a in json.loads((network_dir / "accounts.json").read_text()) if a["name"].startswith("bench-")]
    net = LocalNet(network_dir, log_level="warning", env={"GRIDCHAIN_RATE_LIMIT_CLIENT_PER_MIN": "0"})
    validators, observers = net.validators(), net.observers()
    per_node = _presign(network_dir, accounts, rate * int(duration_s), len(validators), network["chain_id"])
    try:
        net.start_all()
        net.wait_ready(validators, timeout_s=90)
        net.register_observers()
        net.wait_ready(observers, timeout_s=120)
        dbs = [sqlite3.connect(f"file:{net.home(i) / 'data' / 'chain.sqlite'}?mode=ro", uri=True)
               for i in [validators[0], *observers]]
        watcher = Watcher(net.home(validators[0]) / "data" / "chain.sqlite")
        pids = {i: net.pid(i) for i in validators + observers}
        cpu0 = {i: _cpu_s(pid) for i, pid in pids.items()}
        me0, t0 = time.process_time(), time.monotonic()
        max_lag = [0] * len(observers)
        sent_at: dict[bytes, float] = {}
        rejected = [0]
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                heads = _heads(dbs)
                watcher.poll()
                for k, head in enumerate(heads[1:]):
                    max_lag[k] = max(max_lag[k], heads[0] - head)
                await asyncio.sleep(SAMPLE_S)

        sampler = asyncio.create_task(sample())
        await _offer([net.api(i) for i in validators], per_node, rate=rate, batch=500, duration_s=duration_s,
                     sent_at=sent_at, rejected=rejected)
        t_sent = time.monotonic()
        cpu1 = {i: _cpu_s(pid) for i, pid in pids.items()}
        me1 = time.process_time()
        done.set()
        await sampler
        target = _heads(dbs)[0]
        caught_up: list[float | None] = [None] * len(observers)
        while time.monotonic() - t_sent < CATCH_UP_S and None in caught_up:
            for k, head in enumerate(_heads(dbs)[1:]):
                if caught_up[k] is None and head >= target:
                    caught_up[k] = round(time.monotonic() - t_sent, 2)
            await asyncio.sleep(0.1)
        watcher.poll()
        span = t_sent - t0
        committed = sum(1 for h in sent_at if h in watcher.committed_at)
        validators_cpu = sum(cpu1[i] - cpu0[i] for i in validators) / span
        observer_cpu = [(cpu1[i] - cpu0[i]) / span for i in observers]
        load_cpu = (me1 - me0) / span
        per_observer = max(observer_cpu) if observer_cpu else float("nan")
        spare = cores - validators_cpu - load_cpu
        return {
            "validators": len(validators), "observers": len(observers), "offered_tx_per_s": rate,
            "duration_s": duration_s, "committed_tx_per_s": round(committed / span, 1),
            "height": target, "validators_cpu_cores": round(validators_cpu, 2),
            "observer_cpu_cores": [round(c, 3) for c in observer_cpu], "load_generator_cpu_cores": round(load_cpu, 2),
            "observer_max_lag_blocks": max_lag, "observer_catch_up_s": caught_up, "machine_cores": cores,
            "observers_per_machine": int(max(0.0, spare) / per_observer) if per_observer > 0 else None,
        }
    finally:
        net.stop_all()


def main(argv: list[str] | None = None) -> int:
    from node.ops import genesis as gen

    parser = argparse.ArgumentParser(prog="python -m node.devnet.observer_load", description=__doc__.split("\n")[0])
    parser.add_argument("--observers", type=int, default=4)
    parser.add_argument("--rate", type=int, default=500, help="offered tx/s (to the validators)")
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--accounts", type=int, default=256)
    parser.add_argument("--base-port", type=int, default=7800)
    parser.add_argument("--cores", type=float, default=float(os.cpu_count() or 1),
                        help="CPU cores of the machine the estimate is for (default: this machine's)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gridchain-observers-") as tmp:
        network_dir = Path(tmp) / "net"
        gen.generate_network(network_dir, nodes=gen.parse_nodes("4"), base_port=args.base_port, slot_ms=60_000,
                             chain_id="gridchain-bench", demo_accounts=False, bench_accounts=args.accounts,
                             observers=args.observers)
        try:
            result = asyncio.run(measure(network_dir, rate=args.rate, duration_s=args.duration_s,
                                         cores=args.cores))
        except (TimeoutError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    for key, value in result.items():
        print(f"  {key:<26} {value}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
