"""A seed sweep: many simulated runs mixing every fault kind, zero violations expected.

    python -m node.sim.sweep --runs 10000 [--jobs 2] [--nodes 4,7] [--rounds 60] [--start 0]

Run ``i`` gets seed ``start + i`` and a configuration drawn from that seed by
``sweep_config``: n from ``--nodes``, a Byzantine behaviour (equivocate,
double-vote, silent, twins, forge-tc, inflate-round, withhold-sync, garbage-sync,
false-blame; ``seed`` modulo their number) with 1..f faulty validators in four
runs out of five, 0..f crashing validators (plain restart, crash between persist and send,
or wiped restart), a partition in about 40% of the runs, message loss of
0–20% and, in 40% of the runs, up to 0.5 or 2 s of extra delay per message
(asynchrony) while the faults last. Prints progress and a summary; every failing run prints its
``reproduce with: gridchain sim ...`` line. Exit status 1 on any violation or
any run without progress.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

import msgspec

from node.sim.config import BEHAVIOURS, SimConfig

DEFAULT_ROUNDS = 60
LOSS_CHOICES = (0, 0, 0, 5, 10, 20)
FAULT_DELAY_CHOICES_MS = (0, 0, 0, 500, 2_000)
LOG_EVERY_RUNS = 500
"""Without a terminal (CI logs, nohup), print a progress line this often."""


def sweep_config(seed: int, *, nodes: Sequence[int] = (4, 7), rounds: int = DEFAULT_ROUNDS) -> SimConfig:
    """The configuration of sweep run ``seed`` (deterministic)."""
    rng = random.Random(f"sweep:{seed}")
    n = rng.choice(list(nodes))
    f = (n - 1) // 3
    behaviour = BEHAVIOURS[seed % len(BEHAVIOURS)]
    byzantine = 0 if seed % 5 == 4 or f == 0 else rng.randint(1, f)
    return SimConfig(
        nodes=n,
        seed=seed,
        rounds=rounds,
        byzantine=byzantine,
        behaviour=behaviour,
        crash=rng.randint(0, f),
        partition=rng.randrange(100) < 40,
        loss_percent=rng.choice(LOSS_CHOICES),
        fault_delay_ms=rng.choice(FAULT_DELAY_CHOICES_MS),
    )


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What the sweep keeps of one run."""

    seed: int
    behaviour: str
    """The Byzantine behaviour of the run (``none`` when it has no Byzantine validator)."""
    ok: bool
    progress: bool
    committed_height: int
    rounds: int
    committed_fraction: float
    violations: tuple[str, ...]
    reproduce: str
    faults: dict[str, int]


def run_one(config: SimConfig) -> RunSummary:
    from node.sim.runner import simulate

    result = simulate(config)
    return RunSummary(
        seed=config.seed,
        behaviour=config.behaviour if config.byzantine else "none",
        ok=result.ok,
        progress=result.committed_height > 0 and result.liveness_ok,
        committed_height=result.committed_height,
        rounds=result.rounds,
        committed_fraction=result.committed_fraction,
        violations=tuple(f"{v.kind}: {v.detail}" for v in result.violations),
        reproduce=result.reproduce,
        faults=result.faults,
    )


def run_sweep(configs: Iterable[SimConfig], *, jobs: int = 1) -> Iterator[RunSummary]:
    """Results of ``configs``, in order; ``jobs`` > 1 runs them in worker processes."""
    if jobs <= 1:
        for config in configs:
            yield run_one(config)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(run_one, configs, chunksize=4)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.sim.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000)
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--nodes", default="4,7", help="comma-separated committee sizes")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    args = parser.parse_args(argv)
    nodes = tuple(int(x) for x in args.nodes.split(","))
    configs = [sweep_config(args.start + i, nodes=nodes, rounds=args.rounds) for i in range(args.runs)]

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console()
    failed: list[RunSummary] = []
    faults: Counter[str] = Counter()
    blocks = 0
    lowest: dict[str, float] = {}
    with Progress(
        TextColumn("[bold]sim sweep"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(), console=console,
    ) as progress:
        task = progress.add_task("sweep", total=len(configs), failed=0)
        for summary in run_sweep(configs, jobs=args.jobs):
            blocks += summary.committed_height
            lowest[summary.behaviour] = min(lowest.get(summary.behaviour, 1.0), summary.committed_fraction)
            faults.update(summary.faults)
            if not (summary.ok and summary.progress):
                failed.append(summary)
                console.print(f"seed {summary.seed} FAILED: "
                              + "; ".join(summary.violations or ("no progress",)),
                              style="red", markup=False)
                console.print(f"reproduce with: {summary.reproduce}", markup=False)
            progress.update(task, advance=1, failed=len(failed))
            done = int(progress.tasks[0].completed)
            if not console.is_terminal and done % LOG_EVERY_RUNS == 0:
                # No live bar in a log file: a line now and then instead.
                console.print(f"{done}/{len(configs)} runs, {len(failed)} failed, "
                              f"{progress.tasks[0].elapsed or 0.0:.0f} s", markup=False)
        elapsed_s = progress.tasks[0].elapsed or 0.0
    console.print(
        f"{len(configs)} runs (seeds {args.start}..{args.start + len(configs) - 1}, n in {nodes}, "
        f"{args.rounds} rounds): {len(configs) - len(failed)} passed, {len(failed)} failed; "
        f"{blocks} blocks committed; {elapsed_s:.0f} s with {args.jobs} job(s)"
    )
    console.print("faults injected: " + ", ".join(f"{k}={v}" for k, v in sorted(faults.items())))
    console.print("smallest committed fraction per behaviour: "
                  + ", ".join(f"{k}={v:.3f}" for k, v in sorted(lowest.items())))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
