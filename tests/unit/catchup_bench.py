"""Catch-up benchmark (not a test): how fast a node that missed many small blocks catches up.

``python -m tests.unit.catchup_bench [--blocks 2000] [--base-port 7950]``

Starts a 4-validator local network with only three validators running (a quorum),
which commit empty blocks as fast as they can (``idle_block_interval_ms`` 0) until
the chain is ``--blocks`` high, then starts the fourth with an empty database (the
three go on) and measures how long it takes to reach the height the others had
when it started
(``node.net.sync``: 256 blocks per request, hash chain and commit QC checked,
executed and stored by the execution pipeline). Prints blocks per second, measured
from the fourth node's first executed block (its process start-up is excluded), and
that rate divided by the single-core Ed25519 verification rate measured first.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from node.cli.bench_measure import verify_rate
from node.devnet.localnet import LocalNet
from node.ops import genesis as gen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=2_000)
    parser.add_argument("--base-port", type=int, default=7950)
    parser.add_argument("--timeout-s", type=float, default=900.0)
    args = parser.parse_args()
    rate0 = verify_rate()
    print(f"single-core Ed25519 verification: {rate0:,.0f}/s")
    with tempfile.TemporaryDirectory(prefix="gridchain-catchup-") as temp:
        out = Path(temp) / "net"
        gen.generate_network(out, nodes=gen.parse_nodes("4"), base_port=args.base_port, chain_id="catchup-bench",
                             demo_accounts=False)
        net = LocalNet(out, log_level="warning", env={"GRIDCHAIN_IDLE_BLOCK_INTERVAL_MS": "0"})
        try:
            for i in range(3):
                net.start(i)
            net.wait_ready([0, 1, 2], timeout_s=120)
            t_build = time.monotonic()
            while (height := net.height(0)) < args.blocks:
                if time.monotonic() - t_build > args.timeout_s:
                    raise TimeoutError(f"only {height} blocks after {args.timeout_s:.0f} s")
                time.sleep(1.0)
            build_s = time.monotonic() - t_build
            target = net.height(0)
            print(f"three validators built {target} blocks in {build_s:.0f} s ({target / build_s:.0f} blocks/s)")
            net.start(3)
            first_t = None
            while True:
                status = net.status(3)
                h = int(status["height"]) if status else 0
                now = time.monotonic()
                if h > 0 and first_t is None:
                    first_t, first_h = now, h
                if h >= target:
                    break
                if first_t is not None and now - first_t > args.timeout_s:
                    raise TimeoutError(f"catch-up stuck at {h} of {target}")
                time.sleep(0.05)
            assert first_t is not None
            span = max(time.monotonic() - first_t, 1e-9)
            print(f"fourth validator caught up {target - first_h} blocks in {span:.1f} s: "
                  f"{(target - first_h) / span:,.0f} blocks/s ({(target - first_h) / span / rate0:.2f} x the verify rate)")
        finally:
            net.stop_all()


if __name__ == "__main__":
    main()
