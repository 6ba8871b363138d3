"""One member, one host, for real: four hosts (network namespaces on a bridge), the
genesis ceremony with each key made on its own host, each node started from its
member home (the layout deploy/member/ mounts) with TLS peer links to the others by
DNS name, trades across the hosts; then a degraded link, a cut link, and a restart
at a new address on one member: the chain keeps committing, heals, and all four
nodes agree on every block, state root, slot and balance.

Marker e2e (the serial stage of `make test`: it needs root, and runs four node
processes at once). Every wait is bounded; the finalizer stops the nodes and
removes the namespaces, the bridge and the hosts files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.e2e import netns
from tests.e2e.harness import DEPLOY

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

GRIDCHAIN = str(Path(sys.executable).parent / "gridchain")
MEMBERS = ("generator", "grid", "retailer", "user")
"""Validators in name order: generator 0, grid 1, retailer 2, user 3 (the others dial user)."""
ACCOUNT_ROLE = {"generator": "generator", "grid": "grid", "retailer": "retailer", "user": "consumer"}
BALANCE_U = 1_000_000_000_000
SLOT_MS = 10_000
P2P, API, METRICS = 26656, 8080, 9100
FLAKY = "user"
MEMBER_COMPOSE = DEPLOY / "member" / "docker-compose.yml"
T = TypeVar("T")

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, timeout_s: float = 3.0) -> Any:
    with _NO_PROXY.open(url, timeout=timeout_s) as response:
        body = response.read()
    return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()


def wait_until(what: str, probe: Callable[[], T | None], *, timeout_s: float, poll_s: float = 0.5) -> T:
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        try:
            value = probe()
        except (OSError, ValueError, KeyError) as exc:
            value, last = None, f" (last error: {exc})"
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}{last}")
        time.sleep(poll_s)


class Consortium:
    def __init__(self, net: netns.Network, root: Path) -> None:
        self.net, self.root = net, root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def home(self, name: str) -> Path:
        return self.root / name

    def on(self, name: str, *argv: str, timeout_s: float = 90) -> Any:
        """Run ``gridchain ARGV`` on host ``name``; its JSON output."""
        cmd = self.net.hosts[name].exec_argv(GRIDCHAIN, *argv)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def on_all(self, commands: list[tuple[str, list[str]]], timeout_s: float = 90) -> list[Any]:
        """Run several ``gridchain`` commands at once, each on its host; their JSON outputs."""
        procs = [subprocess.Popen(self.net.hosts[name].exec_argv(GRIDCHAIN, *argv), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for name, argv in commands]
        outs = []
        for (name, argv), proc in zip(commands, procs, strict=True):
            stdout, stderr = proc.communicate(timeout=timeout_s)
            assert proc.returncode == 0, f"{name}: gridchain {' '.join(argv)}\n{stdout}\n{stderr}"
            outs.append(json.loads(stdout))
        return outs

    def api(self, name: str) -> str:
        return f"http://{self.net.hosts[name].address}:{API}"

    def start(self, name: str) -> None:
        """Start a node the way deploy/member/docker-compose.yml does: its command and
        environment, with the home directory in place of the container's /data."""
        service = yaml.safe_load(MEMBER_COMPOSE.read_text())["services"]["node"]
        argv = [str(self.home(name)) if a == "/data" else a for a in service["command"]]
        env = {**os.environ, **{k: str(v) for k, v in service["environment"].items() if "$" not in str(v)}}
        log = (self.home(name) / "node.log").open("ab")
        self.procs[name] = subprocess.Popen(self.net.hosts[name].exec_argv(GRIDCHAIN, *argv), env=env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def height(self, name: str) -> int:
        return int(get(f"{self.api(name)}/v1/status")["height"])

    def heights(self, names: tuple[str, ...] = MEMBERS) -> dict[str, int]:
        return {n: self.height(n) for n in names}

    def peers(self, name: str) -> int:
        text = get(f"http://{self.net.hosts[name].address}:{METRICS}/metrics")
        line = next(ln for ln in text.splitlines() if ln.startswith("gridchain_peers "))
        return int(float(line.split()[1]))

    def ready(self, name: str) -> bool:
        return get(f"{self.api(name)}/readyz").get("status") == "ready"

    def log_tail(self) -> str:
        return "\n".join(f"--- {n}\n" + (self.home(n) / "node.log").read_text()[-2500:]
                         for n in MEMBERS if (self.home(n) / "node.log").exists())


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[Consortium]:
    why = netns.missing_requirements()
    if why:
        pytest.skip(why)
    net = netns.Network(tag=str(os.getpid() % 10_000), names=MEMBERS)
    c = Consortium(net, tmp_path)
    try:
        net.open()
        yield c
    finally:
        for name in list(c.procs):
            c.stop(name)
        net.close()


def ceremony(c: Consortium) -> dict[str, dict[str, Any]]:
    """Keys on each host; only public files travel; each member checks the hash."""
    accounts = {}
    for name in MEMBERS:
        host, home = c.net.hosts[name], c.home(name)
        c.on(name, "keys", "new", "--out", str(home / "validator_key.json"), "--member", str(home / "member.json"),
             "--name", name, "--role", name, "--p2p-url", f"wss://{host.fqdn}:{P2P}/p2p",
             "--api-url", f"http://{host.fqdn}:{API}")
        accounts[name] = c.on(name, "keys", "new", "--out", str(home / "account_key.json"))
    coordinator = c.root / "coordinator"
    coordinator.mkdir()
    public = []
    for name in MEMBERS:  # what each member sends to the coordinator: the member file only
        (coordinator / f"{name}.json").write_bytes((c.home(name) / "member.json").read_bytes())
        public.append(str(coordinator / f"{name}.json"))
    assert not any("seed" in Path(p).read_text() for p in public)
    account_args = [a for n in MEMBERS for a in
                    ("--account", f"{n}-account:{ACCOUNT_ROLE[n]}:{BALANCE_U}:{accounts[n]['public_key']}")]
    made = subprocess.run([GRIDCHAIN, "genesis", "--members", *public, *account_args, "--slot-ms", str(SLOT_MS),
                           "--chain-id", "gridchain-netns", "-o", str(coordinator / "genesis.json")],
                          capture_output=True, text=True, timeout=60, check=True)
    digest = json.loads(made.stdout)["genesis_hash"]
    for name in MEMBERS:
        home = c.home(name)
        (home / "genesis.json").write_bytes((coordinator / "genesis.json").read_bytes())
        assert c.on(name, "genesis", "verify", str(home / "genesis.json"), "--expect", digest)["ok"] is True
        for other in MEMBERS:
            (home / f"peers-{other}.json").write_bytes((coordinator / f"{other}.json").read_bytes())
        config = c.on(name, "member", "config", "--home", str(home), "--new-chain", "--members",
                      *[str(home / f"peers-{o}.json") for o in MEMBERS])
        assert config["tls"] is True and all(u.startswith("wss://") for u in config["peers"])
    return accounts


def pick_slot(c: Consortium, *, lead_s: float) -> int:
    market = get(f"{c.api('grid')}/v1/status")["market"]
    now = time.time() * 1000
    slot = int((now - market["genesis_time_ms"]) // market["slot_ms"]) + 1
    while market["genesis_time_ms"] + slot * market["slot_ms"] - market["gate_lead_ms"] < now + lead_s * 1000:
        slot += 1
    return slot


def keeps_committing(c: Consortium, names: tuple[str, ...], *, window_s: float, at_least: int) -> dict[str, int]:
    before = c.heights(names)
    time.sleep(window_s)
    after = c.heights(names)
    grown = {n: after[n] - before[n] for n in names}
    assert all(g >= at_least for g in grown.values()), f"blocks committed in {window_s}s: {grown}"
    return grown


def test_four_members_on_four_hosts_trade_and_survive_a_flaky_member(consortium: Consortium) -> None:
    c = consortium
    accounts = ceremony(c)
    for name in MEMBERS:
        c.start(name)
    try:
        for name in MEMBERS:
            wait_until(f"{name} ready", lambda name=name: c.ready(name), timeout_s=90)
        wait_until("every TLS link up", lambda: all(c.peers(n) == 3 for n in MEMBERS), timeout_s=30)

        # Trades across hosts: each member submits from its own host to its own node, by DNS name.
        slot = pick_slot(c, lead_s=25)  # room for three CLI processes on a loaded machine
        orders = [("generator", "sell", 40, 3_000), ("user", "buy", 90, 2_000), ("retailer", "buy", 60, 1_500)]
        placed = c.on_all([(name, ["tx", "order", "--node", f"http://{c.net.hosts[name].fqdn}:{API}",
                                   "--key", str(c.home(name) / "account_key.json"), "--slot", str(slot),
                                   "--side", side, "--price", str(price), "--quantity-wh", str(qty), "--wait"])
                           for name, side, price, qty in orders])
        assert all(p["status"] == "committed" for p in placed), placed
        cleared = wait_until("clearing", lambda: (s := get(f"{c.api('grid')}/v1/market/slots/{slot}"))
                             and s["status"] != "open" and s, timeout_s=4 * SLOT_MS / 1000)
        assert cleared["volume_wh"] == 3_000, cleared

        # A degraded link on one member: everyone, that member included, keeps committing.
        how = c.net.degrade(FLAKY, delay_ms=80, loss_pct=5)
        print(f"degraded {FLAKY}'s link with {how}")
        grown = keeps_committing(c, MEMBERS, window_s=10, at_least=3)
        print(f"blocks committed in 10 s on a degraded link: {grown}")
        c.net.heal(FLAKY)

        # A cut link: the other three keep a quorum and commit; the cut member loses its peers.
        others = tuple(n for n in MEMBERS if n != FLAKY)
        c.net.cut(FLAKY)
        # Slow at first: the cut validator stays eligible to lead until its failed rounds are
        # in committed history (docs/CREDIT.md), and each of its rounds ends by timeout.
        grown = keeps_committing(c, others, window_s=30, at_least=3)
        print(f"blocks committed by the others in the 30 s after the cut: {grown}")
        wait_until(f"the dead links to {FLAKY} noticed", lambda: all(c.peers(n) == 2 for n in others),
                   timeout_s=40)
        c.net.heal(FLAKY)
        target = max(c.heights(("generator", "grid")).values())
        wait_until(f"{FLAKY} reconnected", lambda: c.peers(FLAKY) == 3, timeout_s=60)
        wait_until(f"{FLAKY} caught up", lambda: c.height(FLAKY) >= target, timeout_s=60)

        # A restart at a new address: same key, same certificate, same data; peers find it by name.
        identity = {f: (c.home(FLAKY) / f).read_bytes() for f in ("validator_key.json", "tls_cert.pem")}
        height_before = c.height(FLAKY)
        c.stop(FLAKY)
        c.net.move(FLAKY, f"{c.net.subnet}.14")
        grown = keeps_committing(c, others, window_s=10, at_least=2)
        print(f"blocks committed by the others in 10 s with {FLAKY} stopped: {grown}")
        c.start(FLAKY)
        wait_until(f"{FLAKY} ready at its new address", lambda: c.ready(FLAKY), timeout_s=90)
        wait_until("every link up again", lambda: all(c.peers(n) == 3 for n in MEMBERS), timeout_s=60)
        assert {f: (c.home(FLAKY) / f).read_bytes() for f in identity} == identity
        status = get(f"{c.api(FLAKY)}/v1/status")
        assert status["node_name"] == FLAKY and status["node_id"] == MEMBERS.index(FLAKY)
        assert status["height"] >= height_before
        keeps_committing(c, MEMBERS, window_s=5, at_least=2)

        # Agreement: every block, state root, the slot and every balance, on every node.
        top = min(c.heights().values())
        for h in range(1, top + 1):
            views = {(b["block_id"], b["state_root"]) for b in (get(f"{c.api(n)}/v1/blocks/{h}") for n in MEMBERS)}
            assert len(views) == 1, f"nodes disagree at height {h}: {views}"
        slots = [get(f"{c.api(n)}/v1/market/slots/{slot}") for n in MEMBERS]
        assert {(s["volume_wh"], s["price_u_per_wh"]) for s in slots} == {(3_000, cleared["price_u_per_wh"])}

        def same_accounts() -> bool:
            views = [{a['address']: get(f"{c.api(n)}/v1/accounts/{a['address']}") for a in accounts.values()}
                     for n in MEMBERS]
            return all(v == views[0] for v in views)

        wait_until("every node showing the same accounts", same_accounts, timeout_s=15)
        print(f"agreed on {top} blocks; link faults by {how}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{c.log_tail()}") from exc
