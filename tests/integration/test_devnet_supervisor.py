"""`gridchain devnet` as a user runs it: kill -9 of one node's pid leaves the other three
committing, the devnet says which node exited, restarts it and prints the height it
resumed at; SIGINT then stops every node and the devnet exits 0."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from node.devnet.localnet import http_get_json
from tests.integration.cluster_util import free_base_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("devnet_supervisor"), pytest.mark.timeout(300)]

RUN_CLI = "import sys; from node.cli import main; sys.exit(main())"
NODE_LINE = re.compile(r"^\s+(\S+)\s+\S+\s+pid (\d+)\s+api (\S+)")


class Output:
    """The devnet's merged stdout/stderr, line by line, read on a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=lambda: [self._queue.put(line) for line in stream], daemon=True).start()

    def wait_for(self, pattern: str, *, timeout_s: float) -> re.Match[str]:
        regex = re.compile(pattern)
        for line in self.lines:
            if match := regex.search(line):
                return match
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            self.lines.append(line.rstrip("\n"))
            if match := regex.search(line):
                return match
        raise AssertionError(f"devnet never printed /{pattern}/ in {timeout_s:.0f} s; output:\n"
                             + "\n".join(self.lines))


def height(api: str) -> int:
    try:
        return int(http_get_json(api + "/v1/status")["height"])
    except (OSError, ValueError, KeyError):
        return -1


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_kill_9_of_one_node_the_others_keep_committing_and_it_comes_back(tmp_path: Path) -> None:
    home = tmp_path / "devnet"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, "devnet", "--nodes", "4", "--home", str(home),
         "--base-port", str(free_base_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    node_pids: set[int] = set()
    try:
        out = Output(proc)
        out.wait_for(r"devnet running", timeout_s=120)
        nodes = {m.group(1): (int(m.group(2)), m.group(3)) for line in out.lines if (m := NODE_LINE.match(line))}
        network = json.loads((home / "network.json").read_text())
        assert sorted(nodes) == sorted(n["name"] for n in network["nodes"]), out.lines
        node_pids.update(pid for pid, _ in nodes.values())

        victim = network["nodes"][-1]["name"]
        victim_pid, victim_api = nodes[victim]
        others = {name: api for name, (_, api) in nodes.items() if name != victim}
        wait_until("the devnet to commit 3 blocks", lambda: height(victim_api) >= 3, timeout_s=60)
        before = {name: height(api) for name, api in others.items()}
        victim_before = height(victim_api)
        assert min(before.values()) >= 0 and victim_before >= 1, (before, victim_before)

        os.kill(victim_pid, signal.SIGKILL)
        out.wait_for(rf"node {victim} exited \(pid {victim_pid}, exit code -9 \(SIGKILL\)\); restarting in 1 s",
                     timeout_s=15)
        assert all(pid_alive(pid) for name, (pid, _) in nodes.items() if name != victim)
        wait_until("the other three nodes to commit 3 more blocks",
                   lambda: all(height(api) >= before[name] + 3 for name, api in others.items()),
                   timeout_s=60)

        restarted = out.wait_for(rf"node {victim} restarted \(pid (\d+), attempt 1\)", timeout_s=15)
        node_pids.add(int(restarted.group(1)))
        resumed = out.wait_for(rf"node {victim} resumed at height (\d+) \(pid {restarted.group(1)}\)",
                               timeout_s=60)
        # It resumes from its own database: at least the height it had reported before the kill.
        assert int(resumed.group(1)) >= victim_before
        synced = out.wait_for(rf"node {victim} is in sync again at height (\d+)", timeout_s=60)
        assert int(synced.group(1)) >= int(resumed.group(1))
        wait_until("the restarted node to catch up with the others",
                   lambda: height(victim_api) >= max(before.values()) + 3, timeout_s=60)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, "\n".join(out.lines)
        out.wait_for(r"stopping nodes", timeout_s=5)
        assert not [pid for pid in node_pids if pid_alive(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for pid in node_pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
