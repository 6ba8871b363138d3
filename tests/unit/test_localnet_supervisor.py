"""node.devnet.localnet.Supervisor: backoff schedule, exit report, restart, resume report (fake net)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node.devnet.localnet import Supervisor, describe_exit


class FakeProc:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


class FakeNet:
    def __init__(self) -> None:
        self.nodes = [{"name": "a"}, {"name": "b"}]
        self.procs: dict[int, Any] = {0: FakeProc(100), 1: FakeProc(101)}
        self.next_pid = 200
        self.statuses: dict[int, dict[str, Any] | None] = {}
        self.ready: set[int] = set()

    def home(self, index: int) -> Path:
        return Path("home") / self.nodes[index]["name"]

    def start(self, index: int) -> None:
        self.procs[index] = FakeProc(self.next_pid)
        self.next_pid += 1

    def pid(self, index: int) -> int:
        return int(self.procs[index].pid)

    def status(self, index: int) -> dict[str, Any] | None:
        return self.statuses.get(index)

    def is_ready(self, index: int) -> bool:
        return index in self.ready

    def height(self, index: int) -> int:
        status = self.statuses.get(index)
        return -1 if status is None else int(status["height"])


def test_backoff_doubles_from_one_second_and_is_capped() -> None:
    sup = Supervisor(FakeNet(), print, max_backoff_s=30)  # type: ignore[arg-type]
    assert [sup.delay_s(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_exit_restart_and_resume_are_reported_and_the_other_node_is_untouched() -> None:
    now = [1000.0]
    net = FakeNet()
    lines: list[str] = []
    sup = Supervisor(net, lines.append, clock=lambda: now[0])  # type: ignore[arg-type]
    net.procs[1].returncode = -9
    sup.poll()
    assert lines == ["node b exited (pid 101, exit code -9 (SIGKILL)); restarting in 1 s; "
                     f"see {Path('home/b/node.log')}"]
    now[0] += 0.5
    sup.poll()
    assert len(lines) == 1 and net.procs[1].pid == 101  # still backing off
    now[0] += 0.6
    sup.poll()
    assert lines[-1] == "node b restarted (pid 200, attempt 1)"
    net.statuses[1] = {"height": 0, "state_root": ""}  # API up, chain not loaded yet
    sup.poll()
    assert len(lines) == 2
    net.statuses[1] = {"height": 41, "state_root": "ab"}
    sup.poll()
    assert lines[-1] == "node b resumed at height 41 (pid 200)"
    net.ready.add(1)
    net.statuses[1] = {"height": 45, "state_root": "cd"}
    sup.poll()
    assert lines[-1] == "node b is in sync again at height 45"
    assert net.procs[0].pid == 100  # the running node was never restarted
    net.procs[1].returncode = 1  # a second quick exit backs off longer
    sup.poll()
    assert "exit code 1); restarting in 2 s" in lines[-1]


def test_describe_exit() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-15) == "exit code -15 (SIGTERM)"
