"""Message complexity: votes go to the next leader only, so messages per committed
block grow linearly with n (about 2(n-1) in the happy path), not quadratically.
Prints the numbers for n = 4, 7, 10, 16."""

from __future__ import annotations

from node.sim.config import SimConfig
from node.sim.runner import simulate
from tests.sim.conftest import explain

SIZES = (4, 7, 10, 16)


def test_messages_per_block_grow_linearly_with_n() -> None:
    per_block: dict[int, float] = {}
    for n in SIZES:
        result = simulate(SimConfig(nodes=n, seed=1, rounds=40, duplicate_percent=0))
        assert result.ok, explain(result)
        per_block[n] = result.messages_per_block
        print(f"n={n:2d}: {result.messages_per_block:6.2f} messages/block "
              f"({result.messages_per_block_per_node:.2f} per validator), "
              f"{result.committed_height} blocks, {result.timeouts} timeouts")
    for n in SIZES:
        # Linear: per-validator messages per block stay below a constant.
        assert per_block[n] / n <= 4.0, per_block
    # Quadratic growth would multiply by 16 from n=4 to n=16; linear by about 5.
    assert per_block[16] / per_block[4] <= 8.0, per_block
