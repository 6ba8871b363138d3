"""Process cluster: kill -9 of a follower and of the leader, restart and catch-up, wiped data dir rebuild.

Setup: 4 validator processes on 127.0.0.1 (n=4, f=1). Each test perturbs one node
while transfers keep flowing, then checks the others kept committing, the node
came back to the same chain (identical block ids and state roots), and the
transactions submitted meanwhile committed everywhere.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.devnet.localnet import LocalNet
from tests.integration.cluster_util import (
    Sender,
    all_committed,
    assert_same_chain,
    start_network,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster_crash"), pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    network = start_network(tmp_path_factory.mktemp("crash"))
    try:
        yield network
    finally:
        network.stop_all()


def _survive_outage(net: LocalNet, victim: int, sender: Sender, *, wipe: bool = False) -> None:
    others = [i for i in range(4) if i != victim]
    start = max(net.height(i) for i in others)
    net.kill(victim)  # SIGKILL
    if wipe:
        shutil.rmtree(Path(net.home(victim)) / "data")
    hashes = submit(net, others[0], [sender.sign() for _ in range(20)])
    wait_until("the others to keep committing", lambda: min(net.height(i) for i in others) >= start + 5)
    wait_until("transfers committed without the victim", lambda: all_committed(net, hashes, others))
    net.start(victim)
    net.wait_ready([victim], timeout_s=60)
    target = max(net.height(i) for i in others)
    wait_until("the victim to catch up", lambda: net.height(victim) >= target, timeout_s=60)
    wait_until("transfers visible on the victim", lambda: all_committed(net, hashes, [victim]))
    assert_same_chain(net, list(range(4)), target)


def test_kill_9_of_a_follower_then_restart_catches_up(net: LocalNet) -> None:
    sender = Sender(net, "consumer-1")
    status = net.status(0)
    assert status is not None
    follower = next(i for i in range(4) if i != status["leader"])
    _survive_outage(net, follower, sender)


def test_kill_9_of_the_leader_others_keep_committing(net: LocalNet) -> None:
    sender = Sender(net, "consumer-2", to="consumer-1")
    status = net.status(0)
    assert status is not None
    _survive_outage(net, int(status["leader"]), sender)


def test_wiped_data_dir_rebuilds_from_peers_and_signs_again(net: LocalNet) -> None:
    sender = Sender(net, "prosumer-1", to="consumer-1")
    victim = 2
    voted_before = net.status(victim)["last_voted_round"]  # type: ignore[index]
    _survive_outage(net, victim, sender, wipe=True)
    # The double-sign guard lets it vote again only above every round it may have signed in.
    wait_until("the rebuilt node to vote again",
               lambda: (net.status(victim) or {}).get("last_voted_round", 0) > voted_before, timeout_s=60)


def test_whole_network_kill_9_and_restart_resumes(net: LocalNet) -> None:
    """All four killed at once: restarted from their stores (safety data, certified tip,
    committed blocks) they resume committing above their old height."""
    before = max(net.height(i) for i in range(4))
    for i in range(4):
        net.kill(i)
    net.start_all()
    net.wait_ready(timeout_s=60)
    wait_until("the restarted network to commit again",
               lambda: min(net.height(i) for i in range(4)) >= before + 5, timeout_s=60)
    assert_same_chain(net, list(range(4)), before + 5)
