"""Hosts for the member-deployment test: Linux network namespaces joined by a bridge.

Each host is a namespace with one veth link (``eth0`` inside) on a bridge that lives
in a namespace of its own (the switch); one more veth joins the root namespace to the
switch with the last address of the subnet, so the test reaches every host's API from
outside, like an operator's monitoring would. Host names resolve
through ``/etc/netns/<ns>/hosts``, which ``ip netns exec`` mounts over ``/etc/hosts``
(rewritten in place, so running processes see an address change).

Link faults: ``degrade`` adds delay and loss with ``tc netem`` where the kernel has it;
a kernel without netem (some CI sandboxes) gets a token-bucket rate limit (queueing
delay) and random drops with iptables' ``statistic`` match instead, and the caller is
told which. ``cut`` drops every packet silently (iptables DROP: no RST, the worst case
for a peer link). Needs root, iproute2 and iptables; everything made is removed by
``close``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

NETNS_ETC = Path("/etc/netns")
DOMAIN = "gridchain.test"


def run(*cmd: str, check: bool = True, timeout_s: float = 20) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout_s, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def missing_requirements() -> str | None:
    """Why these hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (deploy/install-tools.sh installs it)"
    return None


@dataclass
class Host:
    name: str
    ns: str
    veth: str
    address: str

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{DOMAIN}"

    def exec_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]


@dataclass
class Network:
    """``Network(tag, names)``; ``open()``, then ``close()`` (always; it tolerates half-made state)."""

    tag: str
    names: tuple[str, ...]
    subnet: str = field(default="")
    hosts: dict[str, Host] = field(default_factory=dict)
    degraded: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.switch = f"gcm{self.tag}-switch"
        self.uplink = f"gcv{self.tag}up"[:13]
        self.subnet = self.subnet or f"10.213.{int(self.tag) % 250}"
        for i, name in enumerate(self.names):
            self.hosts[name] = Host(name=name, ns=f"gcm{self.tag}-{name}", veth=f"gcv{self.tag}x{i}"[:15],
                                    address=f"{self.subnet}.{i + 1}")

    def open(self) -> None:
        # The bridge lives in a namespace of its own, so the root namespace's firewall
        # (e.g. Docker's FORWARD policy DROP) never sees the hosts' traffic.
        run("ip", "netns", "add", self.switch)
        sw = ["ip", "netns", "exec", self.switch]
        run(*sw, "ip", "link", "add", "br0", "type", "bridge")
        run(*sw, "ip", "link", "set", "br0", "up")
        # The root namespace's leg: the test reaches every host's API from here.
        run("ip", "link", "add", self.uplink, "type", "veth", "peer", "name", f"{self.uplink}p")
        run("ip", "link", "set", f"{self.uplink}p", "netns", self.switch)
        run(*sw, "ip", "link", "set", f"{self.uplink}p", "master", "br0", "up")
        run("ip", "addr", "add", f"{self.subnet}.254/24", "dev", self.uplink)
        run("ip", "link", "set", self.uplink, "up")
        for host in self.hosts.values():
            run("ip", "netns", "add", host.ns)
            run(*sw, "ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.ns)
            run(*sw, "ip", "link", "set", host.veth, "master", "br0", "up")
            run(*host.exec_argv("ip", "addr", "add", f"{host.address}/24", "dev", "eth0"))
            run(*host.exec_argv("ip", "link", "set", "eth0", "up"))
            run(*host.exec_argv("ip", "link", "set", "lo", "up"))
            (NETNS_ETC / host.ns).mkdir(parents=True, exist_ok=True)
        self.write_hosts_files()

    def write_hosts_files(self) -> None:
        """Every host's /etc/hosts names every host; rewritten in place (same inode)."""
        lines = ["127.0.0.1 localhost"] + [f"{h.address} {h.fqdn} {h.name}" for h in self.hosts.values()]
        for host in self.hosts.values():
            with open(NETNS_ETC / host.ns / "hosts", "w") as f:
                f.write("\n".join(lines) + "\n")

    def move(self, name: str, address: str) -> None:
        """Give a host a new address (its name follows in every hosts file)."""
        host = self.hosts[name]
        run(*host.exec_argv("ip", "addr", "del", f"{host.address}/24", "dev", "eth0"))
        run(*host.exec_argv("ip", "addr", "add", f"{address}/24", "dev", "eth0"))
        host.address = address
        self.write_hosts_files()

    # ------------------------------------------------------------------ faults
    def _drop_on_eth0(self, host: Host, *match: str) -> None:
        """``iptables -A INPUT -i eth0 MATCH -j DROP`` and the same on OUTPUT with ``-o``."""
        for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):
            run(*host.exec_argv("iptables", "-w", "-A", chain, flag, "eth0", *match, "-j", "DROP"))

    def degrade(self, name: str, *, delay_ms: int, loss_pct: int) -> str:
        """Delay and loss on a host's link; returns how (``netem`` or ``tbf+statistic``)."""
        host = self.hosts[name]
        netem = run(*host.exec_argv("tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay",
                                    f"{delay_ms}ms", f"{delay_ms // 5}ms", "loss", f"{loss_pct}%"), check=False)
        if netem.returncode == 0:
            self.degraded[name] = "netem"
        else:
            # No netem in this kernel: a slow link (queueing delay) and random drops.
            run(*host.exec_argv("tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "2mbit",
                                "burst", "16kb", "latency", f"{max(delay_ms, 50)}ms"))
            self._drop_on_eth0(host, "-m", "statistic", "--mode", "random",
                               "--probability", f"{loss_pct / 100:.3f}")
            self.degraded[name] = "tbf+statistic"
        return self.degraded[name]

    def heal(self, name: str) -> None:
        """Undo ``degrade`` and ``cut``."""
        host = self.hosts[name]
        run(*host.exec_argv("tc", "qdisc", "del", "dev", "eth0", "root"), check=False)
        for chain in ("INPUT", "OUTPUT"):
            run(*host.exec_argv("iptables", "-w", "-F", chain), check=False)
        self.degraded.pop(name, None)

    def cut(self, name: str) -> None:
        """Drop every packet to and from a host's link, silently (loopback stays)."""
        self._drop_on_eth0(self.hosts[name])

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Deleting a namespace deletes its links, and the veth peers with them."""
        for ns in [h.ns for h in self.hosts.values()] + [self.switch]:
            with contextlib.suppress(Exception):
                run("ip", "netns", "del", ns, check=False)
        with contextlib.suppress(Exception):
            run("ip", "link", "del", self.uplink, check=False)
        for host in self.hosts.values():
            shutil.rmtree(NETNS_ETC / host.ns, ignore_errors=True)
