"""Helpers for the process-cluster tests: a 4-node network on 127.0.0.1, signed transfers, waits."""

from __future__ import annotations

import json
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts.transactions import Transfer, Tx, sign_tx
from node.devnet.localnet import LocalNet
from node.ops import genesis as gen
from node.ops.keys import load_key_file


def free_base_port(span: int = 300) -> int:
    """A base port P such that P..P+span-1 look free (p2p P+i, api P+100+i, metrics P+200+i).

    Drawn below Linux's ephemeral range (32768+): a client connecting to a node that is not
    listening yet could otherwise get the node's port as its own source port and connect to
    itself (it then reads back its own request as the answer)."""
    rng = random.SystemRandom()
    for _ in range(100):
        base = rng.randrange(10_000, 32_768 - span)
        if all(_port_free(base + off) for off in (0, 1, 2, 3, 100, 101, 102, 103, 200, 201, 202, 203)):
            return base
    raise RuntimeError("no free port range found")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_network(tmp: Path, *, debug: bool = False, round_timeout_ms: int = 1_000) -> LocalNet:
    out = tmp / "net"
    gen.generate_network(out, nodes=gen.parse_nodes("4"), base_port=free_base_port(), slot_ms=60_000,
                         chain_id="gridchain-test", round_timeout_ms=round_timeout_ms)
    net = LocalNet(out, env={"GRIDCHAIN_DEBUG_ENDPOINTS": "1"} if debug else None)
    net.start_all()
    try:
        net.wait_ready(timeout_s=60)
    except BaseException:
        net.stop_all()
        raise
    return net


def wait_until(what: str, check: Callable[[], Any], *, timeout_s: float = 60.0, poll_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def http_json(url: str, body: Any = None, *, timeout_s: float = 15.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except (OSError, urllib.error.URLError):
        return 0, None


class Sender:
    """Signs transfers from one demo account with increasing nonces."""

    def __init__(self, net: LocalNet, name: str = "consumer-1", to: str = "consumer-2") -> None:
        accounts = {a["name"]: a for a in json.loads((net.dir / "accounts.json").read_text())}
        self.key = load_key_file(accounts[name]["key_file"])
        self.to = accounts[to]["address"]
        self.chain_id = net.network["chain_id"]
        self.nonce = 0

    def sign(self, amount_u: int = 1) -> bytes:
        self.nonce += 1
        tx = Tx(chain_id=self.chain_id, sender=self.key.address, public_key=self.key.public_key,
                nonce=self.nonce, expires_at_ms=int(time.time() * 1000) + 600_000,
                body=Transfer(to=self.to, amount_u=amount_u))
        return sign_tx(tx, self.key.signer)


def submit(net: LocalNet, index: int, raws: list[bytes]) -> list[str]:
    """Submit to node ``index``; every tx must be accepted (202); returns the hashes."""
    status, body = http_json(net.api(index) + "/v1/transactions",
                             {"transactions": [{"raw": raw.hex()} for raw in raws]})
    assert status == 202, (status, body)
    hashes = [item["tx_hash"] for item in body["results"]]
    assert all("error" not in item for item in body["results"]), body
    return hashes


def tx_status(net: LocalNet, index: int, tx_hash: str) -> str | None:
    status, body = http_json(net.api(index) + f"/v1/transactions/{tx_hash}")
    return body.get("status") if status == 200 and isinstance(body, dict) else None


def all_committed(net: LocalNet, hashes: list[str], indexes: list[int]) -> bool:
    return all(tx_status(net, i, h) == "committed" for i in indexes for h in hashes)


def block_at(net: LocalNet, index: int, height: int) -> dict[str, Any] | None:
    status, body = http_json(net.api(index) + f"/v1/blocks/{height}")
    return body if status == 200 else None


def assert_same_chain(net: LocalNet, indexes: list[int], height: int) -> None:
    """Every node in ``indexes`` has identical block ids and state roots at 1..height (sampled)."""
    for h in sorted({1, height // 2 or 1, height}):
        blocks = [wait_until(f"block {h} on node {i}", lambda i=i, h=h: block_at(net, i, h), timeout_s=30)
                  for i in indexes]
        assert all(b is not None for b in blocks), f"height {h} missing on some node"
        assert len({b["block_id"] for b in blocks}) == 1, f"block ids differ at height {h}"  # type: ignore[index]
        assert len({b["state_root"] for b in blocks}) == 1, f"state roots differ at height {h}"  # type: ignore[index]


def metric(net: LocalNet, index: int, name: str) -> float:
    """Sum of every sample of ``name`` on node ``index``'s /metrics."""
    url = net.nodes[index]["metrics_url"]
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            if head == name or head.startswith(name + "{"):
                total += float(value)
    return total


def node_root(home: Path) -> Path:
    return home / "data"
