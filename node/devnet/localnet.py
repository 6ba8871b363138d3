"""A cluster of ``gridchain node`` processes on 127.0.0.1 (devnet, bench, integration tests).

``LocalNet(network_dir)`` reads ``network.json`` (written by ``node.ops.genesis``),
starts one process per node with its output appended to ``<home>/node.log``,
waits for ``/readyz``, and stops them (SIGTERM, then SIGKILL after a grace
period). Every process it starts is tracked, so nothing is left running.
Observers (``node_role`` ``observer`` in network.json, after the validators) are
nodes like the others; ``register_observers`` has each one's member name its node
key on chain (``set_node_key``), after which the validators let it follow.

``Supervisor(net, say)`` keeps a devnet going: when a node exits it reports which
one (name, pid, exit code), restarts it after a backoff (1 s, 2 s, 4 s, ... capped)
and reports the height the node resumed at, from its ``/v1/status``, once it has
loaded its chain, then the height at which ``/readyz`` says it is in sync again;
the other nodes are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NODE_LOG = "node.log"
_RUN_CLI = "import sys; from node.cli import main; sys.exit(main())"


def http_get_json(url: str, *, timeout_s: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


def http_status(url: str, *, timeout_s: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, urllib.error.URLError):
        return 0


class LocalNet:
    """The node processes of one network directory."""

    def __init__(self, network_dir: Path, *, env: dict[str, str] | None = None, log_level: str = "info") -> None:
        self.dir = Path(network_dir)
        self.network = json.loads((self.dir / "network.json").read_text())
        self.nodes: list[dict[str, Any]] = self.network["nodes"]
        self.env = {**os.environ, **(env or {})}
        self.log_level = log_level
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def home(self, index: int) -> Path:
        return Path(self.nodes[index]["home"])

    def api(self, index: int) -> str:
        return str(self.nodes[index]["api_url"])

    def start(self, index: int) -> None:
        assert index not in self.procs or self.procs[index].poll() is not None, f"node {index} is running"
        home = self.home(index)
        log = open(home / NODE_LOG, "ab")  # noqa: SIM115 - owned by the child process
        try:
            self.procs[index] = subprocess.Popen(
                [sys.executable, "-c", _RUN_CLI, "node", "--home", str(home), "--log-level", self.log_level],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
            )
        finally:
            log.close()

    def validators(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.get("node_role", "validator") == "validator"]

    def observers(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.get("node_role") == "observer"]

    def register_observers(self, *, timeout_s: float = 60.0) -> None:
        """Each observer's member names its node key on chain (through a validator's API);
        returns once every such transaction has committed."""
        from contracts.transactions import SetNodeKey, Tx, sign_tx
        from node.ops.keys import load_key_file

        accounts = {a["name"]: a for a in json.loads((self.dir / "accounts.json").read_text())}
        api = self.api(self.validators()[0])
        pending = []
        for index in self.observers():
            node = self.nodes[index]
            key = load_key_file(accounts[node["member"]]["key_file"])
            now = int(time.time() * 1000)
            tx = Tx(chain_id=self.network["chain_id"], sender=key.address, public_key=key.public_key, nonce=now,
                    expires_at_ms=now + 600_000, body=SetNodeKey(node_key=bytes.fromhex(node["public_key"])))
            raw = sign_tx(tx, key.signer)
            body = json.dumps({"raw": raw.hex()}).encode()
            request = urllib.request.Request(api + "/v1/transactions", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                pending.append(json.loads(response.read())["tx_hash"])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"set_node_key not committed after {timeout_s:.0f} s: {pending}")
            try:
                if http_get_json(f"{api}/v1/transactions/{pending[0]}").get("status") in ("committed", "failed"):
                    pending.pop(0)
                    continue
            except (OSError, ValueError, urllib.error.URLError):
                pass
            time.sleep(0.2)

    def start_all(self) -> None:
        for index in range(len(self.nodes)):
            self.start(index)

    def pid(self, index: int) -> int | None:
        proc = self.procs.get(index)
        return None if proc is None else proc.pid

    def running(self, index: int) -> bool:
        proc = self.procs.get(index)
        return proc is not None and proc.poll() is None

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.get(index)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    def stop(self, index: int, *, grace_s: float = 10.0) -> None:
        proc = self.procs.get(index)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def stop_all(self, *, grace_s: float = 10.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def status(self, index: int) -> dict[str, Any] | None:
        try:
            return http_get_json(self.api(index) + "/v1/status")  # type: ignore[no-any-return]
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def is_ready(self, index: int) -> bool:
        return http_status(self.api(index) + "/readyz") == 200

    def wait_ready(self, indexes: list[int] | None = None, *, timeout_s: float = 60.0) -> None:
        wanted = list(range(len(self.nodes))) if indexes is None else indexes
        deadline = time.monotonic() + timeout_s
        while True:
            pending = [i for i in wanted if not self.is_ready(i)]
            if not pending:
                return
            for i in pending:
                proc = self.procs.get(i)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"node {self.nodes[i]['name']} exited with {proc.returncode}; "
                                       f"see {self.home(i) / NODE_LOG}")
            if time.monotonic() > deadline:
                names = ", ".join(self.nodes[i]["name"] for i in pending)
                raise TimeoutError(f"nodes not ready after {timeout_s:.0f} s: {names}")
            time.sleep(0.2)

    def height(self, index: int) -> int:
        status = self.status(index)
        return -1 if status is None else int(status["height"])

    def wait_height(self, height: int, indexes: list[int] | None = None, *, timeout_s: float = 60.0) -> None:
        wanted = list(range(len(self.nodes))) if indexes is None else indexes
        deadline = time.monotonic() + timeout_s
        while any(self.height(i) < height for i in wanted):
            if time.monotonic() > deadline:
                heights = {self.nodes[i]["name"]: self.height(i) for i in wanted}
                raise TimeoutError(f"height {height} not reached in {timeout_s:.0f} s: {heights}")
            time.sleep(0.2)

    def __enter__(self) -> LocalNet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def describe_exit(returncode: int) -> str:
    """``exit code 3`` or ``exit code -9 (SIGKILL)``."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"exit code {returncode} ({signal.Signals(-returncode).name})"
    return f"exit code {returncode}"


@dataclass
class _Watch:
    """What the supervisor knows about one node."""

    failures: int = 0  # exits since the node last stayed up for ``stable_s``
    restart_at: float | None = None  # when a down node is started again
    awaiting: str | None = None  # restarted: "resume" (state loaded), then "ready" (/readyz 200)
    started_at: float = 0.0


class Supervisor:
    """Restarts the nodes of a running ``LocalNet`` that exit, with exponential backoff.

    ``poll()`` does one pass (tests drive it directly); ``start()`` runs it every
    ``poll_s`` on a daemon thread until ``stop()``. ``say`` receives one line per event.
    """

    def __init__(self, net: LocalNet, say: Callable[[str], None], *, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0, stable_s: float = 60.0, poll_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.net = net
        self.say = say
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_s = stable_s
        self.poll_s = poll_s
        self.clock = clock
        now = clock()
        self.watch = [_Watch(started_at=now) for _ in net.nodes]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def delay_s(self, failures: int) -> float:
        """Backoff before restart number ``failures`` (1-based): 1 s, 2 s, 4 s, ... capped."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** max(0, failures - 1)))

    def poll(self) -> None:
        now = self.clock()
        for index, watch in enumerate(self.watch):
            name = self.net.nodes[index]["name"]
            proc = self.net.procs.get(index)
            if watch.restart_at is not None:
                if now >= watch.restart_at:
                    watch.restart_at = None
                    self.net.start(index)
                    watch.started_at = now
                    watch.awaiting = "resume"
                    self.say(f"node {name} restarted (pid {self.net.pid(index)}, attempt {watch.failures})")
                continue
            if proc is None:
                continue
            if proc.poll() is not None:
                if now - watch.started_at >= self.stable_s:
                    watch.failures = 0
                watch.failures += 1
                watch.awaiting = None
                delay = self.delay_s(watch.failures)
                watch.restart_at = now + delay
                self.say(f"node {name} exited (pid {proc.pid}, {describe_exit(proc.returncode)}); "
                         f"restarting in {delay:g} s; see {self.net.home(index) / NODE_LOG}")
                continue
            if watch.awaiting == "resume":
                status = self.net.status(index)
                # The API answers before the node has loaded its chain (empty state root).
                if status is not None and status.get("state_root"):
                    watch.awaiting = "ready"
                    self.say(f"node {name} resumed at height {int(status['height'])} (pid {proc.pid})")
            elif watch.awaiting == "ready" and self.net.is_ready(index):
                watch.awaiting = None
                self.say(f"node {name} is in sync again at height {self.net.height(index)}")

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="devnet-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops supervising (no restart after this returns); the nodes keep running."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
