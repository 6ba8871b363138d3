"""How many observers one machine runs while they follow a loaded chain.

``python -m node.devnet.observer_load --observers 4 --rate 500 --duration-s 30`` generates a
network of 4 validators and N observers on 127.0.0.1, starts them (``LocalNet``), has each
observer's member name its node key, then offers ``--rate`` signed transfers per second to
the validators' APIs (the load generator of ``gridchain bench``) for ``--duration-s``. Meanwhile it
samples every 0.5 s, read-only from each node's SQLite database, how far each observer's
executed height is behind validator 0's, and at the end how long the observers take to
reach validator 0's final height. CPU time per process comes from ``/proc/PID/stat``.

After the load it waits until every accepted transaction has committed and every observer
has reached validator 0's final height, and counts each process's CPU time over the whole
run (load and backlog). It prints one table and one JSON line: committed tx/s, the CPU
cores the validators, each observer and the load generator need at the offered rate (CPU
seconds per committed transaction x rate), each observer's largest lag (blocks), how long the validators took
to commit the backlog after the load and how long after that each observer reached their
final height, and ``observers_per_machine``: how many such observers fit in
the CPU the machine has left beside the validators and the load generator (``--cores``,
default the machine's count) — the number this measurement is for.
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
        span = t_sent - t0
        # The backlog commits, then every observer reaches validator 0's final height.
        while time.monotonic() - t_sent < CATCH_UP_S and any(h not in watcher.committed_at for h in sent_at):
            await asyncio.sleep(0.1)
        done.set()
        await sampler
        target, t_target = _heads(dbs)[0], time.monotonic()
        caught_up: list[float | None] = [None] * len(observers)
        while time.monotonic() - t_target < CATCH_UP_S and None in caught_up:
            for k, head in enumerate(_heads(dbs)[1:]):
                if caught_up[k] is None and head >= target:
                    caught_up[k] = round(time.monotonic() - t_target, 2)
            await asyncio.sleep(0.1)
        cpu1 = {i: _cpu_s(pid) for i, pid in pids.items()}
        load_cpu_s = time.process_time() - me0
        watcher.poll()
        committed = sum(1 for h in sent_at if h in watcher.committed_at)
        # CPU seconds per committed transaction, scaled to the offered rate: cores needed at that rate.
        per_tx = max(committed, 1)
        validators_cores = sum(cpu1[i] - cpu0[i] for i in validators) / per_tx * rate
        observer_cores = [(cpu1[i] - cpu0[i]) / per_tx * rate for i in observers]
        load_cores = load_cpu_s / per_tx * rate
        per_observer = max(observer_cores) if observer_cores else float("nan")
        spare = cores - validators_cores - load_cores
        return {
            "validators": len(validators), "observers": len(observers), "offered_tx_per_s": rate,
            "duration_s": duration_s, "accepted": len(sent_at), "committed": committed,
            "committed_tx_per_s_during_load": round(sum(1 for h in sent_at if watcher.committed_at.get(h, 1e18)
                                                        <= t_sent) / span, 1),
            "height": target, "validators_cores_at_rate": round(validators_cores, 3),
            "observer_cores_at_rate": [round(c, 3) for c in observer_cores],
            "load_generator_cores_at_rate": round(load_cores, 3),
            "observer_max_lag_blocks": max_lag, "backlog_committed_s_after_load": round(t_target - t_sent, 2),
            "observer_reached_final_height_s": caught_up,
            "machine_cores": cores,
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
