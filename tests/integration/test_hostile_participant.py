"""A hostile participant on a live 4-process devnet cannot stop the chain (issue 10, item 8).

Setup: 4 validator processes on 127.0.0.1 (``node.devnet.localnet``), demo accounts, 8 s
market slots, default node config (API rate limits on). The hostile side signs its
own transactions and posts them over REST like any client.

Phases, each followed by a normal trade cycle (a generator sells, a consumer buys,
the slot clears, both meters report, the slot settles) that must complete on every
node with identical block ids and state roots, every node ready and none with
``gridchain_execution_halted`` set:

1. a registration flood: 1,200 throw-away keys ask to register through every node;
2. a mempool flood from unregistered keys: transfers, orders and registrations
   signed by throw-away keys, in large batches, to every node;
3. extreme values: a 2^63−1 meter reading (import and export), orders at 2^63−1
   price and quantity, a 2^63−1 mint by the grid operator and a dispatch with a
   2^63−1 penalty that is left to expire. Each is refused at admission (4xx) or
   gets a receipt (committed or failed) without stopping anything; the reading is
   refused at admission.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consensus import codec, crypto
from contracts import transactions as txs
from node.devnet.localnet import LocalNet
from node.ops import genesis as gen
from node.ops.keys import load_key_file
from tests.integration.cluster_util import free_base_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("devnet_hostile"), pytest.mark.timeout(420)]

SLOT_MS = 8_000
"""Market slot length; the meter window is as long. Short enough for three cycles, long enough
that a reading submitted at the end of delivery commits inside its window on a loaded machine."""
I64_MAX = 2**63 - 1
MSGPACK = "application/msgpack"
ATTACKER_ADDRESS = "127.0.0.2"


def _request(url: str, body: bytes | None = None, content_type: str = "application/json",
             timeout_s: float = 30.0) -> tuple[int, Any, dict[str, str]]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, json.loads(resp.read() or b"null"), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            body_out = json.loads(raw or b"null")
        except ValueError:
            body_out = raw.decode(errors="replace")
        return exc.code, body_out, dict(exc.headers)
    except (OSError, urllib.error.URLError):
        return 0, None, {}


class Devnet:
    """The running network and signing helpers for its demo accounts."""

    def __init__(self, net: LocalNet, out: Path) -> None:
        self.net = net
        self.urls = [n["api_url"] for n in net.nodes]
        self.metrics_urls = [n["metrics_url"] for n in net.nodes]
        self.chain_id = net.network["chain_id"]
        accounts = json.loads((out / "accounts.json").read_text())
        self.keys = {a["name"]: load_key_file(a["key_file"]) for a in accounts}
        self.addr = {a["name"]: a["address"] for a in accounts}
        self._nonce = int(time.time() * 1000)
        self.market = self.get(0, "/v1/status")["market"]

    def get(self, node: int, path: str) -> Any:
        status, body, _ = _request(self.urls[node] + path)
        return body if status == 200 else None

    def sign(self, who: str, body: Any) -> bytes:
        """A transaction of demo account ``who`` with a fresh (increasing) nonce."""
        key = self.keys[who]
        self._nonce += 1
        tx = txs.Tx(chain_id=self.chain_id, sender=key.address, public_key=key.public_key, nonce=self._nonce,
                    expires_at_ms=int(time.time() * 1000) + 120_000, body=body)
        return txs.sign_tx(tx, key.signer)

    def throwaway(self, tag: str, body: Any) -> bytes:
        """A transaction signed by a key nobody registered."""
        signer = crypto.Signer(codec.digest(tag.encode()))
        tx = txs.Tx(chain_id=self.chain_id, sender=crypto.address(signer.public_key), public_key=signer.public_key,
                    nonce=1, expires_at_ms=int(time.time() * 1000) + 120_000, body=body)
        return txs.sign_tx(tx, signer)

    def post(self, node: int, raw: bytes) -> tuple[int, Any]:
        status, body, _ = _request(self.urls[node] + "/v1/transactions", json.dumps({"raw": raw.hex()}).encode())
        return status, body

    def post_batch(self, node: int, raws: list[bytes]) -> tuple[int, Any, dict[str, str]]:
        """A flood's batch, sent from the attacker's own address (127.0.0.2): the per-address
        limit then throttles the attacker, not the honest traders on 127.0.0.1."""
        url = urllib.parse.urlsplit(self.urls[node])
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30,
                                          source_address=(ATTACKER_ADDRESS, 0))
        try:
            conn.request("POST", "/v1/transactions", body=codec.encode(raws), headers={"Content-Type": MSGPACK})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null"), dict(resp.headers)
        finally:
            conn.close()

    def outcome(self, tx_hash: str, *, timeout_s: float = 30.0) -> dict[str, Any]:
        """The executed receipt of ``tx_hash`` (committed or failed), read from node 0."""
        try:
            return wait_until(  # type: ignore[no-any-return]
                f"a receipt for {tx_hash[:16]}",
                lambda: (r := self.get(0, f"/v1/transactions/{tx_hash}")) and r["status"] != "pending" and r,
                timeout_s=timeout_s)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the chain stopped? /readyz: {self.readiness()}") from None

    def readiness(self) -> list[Any]:
        """Each node's /readyz answer (503 bodies carry the reason, e.g. execution_halted)."""
        return [_request(url + "/readyz")[1] for url in self.urls]

    def submit_all(self, items: list[tuple[int, str, Any]]) -> list[dict[str, Any]]:
        """Submit (node, who, body) items back to back, then wait for every receipt."""
        hashes = []
        for node, who, body in items:
            status, out = self.post(node, self.sign(who, body))
            assert status == 202, (who, body, out)
            hashes.append(out["tx_hash"])
        return [self.outcome(h) for h in hashes]

    def slot_end_ms(self, slot: int) -> int:
        return int(self.market["genesis_time_ms"] + (slot + 1) * self.market["slot_ms"])

    def current_slot(self) -> int:
        return int((time.time() * 1000 - self.market["genesis_time_ms"]) // self.market["slot_ms"])

    def halted_gauge(self, node: int) -> float:
        with urllib.request.urlopen(self.metrics_urls[node], timeout=10) as resp:
            text = resp.read().decode()
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("gridchain_execution_halted ")]
        assert values, "gridchain_execution_halted is not exported"
        return values[0]


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    out = tmp_path_factory.mktemp("hostile") / "net"
    gen.generate_network(out, nodes=gen.parse_nodes("4"), base_port=free_base_port(), slot_ms=SLOT_MS,
                         chain_id="gridchain-hostile")
    net = LocalNet(out, log_level="warning")
    net.start_all()
    try:
        net.wait_ready(timeout_s=90)
        yield Devnet(net, out)
    finally:
        net.stop_all()


def trade_cycle(d: Devnet, what: str) -> None:
    """A generator sells and a consumer buys one slot through different nodes; the slot
    clears and settles; then every node agrees and every node is ready and not halted."""
    now_ms = time.time() * 1000
    slot = d.current_slot() + 1
    while d.market["genesis_time_ms"] + slot * SLOT_MS - d.market["gate_lead_ms"] < now_ms + 2_500:
        slot += 1
    placed = d.submit_all([
        (1, "generator-1", txs.PlaceOrder(slot=slot, side="sell", price_u_per_wh=40, quantity_wh=2_000)),
        (2, "consumer-2", txs.PlaceOrder(slot=slot, side="buy", price_u_per_wh=90, quantity_wh=2_000)),
    ])
    assert all(p["status"] == "committed" for p in placed), (what, _codes(placed))
    cleared = wait_until(f"slot {slot} to clear after {what}",
                         lambda: (s := d.get(3, f"/v1/market/slots/{slot}")) and s["status"] != "open" and s,
                         timeout_s=SLOT_MS / 1000 * 4)
    assert cleared["volume_wh"] == 2_000, (what, cleared)
    # Readings are judged by block time, which can trail the wall clock: wait for a block past the end.
    wait_until("a block after the end of delivery",
               lambda: d.get(0, "/v1/status")["market"]["block_timestamp_ms"] >= d.slot_end_ms(slot),
               timeout_s=SLOT_MS / 1000 * 3)
    readings = d.submit_all([
        (0, "generator-1", txs.SubmitReading(slot=slot, import_wh=0, export_wh=2_000)),
        (3, "consumer-2", txs.SubmitReading(slot=slot, import_wh=2_000, export_wh=0)),
    ])
    assert all(r["status"] == "committed" for r in readings), (what, _codes(readings))
    settled = wait_until(f"slot {slot} to settle after {what}",
                         lambda: (s := d.get(0, f"/v1/market/slots/{slot}")) and s["status"] == "settled" and s,
                         timeout_s=SLOT_MS / 1000 * 5)
    for i in range(4):  # a node may execute the settling block a moment later than node 0
        wait_until(f"slot {slot} settled on node {i}",
                   lambda i=i: (s := d.get(i, f"/v1/market/slots/{slot}")) and s["status"] == "settled",
                   timeout_s=15)
        assert d.get(i, f"/v1/market/slots/{slot}") == settled, (what, i)
    assert_agreement(d, what)


def _codes(outcomes: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(o["status"], o.get("height"), (o.get("receipt") or {}).get("code"), (o.get("receipt") or {}).get("message"))
            for o in outcomes]


def assert_agreement(d: Devnet, what: str) -> None:
    """Every node ready, not halted, and with the same block id and state root at a common height."""
    for i in range(4):
        status, body, _ = _request(d.urls[i] + "/readyz")
        assert status == 200, (what, i, body)
        assert d.halted_gauge(i) == 0, (what, i)
    height = min(d.get(i, "/v1/status")["height"] for i in range(4))
    for h in sorted({1, height // 2 or 1, height}):
        views = [d.get(i, f"/v1/blocks/{h}") for i in range(4)]
        assert len({(b["block_id"], b["state_root"], b["receipts_root"]) for b in views}) == 1, (what, h)


def test_registration_flood_is_bounded_and_the_market_goes_on(devnet: Devnet) -> None:
    """1,200 throw-away keys ask to register, 100 per request, through every node. Check:
    each node takes at most its per-address burst plus the refill while the flood lasts,
    refuses the rest with 429 rate_limited and Retry-After, and trading goes on."""
    d = devnet
    body = txs.RegisterRequest(role="consumer", zone="Z1", name="flood")
    started = time.monotonic()
    accepted = [0] * 4
    for batch in range(3):
        for node in range(4):
            raws = [d.throwaway(f"reg-{batch}-{node}-{i}", body) for i in range(100)]
            status, out, headers = d.post_batch(node, raws)
            assert status in (202, 429), (status, out)
            if status == 429 or out["rejected"]:
                assert int(headers["Retry-After"]) >= 1
                results = out.get("results") or []
                assert {r["error"]["code"] for r in results if "error" in r} <= {"rate_limited"}, out
            accepted[node] += out["accepted"] if status == 202 else 0
    elapsed_s = time.monotonic() - started
    refill = 600 / 60 * elapsed_s
    assert all(n <= 100 + refill + 1 for n in accepted), (accepted, elapsed_s)
    assert sum(accepted) < 4 * 300, "the per-address limit let the whole flood in"
    trade_cycle(d, "a registration flood")


def test_mempool_flood_from_unregistered_keys_is_refused_and_the_market_goes_on(devnet: Devnet) -> None:
    """Batches of 1,000 transfers and orders signed by throw-away keys go to every node,
    then registrations. Check: the transfers and orders are 403 not_registered, the
    registrations beyond the limits 429; no node's mempool holds more than the limits
    let in; trading goes on."""
    d = devnet
    slot = d.current_slot() + 3
    kinds = [txs.Transfer(to=d.addr["consumer-2"], amount_u=1),
             txs.PlaceOrder(slot=slot, side="buy", price_u_per_wh=50, quantity_wh=10)]
    for node in range(4):
        raws = [d.throwaway(f"mem-{node}-{i}", kinds[i % 2]) for i in range(1_000)]
        status, out, _ = d.post_batch(node, raws)
        assert status in (403, 429), (status, out)
        if status == 403:
            assert {r["error"]["code"] for r in out["results"]} == {"not_registered"}
    for node in range(4):
        raws = [d.throwaway(f"mem-reg-{node}-{i}", txs.RegisterRequest(role="consumer", zone="Z1", name="m"))
                for i in range(500)]
        status, out, _ = d.post_batch(node, raws)
        assert status in (202, 429), (status, out)
        if status == 202:
            assert out["accepted"] <= 110, out
    pooled = [d.get(i, "/v1/status")["mempool_size"] for i in range(4)]
    assert all(size <= 4 * 110 for size in pooled), pooled
    trade_cycle(d, "a mempool flood from unregistered keys")


def test_extreme_values_are_refused_or_fail_alone_and_the_market_goes_on(devnet: Devnet) -> None:
    """2^63−1 in every quantity a participant or the grid operator sets. Check: the meter
    reading is refused at admission (4xx); every other value is refused at admission or
    gets a receipt (committed or failed); after the previous slot settles and the
    dispatch deadline passes, the trade cycle completes on every node."""
    d = devnet
    previous = d.current_slot() - 1
    wait_until("the reading window of the previous slot", lambda: time.time() * 1000 >= d.slot_end_ms(previous),
               timeout_s=10)
    readings = [("consumer-1", txs.SubmitReading(slot=previous, import_wh=I64_MAX, export_wh=0)),
                ("generator-1", txs.SubmitReading(slot=previous, import_wh=0, export_wh=I64_MAX))]
    for who, body in readings:
        status, out = d.post(0, d.sign(who, body))
        assert 400 <= status < 500, f"a 2^63-1 reading by {who} was admitted ({status} {out})"
    now_ms = int(time.time() * 1000)
    slot = d.current_slot() + 3
    others = [
        ("consumer-1", txs.PlaceOrder(slot=slot, side="buy", price_u_per_wh=I64_MAX, quantity_wh=1)),
        ("consumer-1", txs.PlaceOrder(slot=slot, side="buy", price_u_per_wh=50, quantity_wh=I64_MAX)),
        ("generator-1", txs.PlaceOrder(slot=slot, side="sell", price_u_per_wh=1, quantity_wh=I64_MAX)),
        ("grid-operator", txs.Mint(to=d.addr["consumer-1"], amount_u=I64_MAX)),
        ("grid-operator", txs.Mint(to=d.addr["consumer-1"], amount_u=I64_MAX)),
        ("grid-operator", txs.IssueDispatch(account=d.addr["consumer-1"], direction="curtail", amount_wh=I64_MAX,
                                            deadline_ms=now_ms + 1_500, penalty_u=I64_MAX)),
        ("grid-operator", txs.IssueDispatch(account=d.addr["generator-1"], direction="increase", amount_wh=1,
                                            deadline_ms=I64_MAX, penalty_u=I64_MAX)),
    ]
    admitted = []
    for node, (who, body) in enumerate(others):
        status, out = d.post(node % 4, d.sign(who, body))
        assert status == 202 or 400 <= status < 500, (who, body, status, out)
        if status == 202:
            admitted.append(out["tx_hash"])
    for tx_hash in admitted:
        assert d.outcome(tx_hash)["status"] in ("committed", "failed")
    # Past the dispatch deadline and the previous slot's settlement, a trade cycle still completes.
    settle_ms = d.slot_end_ms(previous) + d.market.get("meter_window_ms", SLOT_MS)
    wait_until("the previous slot's settlement time", lambda: time.time() * 1000 > max(settle_ms, now_ms + 1_500),
               timeout_s=15)
    trade_cycle(d, "extreme values")
