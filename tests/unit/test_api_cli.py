"""The ``gridchain tx`` / ``query`` / ``verify-proof`` commands and the sync client,
end to end against an in-process API server (real contracts, no consensus) running
in a background thread on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from contracts import transactions as txs
from node.api.app import create_api_app
from node.cli import main
from node.client import ApiClientError, Client
from node.ops import keys
from tests.unit.api_memory_backend import (
    SIGNERS,
    MemoryBackend,
    addr,
    autocommit,
    make_genesis,
    signed,
)


class ServerThread:
    """The API app on its own event loop in a daemon thread."""

    def __init__(self, backend: MemoryBackend, *, produce_blocks: bool = True) -> None:
        self.backend = backend
        self.produce_blocks = produce_blocks
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(create_api_app(self.backend))
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        task = self.loop.create_task(autocommit(self.backend)) if self.produce_blocks else None
        self._started.set()
        self.loop.run_forever()
        if task is not None:
            task.cancel()
        self.loop.run_until_complete(runner.cleanup())
        self.loop.close()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[ServerThread, dict[str, str]]]:
    # Slot 0 ended 5 s ago and its meter window is still open: readings for 'previous' are accepted.
    backend = MemoryBackend(make_genesis(t0_ms=time.time_ns() // 1_000_000 - 15_000, slot_ms=10_000))
    key_files = {}
    for name, signer in SIGNERS.items():
        path = tmp_path / f"{name}.json"
        keys.write_key_file(path, signer)
        key_files[name] = str(path)
    with ServerThread(backend) as server:
        yield server, key_files


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, orjson.loads(out) if out.strip() else None, err


def test_tx_transfer_wait_prints_hash_and_committed_receipt(node: Any, capsys: Any) -> None:
    server, key = node
    code, out, _ = run_cli(capsys, "tx", "transfer", "--node", server.url, "--key", key["cons"],
                           "--to", addr("gen"), "--amount-u", "1000", "--wait")
    assert code == 0
    assert out["status"] == "committed" and out["receipt"]["ok"] is True
    assert len(out["tx_hash"]) == 64
    assert server.backend.state.accounts[addr("gen")].balance_u == 10**12 + 1000


def test_tx_with_failed_receipt_exits_1_and_prints_the_receipt(node: Any, capsys: Any) -> None:
    server, key = node
    code, out, _ = run_cli(capsys, "tx", "transfer", "--node", server.url, "--key", key["cons"],
                           "--to", addr("gen"), "--amount-u", str(10**15), "--wait")
    assert code == 1
    assert out["status"] == "failed" and out["receipt"]["code"] == "insufficient_balance"


def test_tx_rejected_at_admission_exits_1_with_the_error_code(node: Any, capsys: Any) -> None:
    server, key = node
    code, out, err = run_cli(capsys, "tx", "transfer", "--node", server.url, "--key", key["stranger"],
                             "--to", addr("gen"), "--amount-u", "1")
    assert code == 1 and out is None
    assert orjson.loads(err)["error"]["code"] == "not_registered"


def test_bad_key_file_exits_2(node: Any, capsys: Any, tmp_path: Path) -> None:
    server, _ = node
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    code, _, err = run_cli(capsys, "tx", "burn", "--node", server.url, "--key", str(bad), "--amount-u", "1")
    assert code == 2 and orjson.loads(err)["error"]["code"] == "bad_key_file"


def test_unreachable_node_exits_1_unavailable(capsys: Any, tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    keys.write_key_file(path, SIGNERS["cons"])
    code, _, err = run_cli(capsys, "query", "status", "--node", "http://127.0.0.1:9")
    assert code == 1 and orjson.loads(err)["error"]["code"] == "unavailable"


def test_order_for_next_slot_then_query_it_back(node: Any, capsys: Any) -> None:
    server, key = node
    code, out, _ = run_cli(capsys, "tx", "order", "--node", server.url, "--key", key["cons"], "--slot", "next",
                           "--side", "buy", "--price", "20", "--quantity-wh", "50", "--wait")
    assert code == 0, out
    order_id = out["tx_hash"]
    # The receipt says what was placed: the order's id and the slot 'next' resolved to.
    assert out["receipt"]["order_id"] == order_id
    assert out["receipt"]["slot"] == server.backend.state.orders[order_id].slot
    code, order, _ = run_cli(capsys, "query", "order", order_id, "--node", server.url)
    assert code == 0 and order["owner"] == addr("cons") and order["status"] == "open"
    code, acc, _ = run_cli(capsys, "query", "account", addr("cons"), "--node", server.url)
    assert code == 0 and acc["locked_u"] == 1000
    code, _, err = run_cli(capsys, "query", "order", "0" * 64, "--node", server.url)
    assert code == 1 and orjson.loads(err)["error"]["code"] == "not_found"


def test_query_account_by_key_file_or_address(node: Any, capsys: Any, tmp_path: Path) -> None:
    server, key = node
    code, by_key, _ = run_cli(capsys, "query", "account", "--key", key["gen"], "--node", server.url)
    assert code == 0 and by_key["address"] == addr("gen") and by_key["settlements"] == []
    code, by_address, _ = run_cli(capsys, "query", "account", addr("gen"), "--node", server.url)
    assert code == 0 and by_address["address"] == by_key["address"]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    code, _, err = run_cli(capsys, "query", "account", "--key", str(bad), "--node", server.url)
    assert code == 2 and orjson.loads(err)["error"]["code"] == "bad_argument"
    with pytest.raises(SystemExit):  # an address and a key file at once is ambiguous
        main(["query", "account", addr("gen"), "--key", key["gen"], "--node", server.url])
    with pytest.raises(SystemExit):  # and neither names no account
        main(["query", "account", "--node", server.url])


def test_every_grid_operator_kind_through_the_cli(node: Any, capsys: Any, tmp_path: Path) -> None:
    server, key = node
    url = server.url
    newcomer = tmp_path / "newcomer.json"
    signer = keys.new_signer()
    keys.write_key_file(newcomer, signer)
    who = keys.load_key_file(newcomer).address
    steps = [
        ("register", "--key", str(newcomer), "--role", "prosumer", "--name", "new-pros"),
        ("approve", "--key", key["grid"], "--account", who),
        ("mint", "--key", key["grid"], "--to", who, "--amount-u", "5000"),
        ("set-meter-key", "--key", key["grid"], "--account", who, "--meter-key", key["stranger"]),
        ("transfer", "--key", str(newcomer), "--to", addr("cons"), "--amount-u", "100"),
        ("burn", "--key", key["grid"], "--amount-u", "10"),
        ("dispatch", "--key", key["grid"], "--account", who, "--direction", "curtail", "--amount-wh", "10",
         "--deadline-in-ms", "60000", "--penalty-u", "5"),
        ("ack", "--key", str(newcomer), "--dispatch-id", "1"),
        ("suspend", "--key", key["grid"], "--account", who),
        ("suspend", "--key", key["grid"], "--account", who, "--reinstate"),
        ("notarize", "--key", key["gen"], "--party-key", key["cons"], "--doc-hash", "ab" * 32, "--title", "ppa"),
    ]
    for kind, *rest in steps:
        code, out, err = run_cli(capsys, "tx", kind, "--node", url, "--wait", *rest)
        assert code == 0, (kind, out, err)
        assert out["receipt"]["ok"] is True, (kind, out)
    acc = server.backend.state.accounts[who]
    assert acc.status == "active" and acc.balance_u == 4900 and acc.meter_key == SIGNERS["stranger"].public_key
    code, out, _ = run_cli(capsys, "query", "dispatch", "--account", who, "--node", url)
    assert code == 0 and out["dispatch"][0]["status"] == "acknowledged"


def test_register_reject_through_the_cli(node: Any, capsys: Any, tmp_path: Path) -> None:
    server, key = node
    applicant = tmp_path / "applicant.json"
    keys.write_key_file(applicant, keys.new_signer())
    who = keys.load_key_file(applicant).address
    for kind, *rest in [("register", "--key", str(applicant), "--role", "consumer", "--name", "spam"),
                        ("register-reject", "--key", key["grid"], "--account", who)]:
        code, out, err = run_cli(capsys, "tx", kind, "--node", server.url, "--wait", *rest)
        assert code == 0 and out["receipt"]["ok"] is True, (kind, out, err)
    assert who not in server.backend.state.accounts
    assert server.backend.state.meta.pending_registrations == 0


def test_cancel_order_through_the_cli(node: Any, capsys: Any) -> None:
    server, key = node
    _, out, _ = run_cli(capsys, "tx", "order", "--node", server.url, "--key", key["gen"], "--slot", "next+1",
                        "--side", "sell", "--price", "5", "--quantity-wh", "10", "--wait")
    code, out, _ = run_cli(capsys, "tx", "cancel", "--node", server.url, "--key", key["gen"],
                           "--order-id", out["tx_hash"], "--wait")
    assert code == 0 and out["receipt"]["ok"] is True


def test_sync_client_queries_and_nonces_increase(node: Any) -> None:
    server, key = node
    with Client(server.url) as client:
        assert client.status()["chain_id"] == "test-chain"
        assert client.ready() is True
        first = client.send(SIGNERS["cons"], txs.Transfer(to=addr("gen"), amount_u=1))
        second = client.send(key["cons"], txs.Transfer(to=addr("gen"), amount_u=2))  # a key file
        assert first["tx_hash"] != second["tx_hash"]
        done = client.wait_for_receipt(second["tx_hash"], timeout_s=10)
        assert done["status"] == "committed"
        assert client.wait_for_receipt(first["tx_hash"], timeout_s=10)["status"] == "committed"
        assert client.account("0" * 40) is None
        with pytest.raises(ApiClientError) as err:
            client.submit(signed("cons", txs.Transfer(to=addr("gen"), amount_u=1), nonce=1,
                                 expires_at_ms=time.time_ns() // 1_000_000 + 60_000))
        assert err.value.code == "stale_nonce" and err.value.status == 409


def test_verify_proof_cli_accepts_a_trace_and_rejects_a_tampered_one(capsys: Any, tmp_path: Path) -> None:
    from tests.unit.test_api_queries import SLOT, trading_day

    async def produce() -> Any:
        from aiohttp.test_utils import TestClient, TestServer

        backend = MemoryBackend()
        async with TestClient(TestServer(create_api_app(backend), host="127.0.0.1")) as client:
            await trading_day(backend, client)
            trade_id = next(iter(backend.state.trades))
            trace = await (await client.get(f"/v1/trace/trades/{trade_id}")).json()
            header = await (await client.get(f"/v1/blocks/{trace['lineage'][3]['location']['height']}")).json()
            return trace, header

    trace, header = asyncio.run(produce())
    assert trace["lineage"][3]["record"]["slot"] == SLOT
    good = tmp_path / "trace.json"
    good.write_bytes(orjson.dumps(trace))
    code, out, _ = run_cli(capsys, "verify-proof", str(good))
    assert code == 0 and out["ok"] is True and len(out["results"]) == 8

    one = tmp_path / "one.json"
    one.write_bytes(orjson.dumps(trace["lineage"][3]))
    hdr = tmp_path / "header.json"
    hdr.write_bytes(orjson.dumps(header))
    code, out, _ = run_cli(capsys, "verify-proof", str(one), "--header", str(hdr))
    assert code == 0 and out["ok"] is True

    other = tmp_path / "other-header.json"
    other.write_bytes(orjson.dumps({**header, "receipts_root": "00" * 32}))
    code, _, err = run_cli(capsys, "verify-proof", str(one), "--header", str(hdr), "--header", str(other))
    assert code == 2 and "disagree" in orjson.loads(err)["error"]["message"]

    trace["lineage"][3]["leaf"] = trace["lineage"][3]["leaf"][:-2] + "00"
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps(trace))
    code, out, _ = run_cli(capsys, "verify-proof", str(bad))
    assert code == 1 and [r["ok"] for r in out["results"]].count(False) == 1

    garbage = tmp_path / "garbage.json"
    garbage.write_text("[1, 2")
    code, _, err = run_cli(capsys, "verify-proof", str(garbage))
    assert code == 2 and orjson.loads(err)["error"]["code"] == "bad_proof_file"


def test_readings_signed_by_own_key_and_by_a_meter_key(node: Any, capsys: Any) -> None:
    server, key = node
    url = server.url
    code, out, _ = run_cli(capsys, "tx", "reading", "--node", url, "--key", key["gen"], "--slot", "previous",
                           "--import-wh", "0", "--export-wh", "70", "--wait")
    assert code == 0 and out["receipt"]["ok"] is True
    code, out, _ = run_cli(capsys, "tx", "set-meter-key", "--node", url, "--key", key["grid"],
                           "--account", addr("cons"), "--meter-key", key["stranger"], "--wait")
    assert code == 0
    code, out, _ = run_cli(capsys, "tx", "reading", "--node", url, "--key", key["stranger"],
                           "--account", addr("cons"), "--slot", "previous", "--import-wh", "40",
                           "--export-wh", "0", "--wait")
    assert code == 0 and out["receipt"]["ok"] is True, out
    readings = {r.account: r.import_wh for r in server.backend.state.readings.values()}
    assert readings == {addr("gen"): 0, addr("cons"): 40}
    code, _, err = run_cli(capsys, "tx", "reading", "--node", url, "--key", key["cons"], "--slot", "previous",
                           "--import-wh", "1", "--export-wh", "0")
    assert code == 1 and orjson.loads(err)["error"]["code"] == "wrong_signer"


def test_waiting_on_an_unreachable_node_polls_until_the_timeout() -> None:
    with Client("http://127.0.0.1:9", timeout_s=0.5) as client:
        start = time.monotonic()
        with pytest.raises(ApiClientError) as err:
            client.wait_for_receipt("ab" * 32, timeout_s=0.6, poll_s=0.05)
        assert err.value.code == "timeout" and time.monotonic() - start >= 0.6
        with pytest.raises(ApiClientError) as err:
            client.status()
        assert err.value.code == "unavailable"


def test_verify_proof_fetches_every_lineage_height_from_the_node(capsys: Any, tmp_path: Path) -> None:
    """`verify-proof --node URL` takes each height's receipts root from that node's headers:
    the README example, offline-free; a tampered leaf fails, an unreachable node exits 2."""
    from tests.unit.test_api_queries import trading_day

    backend = MemoryBackend()

    async def day() -> Any:
        from aiohttp.test_utils import TestClient, TestServer

        async with TestClient(TestServer(create_api_app(backend), host="127.0.0.1")) as client:
            await trading_day(backend, client)
            trade_id = next(iter(backend.state.trades))
            return await (await client.get(f"/v1/trace/trades/{trade_id}")).json()

    trace = asyncio.run(day())
    heights = {e["location"]["height"] for e in trace["lineage"]}
    assert len(heights) > 1, "the lineage must span several heights for this test to mean anything"
    path = tmp_path / "trace.json"
    path.write_bytes(orjson.dumps(trace))
    with ServerThread(backend, produce_blocks=False) as server:
        code, out, _ = run_cli(capsys, "verify-proof", str(path), "--node", server.url)
        assert code == 0 and out["ok"] is True and len(out["results"]) == len(trace["lineage"])

        # One header of the node disagrees with the file's own claim: only --node's root counts.
        entry = trace["lineage"][0]
        entry["block"]["receipts_root"] = "00" * 32
        path.write_bytes(orjson.dumps(trace))
        code, out, _ = run_cli(capsys, "verify-proof", str(path), "--node", server.url)
        assert code == 0 and out["ok"] is True
        entry["leaf"] = entry["leaf"][:-2] + ("00" if entry["leaf"][-2:] != "00" else "01")
        path.write_bytes(orjson.dumps(trace))
        code, out, _ = run_cli(capsys, "verify-proof", str(path), "--node", server.url)
        assert code == 1 and [r["ok"] for r in out["results"]].count(False) == 1

    code, _, err = run_cli(capsys, "verify-proof", str(path), "--node", "http://127.0.0.1:1")
    assert code == 2 and orjson.loads(err)["error"]["code"] == "node_unreachable"
