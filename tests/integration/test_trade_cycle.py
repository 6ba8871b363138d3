"""A full trade cycle through the CLI and REST only, on a real 4-process devnet.

Setup: ``gridchain devnet --nodes 4`` on 127.0.0.1 (generator, grid, retailer,
user validators; demo accounts funded in genesis), short market slots.
Steps, every one a ``gridchain`` subprocess or a plain HTTP GET: a new key
registers as a prosumer, the grid operator approves and mints to it, bids and
asks for one slot go to different nodes, the slot clears at gate closure, every
trader submits its meter reading, the slot settles; one trade's lineage proofs
are verified offline against block headers fetched from a different node, and
online with ``verify-proof --node`` against two other nodes.
Check: every node returns identical blocks, state roots, slot records and
balances.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster_util import free_base_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("devnet_trade_cycle"), pytest.mark.timeout(240)]

SLOT_MS = 8_000  # the reading window is one slot: room for 4 CLI processes to start on a loaded 2-core machine
GRIDCHAIN = str(Path(sys.executable).with_name("gridchain"))


def http_get(url: str) -> Any:
    """GET a JSON document; None on 404."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def wait_until(what: str, check: Any, *, timeout_s: float, poll_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except (OSError, urllib.error.URLError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll_s)


def cli(*argv: str, expect: int = 0) -> Any:
    proc = subprocess.run([GRIDCHAIN, *argv], capture_output=True, text=True, timeout=90)
    assert proc.returncode == expect, f"gridchain {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def cli_parallel(commands: list[list[str]]) -> list[Any]:
    procs = [subprocess.Popen([GRIDCHAIN, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv in commands]
    outs = []
    for argv, proc in zip(commands, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=90)
        assert proc.returncode == 0, f"gridchain {' '.join(argv)}\n{stdout}\n{stderr}"
        outs.append(json.loads(stdout))
    return outs


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("devnet")
    log = (home.parent / "devnet.log").open("w")
    proc = subprocess.Popen(
        [GRIDCHAIN, "devnet", "--nodes", "4", "--home", str(home), "--base-port", str(free_base_port()),
         "--slot-ms", str(SLOT_MS)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        network = wait_until("network.json", lambda: json.loads((home / "network.json").read_text()),
                             timeout_s=60)
        urls = [n["api_url"] for n in network["nodes"]]
        for url in urls:
            wait_until(f"{url}/readyz", lambda url=url: http_get(f"{url}/readyz"), timeout_s=90)
        accounts = {a["name"]: a for a in json.loads((home / "accounts.json").read_text())}
        yield {"home": home, "urls": urls, "accounts": accounts, "proc": proc}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def pick_slot(url: str, *, lead_s: float) -> int:
    """First slot whose gate closes at least ``lead_s`` from now."""
    market = http_get(f"{url}/v1/status")["market"]
    now = time.time() * 1000
    slot = int((now - market["genesis_time_ms"]) // market["slot_ms"]) + 1
    while market["genesis_time_ms"] + slot * market["slot_ms"] - market["gate_lead_ms"] < now + lead_s * 1000:
        slot += 1
    return slot


def test_trade_cycle_through_cli_and_rest_agrees_on_every_node(devnet: dict[str, Any], tmp_path: Path) -> None:
    urls, acc, home = devnet["urls"], devnet["accounts"], devnet["home"]
    key = {name: a["key_file"] for name, a in acc.items()}
    addr = {name: a["address"] for name, a in acc.items()}

    # Register and approve a new prosumer, then fund it.
    new_key = tmp_path / "newcomer.json"
    newcomer = cli("keys", "new", "--out", str(new_key))["address"]
    out = cli("tx", "register", "--node", urls[3], "--key", str(new_key), "--role", "prosumer",
              "--name", "newcomer", "--wait")
    assert out["status"] == "committed"
    cli("tx", "approve", "--node", urls[1], "--key", key["grid-operator"], "--account", newcomer, "--wait")
    cli("tx", "mint", "--node", urls[1], "--key", key["grid-operator"], "--to", newcomer,
        "--amount-u", "5000000", "--wait")
    assert http_get(f"{urls[0]}/v1/accounts/{newcomer}")["status"] == "active"

    # Bids and asks for one slot, through different nodes.
    slot = pick_slot(urls[0], lead_s=8)
    orders = [
        ("generator-1", "sell", 40, 3_000, 0), ("newcomer", "sell", 50, 1_000, 3),
        ("consumer-1", "buy", 90, 2_000, 1), ("consumer-2", "buy", 60, 1_500, 2),
    ]
    placed = cli_parallel([
        ["tx", "order", "--node", urls[node], "--key", str(new_key) if who == "newcomer" else key[who],
         "--slot", str(slot), "--side", side, "--price", str(price), "--quantity-wh", str(qty), "--wait"]
        for who, side, price, qty, node in orders
    ])
    assert all(p["status"] == "committed" for p in placed)

    cleared = wait_until("clearing", lambda: (s := http_get(f"{urls[2]}/v1/market/slots/{slot}"))
                         and s["status"] != "open" and s, timeout_s=SLOT_MS / 1000 * 4)
    assert cleared["volume_wh"] == 3_500 and cleared["price_u_per_wh"] is not None
    trades = cli("query", "trades", "--slot", str(slot), "--node", urls[1])["trades"]
    assert sum(t["quantity_wh"] for t in trades) == 3_500

    # Meter readings after delivery; the generator delivers exactly, the newcomer 10 % short.
    market = http_get(f"{urls[0]}/v1/status")["market"]
    slot_end_ms = market["genesis_time_ms"] + (slot + 1) * market["slot_ms"]
    # The window opens at the slot's end in block time, which may run behind the wall clock.
    wait_until("a block past the end of delivery",
               lambda: http_get(f"{urls[0]}/v1/status")["market"]["block_timestamp_ms"] >= slot_end_ms,
               timeout_s=SLOT_MS / 1000 * 3)
    net: dict[str, int] = {}
    for t in trades:
        net[t["seller"]] = net.get(t["seller"], 0) + t["quantity_wh"]
        net[t["buyer"]] = net.get(t["buyer"], 0) - t["quantity_wh"]
    readings = []
    for who in ("generator-1", "newcomer", "consumer-1", "consumer-2"):
        address = newcomer if who == "newcomer" else addr[who]
        contracted = net.get(address, 0)
        exported = contracted * 9 // 10 if who == "newcomer" else max(contracted, 0)
        readings.append(["tx", "reading", "--node", urls[0], "--key", str(new_key) if who == "newcomer" else key[who],
                         "--slot", str(slot), "--import-wh", str(max(-contracted, 0)),
                         "--export-wh", str(exported if contracted > 0 else 0), "--wait"])
    assert all(r["status"] == "committed" for r in cli_parallel(readings))

    settled = wait_until("settlement", lambda: (s := http_get(f"{urls[3]}/v1/market/slots/{slot}"))
                         and s["status"] == "settled" and s, timeout_s=SLOT_MS / 1000 * 4)
    short = newcomer if net.get(newcomer, 0) > 0 else None
    if short is not None:
        assert http_get(f"{urls[0]}/v1/accounts/{short}")["balance_u"] < 5_000_000 + net[short] * 50

    # Lineage proofs verify offline against headers fetched from another node.
    trace = cli("query", "trace", trades[0]["trade_id"], "--node", urls[0])
    trace_file = tmp_path / "trace.json"
    trace_file.write_text(json.dumps(trace))
    headers = []
    for h in sorted({e["location"]["height"] for e in trace["lineage"]}):
        path = tmp_path / f"header-{h}.json"
        path.write_text(json.dumps(cli("query", "block", str(h), "--node", urls[2])))
        headers += ["--header", str(path)]
    assert cli("verify-proof", str(trace_file), *headers)["ok"] is True
    # The README's form: the node itself serves every height the lineage spans (exit 0 == cli's expect).
    assert len(headers) >= 4, "a lineage spans several heights"
    online = cli("verify-proof", str(trace_file), "--node", urls[1], "--node", urls[3])
    assert online["ok"] is True and len(online["results"]) == len(trace["lineage"])

    # Every node agrees: blocks, state roots, the slot and every balance.
    height = min(http_get(f"{u}/v1/status")["height"] for u in urls)
    for h in range(1, height + 1):
        views = [http_get(f"{u}/v1/blocks/{h}") for u in urls]
        assert len({(b["block_id"], b["state_root"], b["receipts_root"]) for b in views}) == 1, h
    slots = [http_get(f"{u}/v1/market/slots/{slot}") for u in urls]
    assert all(s == settled for s in slots)
    for address in [newcomer, *addr.values()]:
        balances = {json.dumps(http_get(f"{u}/v1/accounts/{address}"), sort_keys=True) for u in urls}
        assert len(balances) == 1, address
    assert (home / "network.json").exists()


def post_raw(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    req = urllib.request.Request(f"{url}/v1/transactions", data=body, method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_bad_input_on_a_live_devnet_is_4xx_and_changes_nothing(devnet: dict[str, Any]) -> None:
    """Every kind of bad submission to a real node: a 4xx with its stable code, and the
    sender's account (nonce, balance) and the node's mempool are unchanged. Reusing a
    committed nonce is 409; replaying the very same bytes answers with the hash and
    applies nothing (idempotent resubmission, DESIGN "no accepted data lost")."""
    from consensus import codec, crypto
    from contracts import transactions as txs
    from node.ops import keys

    url, acc = devnet["urls"][0], devnet["accounts"]
    chain_id = http_get(f"{url}/v1/status")["chain_id"]
    consumer = keys.load_key_file(acc["consumer-1"]["key_file"])
    now_ms = int(time.time() * 1000)

    def tx(body: Any, *, nonce: int, chain: str = chain_id, signer: Any = consumer.signer,
           sender: str | None = None) -> bytes:
        t = txs.Tx(chain_id=chain, sender=sender or consumer.address, public_key=signer.public_key,
                   nonce=nonce, expires_at_ms=now_ms + 120_000, body=body)
        return txs.sign_tx(t, signer)

    transfer = txs.Transfer(to=acc["consumer-2"]["address"], amount_u=1)
    good = tx(transfer, nonce=now_ms)
    status, out = post_raw(url, json.dumps({"raw": good.hex()}).encode())
    assert status == 202
    committed = wait_until("commit", lambda: (r := http_get(f"{url}/v1/transactions/{out['tx_hash']}"))
                           and r["status"] == "committed", timeout_s=30)
    assert committed

    stx = txs.decode_signed_tx(tx(transfer, nonce=now_ms + 1))
    as_json = txs.tx_to_json(stx.tx)
    floats = {**as_json, "nonce": float(as_json["nonce"])}
    wrong_type = {**as_json, "nonce": str(as_json["nonce"])}
    forged = codec.encode(txs.SignedTxWire(tx_bytes=stx.tx_bytes, signature=bytes(64)))
    stranger = keys.new_signer()
    cases = [
        (b'{"raw": ', "application/json", 400, "malformed"),
        (json.dumps({"tx": floats, "signature": stx.signature.hex()}).encode(), "application/json", 400, "malformed"),
        (json.dumps({"tx": wrong_type, "signature": stx.signature.hex()}).encode(), "application/json", 400,
         "malformed"),
        (b'{"raw": "' + b"00" * 3_000_000 + b'"}', "application/json", 413, "body_too_large"),
        (json.dumps({"raw": forged.hex()}).encode(), "application/json", 400, "bad_signature"),
        (json.dumps({"raw": tx(transfer, nonce=now_ms + 2, chain="other").hex()}).encode(), "application/json",
         400, "wrong_chain"),
        (json.dumps({"raw": tx(txs.Transfer(to=consumer.address, amount_u=2), nonce=now_ms).hex()}).encode(),
         "application/json", 409, "stale_nonce"),
        (json.dumps({"raw": tx(transfer, nonce=5).hex()}).encode(), "application/json", 409, "stale_nonce"),
        (json.dumps({"raw": tx(transfer, nonce=1, signer=stranger, sender=crypto.address(stranger.public_key))
                     .hex()}).encode(), "application/json", 403, "not_registered"),
        (json.dumps({"raw": tx(txs.Mint(to=consumer.address, amount_u=10**9), nonce=now_ms + 3).hex()}).encode(),
         "application/json", 403, "unauthorized"),
        (b"\xc1\xc1", "application/msgpack", 400, "malformed"),
    ]
    before = http_get(f"{url}/v1/accounts/{consumer.address}")
    # A byte-identical replay of a committed tx is idempotent: its hash again, nothing applied twice.
    assert post_raw(url, json.dumps({"raw": good.hex()}).encode()) == (202, {"tx_hash": codec.digest(good).hex()})
    for body, content_type, want_status, want_code in cases:
        status, out = post_raw(url, body, content_type)
        assert (status, (out.get("error") or {}).get("code")) == (want_status, want_code), (want_code, out)
    time.sleep(1.0)  # a few blocks: nothing that was rejected may show up
    after = http_get(f"{url}/v1/accounts/{consumer.address}")
    assert (after["nonce"], after["balance_u"]) == (before["nonce"], before["balance_u"])
    assert http_get(f"{url}/v1/status")["mempool_size"] == 0


def test_every_running_node_reports_healthy_and_ready(devnet: dict[str, Any]) -> None:
    """Setup: the devnet has been up for a while. Check: /healthz and /readyz answer 200
    with status ok on every node (container health checks and load balancers rely on it)."""
    for url in devnet["urls"]:
        assert http_get(f"{url}/healthz") == {"status": "ok"}, url
        assert http_get(f"{url}/readyz") is not None, url
