"""A seed replays exactly: same events in the same order, same result, also in a
fresh interpreter with a different hash seed (no dependence on set/dict hashing
of bytes or on the wall clock)."""

from __future__ import annotations

import os
import subprocess
import sys

from node.sim.config import SimConfig
from node.sim.runner import Simulation

CONFIG = SimConfig(nodes=4, seed=9, rounds=40, byzantine=1, behaviour="double-vote", crash=1,
                   partition=True, loss_percent=10)

SCRIPT = """
from node.sim.config import SimConfig
from node.sim.runner import Simulation
sim = Simulation(SimConfig(nodes=4, seed=9, rounds=40, byzantine=1, behaviour="double-vote",
                           crash=1, partition=True, loss_percent=10))
result = sim.run()
print(sim.trace.hexdigest(), result.committed_height, result.messages)
"""


def run_trace() -> tuple[str, int, int]:
    sim = Simulation(CONFIG)
    result = sim.run()
    return sim.trace.hexdigest(), result.committed_height, result.messages


def test_same_seed_same_run_in_process() -> None:
    assert run_trace() == run_trace()


def test_same_seed_same_run_across_interpreters_and_hash_seeds() -> None:
    here = run_trace()
    for hash_seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                             text=True, timeout=120, check=True).stdout.split()
        assert (out[0], int(out[1]), int(out[2])) == here


def test_different_seeds_differ() -> None:
    other = Simulation(SimConfig(**{**{f: getattr(CONFIG, f) for f in CONFIG.__struct_fields__},
                                    "seed": 10}))
    other.run()
    assert other.trace.hexdigest() != run_trace()[0]
