"""``gridchain sim``: one deterministic simulation run of the real consensus core.

    gridchain sim --nodes N --seed S --rounds R
                  [--byzantine K --behaviour equivocate|double-vote|silent|twins]
                  [--crash K] [--partition] [--loss PERCENT] [--json]

Prints a summary (or, with ``--json``, one JSON object with ``violations``,
``committed_height``, ``rounds``, ``timeouts``, ``leader_share``, ``credit``,
``fairness`` (``leader_share_max_deviation``: the largest deviation of an honest
validator's leader share from the honest mean; ``proposer_reward_gini``: the Gini
coefficient of proposer rewards among honest validators), ``messages_per_block``
and more). Exit status 0 when every invariant held, 1 on
any violation (the output then says how to reproduce it), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from node.sim.config import BEHAVIOURS, SimConfig


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sim",
        help="run the deterministic consensus simulator for one seed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = SimConfig()
    p.add_argument("--nodes", type=int, default=d.nodes, help="validators (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="the run's seed (default %(default)s)")
    p.add_argument("--rounds", type=int, default=d.rounds, help="rounds to run (default %(default)s)")
    p.add_argument("--byzantine", type=int, default=0, metavar="K",
                   help="Byzantine validators (twin pairs for twins)")
    p.add_argument("--behaviour", choices=BEHAVIOURS, default=d.behaviour,
                   help="what the Byzantine validators do (default %(default)s)")
    p.add_argument("--crash", type=int, default=0, metavar="K",
                   help="honest validators that crash and restart")
    p.add_argument("--partition", action="store_true", help="partition the network for a while")
    p.add_argument("--loss", type=int, default=0, metavar="PERCENT",
                   help="message loss during the fault phase")
    p.add_argument("--duplicate", type=int, default=d.duplicate_percent, metavar="PERCENT",
                   help="message duplication (default %(default)s)")
    p.add_argument("--min-delay-ms", type=int, default=d.min_delay_ms)
    p.add_argument("--max-delay-ms", type=int, default=d.max_delay_ms)
    p.add_argument("--fault-delay-ms", type=int, default=d.fault_delay_ms,
                   help="extra delay of up to this on every message during the fault phase")
    p.add_argument("--round-timeout-ms", type=int, default=d.round_timeout_ms)
    p.add_argument("--fault-fraction", type=int, default=d.fault_fraction_percent, metavar="PERCENT",
                   help="share of the rounds with faults active (default %(default)s)")
    p.add_argument("--liveness-rounds", type=int, default=d.liveness_rounds,
                   help="rounds after healing within which everyone must commit again")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        nodes=args.nodes,
        seed=args.seed,
        rounds=args.rounds,
        byzantine=args.byzantine,
        behaviour=args.behaviour,
        crash=args.crash,
        partition=args.partition,
        loss_percent=args.loss,
        duplicate_percent=args.duplicate,
        min_delay_ms=args.min_delay_ms,
        max_delay_ms=args.max_delay_ms,
        fault_delay_ms=args.fault_delay_ms,
        round_timeout_ms=args.round_timeout_ms,
        fault_fraction_percent=args.fault_fraction,
        liveness_rounds=args.liveness_rounds,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        config.check()
    except ValueError as exc:
        print(f"gridchain sim: error: {exc}", file=sys.stderr)
        return 2
    from consensus.codec import to_builtins
    from node.sim.runner import simulate

    result = simulate(config)
    if args.json:
        sys.stdout.write(orjson.dumps(to_builtins(result)).decode() + "\n")
    else:
        _print_summary(result)
    return 0 if result.ok else 1


def _print_summary(result: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    status = "[green]OK[/]" if result.ok else f"[red]{len(result.violations)} VIOLATION(S)[/]"
    console.print(
        f"seed {result.seed}, {result.nodes} validators: {status} — height "
        f"{result.committed_height}, {result.rounds} rounds ({result.committed_fraction:.0%} committed), "
        f"{result.timeouts} timeouts, "
        f"{result.messages_per_block} messages/block, {result.virtual_time_ms} virtual ms"
    )
    table = Table("validator", "leader share", "credit")
    for i, share in enumerate(result.leader_share):
        credit = result.credit[i] if i < len(result.credit) else "-"
        table.add_row(str(i), f"{share:.3f}", str(credit))
    console.print(table)
    f = result.fairness
    console.print(f"fairness: leader share max deviation {f.leader_share_max_deviation:.4f}, "
                  f"proposer reward gini {f.proposer_reward_gini:.4f}")
    faults = ", ".join(f"{k}={v}" for k, v in result.faults.items() if v)
    console.print(f"faults: {faults or 'none'}")
    for v in result.violations:
        console.print(f"[red]{v.kind}[/] at {v.time_ms} ms (step {v.step}): {escape(v.detail)}")
    if result.violations:
        console.print(f"reproduce with: {result.reproduce}", markup=False)
