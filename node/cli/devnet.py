"""``gridchain devnet``: a local consortium of node processes on 127.0.0.1.

Generates the network into ``--home`` if it is empty or missing (as
``gridchain genesis --host-mode local``), starts one ``gridchain node`` per
validator (and, with ``--observers N``, N observer nodes whose members register
their node keys on chain once the validators run), waits until all are ready, prints their URLs and the demo accounts'
key files and each node's pid, optionally runs the demo trading day (``--demo``),
and keeps running until SIGINT/SIGTERM, when it stops every node it started.

While it runs, a node that exits (a crash, or ``kill -9 PID`` to watch the others
carry on) is reported with its name, pid and exit code and restarted after a
backoff (1 s, 2 s, 4 s, ... up to 30 s); once it answers again the devnet prints the
height it resumed at. The other nodes keep running throughout.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from rich.console import Console

from node.cli.genesis import add_network_arguments


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("devnet", help="run a local consortium of node processes on 127.0.0.1")
    parser.add_argument("--nodes", type=int, default=4, help="number of validators (default 4)")
    parser.add_argument("--observers", type=int, default=0,
                        help="observer nodes following the validators (default 0; see docs/OBSERVERS.md)")
    parser.add_argument("--home", type=Path, default=Path(".devnet"), help="network directory (default .devnet)")
    parser.add_argument("--base-port", type=int, default=7100, help="p2p P+i, api P+100+i, metrics P+200+i")
    add_network_arguments(parser)
    parser.add_argument("--demo", action="store_true", help="run a short demo trading day once ready")
    parser.add_argument("--log-level", default="info")
    parser.set_defaults(func=run)


def _print_network(console: Console, network: dict[str, Any], accounts: list[dict[str, Any]],
                   pids: list[int | None]) -> None:
    console.print(f"[bold]GridChain devnet[/] · chain {network['chain_id']}")
    for node, pid in zip(network["nodes"], pids, strict=True):
        role = "observer" if node.get("node_role") == "observer" else node["role"]
        console.print(f"  {node['name']:<10} {role:<10} pid {pid}  api {node['api_url']}  "
                      f"metrics {node['metrics_url']}  log {Path(node['home']) / 'node.log'}", soft_wrap=True)
    console.print("[bold]demo accounts[/] (name, role, address, key file)")
    for account in accounts:
        if not account["name"].startswith("bench-"):
            console.print(f"  {account['name']:<14} {account['role']:<10} {account['address']}  "
                          f"{account['key_file']}", soft_wrap=True)


def run(args: argparse.Namespace) -> int:
    from contracts.errors import GenesisError
    from node.devnet.localnet import LocalNet, Supervisor
    from node.ops import genesis as gen

    console = Console()
    home: Path = args.home
    if not (home / "network.json").exists():
        if home.exists() and any(home.iterdir()):
            print(f"error: {home} is not empty and has no network.json", file=sys.stderr)
            return 2
        try:
            gen.generate_network(
                home, nodes=gen.parse_nodes(str(args.nodes)), host_mode="local", base_port=args.base_port,
                slot_ms=args.slot_ms or 5_000, chain_id=args.chain_id or "gridchain-devnet",
                round_timeout_ms=args.round_timeout_ms, observers=args.observers,
            )
        except GenesisError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        console.print(f"generated a {args.nodes}-node network with {args.observers} observers in {home}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    net = LocalNet(home, log_level=args.log_level)
    supervisor: Supervisor | None = None
    try:
        net.start_all()
        console.print(f"starting {len(net.nodes)} nodes ...")
        net.wait_ready(net.validators(), timeout_s=90)
        if net.observers():
            net.register_observers()
            net.wait_ready(net.observers(), timeout_s=90)
        accounts = json.loads((home / "accounts.json").read_text())
        _print_network(console, net.network, accounts, [net.pid(i) for i in range(len(net.nodes))])
        console.print(f"network: {home / 'network.json'}   accounts: {home / 'accounts.json'}")
        supervisor = Supervisor(net, lambda line: console.print(line, soft_wrap=True, markup=False,
                                                                highlight=False))
        supervisor.start()
        if args.demo and not stop.is_set():
            from node.devnet.demo import run_demo

            run_demo(home, console=console)
        console.print("[bold green]devnet running[/] — a node that exits is restarted; "
                      "Ctrl-C stops every node", soft_wrap=True)
        while not stop.wait(1.0):
            pass
    except (TimeoutError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if supervisor is not None:
            supervisor.stop()
        console.print("stopping nodes ...")
        net.stop_all()
    return 0
