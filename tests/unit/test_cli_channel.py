"""``gridchain channel open|fund|pay|watch|close|status`` end to end against two in-process
nodes of one chain (real contracts and channel stores, no consensus), each with its own
API on 127.0.0.1 in a background thread: the payer's ``pay`` waits while the payee's
``watch`` countersigns, a cooperative close pays the newest state, and a unilateral close
starts the challenge period."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from node.api.app import create_api_app
from node.chain.channels import ChannelService
from node.chain.channels_store import ChannelStore
from node.cli import main
from node.ops import keys
from tests.unit.api_memory_backend import SIGNERS, MemoryBackend, addr, autocommit, make_genesis


class TwoNodes:
    """One chain, two nodes (each its own channel store and API), on a loop in a thread."""

    def __init__(self, tmp: Path) -> None:
        self.backend = MemoryBackend(make_genesis(t0_ms=time.time_ns() // 1_000_000 - 15_000, slot_ms=1_000))
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.urls: list[str] = []
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        runners, services = [], []
        for i, validator in enumerate(("val0", "val1")):
            store = self.loop.run_until_complete(ChannelStore.open(self.tmp / f"channels-{i}.sqlite3"))
            service = ChannelService(backend=self.backend, store=store, signer=SIGNERS[validator])
            self.loop.run_until_complete(service.start())
            runner = web.AppRunner(create_api_app(self.backend, channels=service))
            self.loop.run_until_complete(runner.setup())
            self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
            self.urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
            runners.append(runner)
            services.append(service)
        task = self.loop.create_task(autocommit(self.backend))
        self._started.set()
        self.loop.run_forever()
        task.cancel()
        for runner, service in zip(runners, services, strict=True):
            self.loop.run_until_complete(runner.cleanup())
            self.loop.run_until_complete(service.stop())
        self.loop.close()

    def __enter__(self) -> TwoNodes:
        self._thread.start()
        assert self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[TwoNodes, dict[str, str]]]:
    key_files = {}
    for name in ("cons", "pros"):
        path = tmp_path / f"{name}.json"
        keys.write_key_file(path, SIGNERS[name])
        key_files[name] = str(path)
    with TwoNodes(tmp_path) as two:
        yield two, key_files


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(list(argv)) == 0, capsys.readouterr()
    return orjson.loads(capsys.readouterr().out)


def _with_watch(capsys: pytest.CaptureFixture[str], watch_url: str, watch_key: str, channel_id: str,
                *argv: str) -> dict[str, Any]:
    """Run ``gridchain *argv`` while the payee's ``watch --count 1`` countersigns in a thread;
    returns both JSON outputs by their first key."""
    codes: list[int] = []
    watcher = threading.Thread(target=lambda: codes.append(main([
        "channel", "watch", "--node", watch_url, "--key", watch_key, "--channel", channel_id, "--count", "1",
        "--interval-s", "0.05"])), daemon=True)
    watcher.start()
    code = main(list(argv))
    watcher.join(10)
    assert code == 0 and codes == [0], capsys.readouterr()
    out, docs, position = capsys.readouterr().out, {}, 0
    while True:
        while position < len(out) and out[position].isspace():
            position += 1
        if position == len(out):
            return docs
        doc, position = json.JSONDecoder().raw_decode(out, position)
        docs[next(iter(doc))] = doc


def test_pay_watch_and_close_through_the_cli(nodes: tuple[TwoNodes, dict[str, str]],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    two, key = nodes
    node_a, node_b = two.urls
    opened = _cli(capsys, "channel", "open", "--node", node_a, "--key", key["cons"], "--counterparty",
                  addr("pros"), "--deposit-u", "10000", "--challenge-slots", "3")
    channel_id = opened["channel_id"]
    _cli(capsys, "channel", "fund", "--node", node_b, "--key", key["pros"], "--channel", channel_id,
         "--deposit-u", "500")
    for amount in ("1500", "250"):
        docs = _with_watch(capsys, node_b, key["pros"], channel_id, "channel", "pay", "--node", node_a,
                           "--peer-node", node_b, "--key", key["cons"], "--channel", channel_id, "--amount-u",
                           amount, "--energy-wh", "7", "--timeout-s", "10")
        paid = docs["state"]
        assert docs["countersigned"]["countersigned"] == 1
    assert paid["state"]["seq"] == 2 and paid["state"]["balance_a_u"] == 10_000 - 1_750
    assert paid["state"]["energy_wh"] == 14
    status = _cli(capsys, "channel", "status", "--node", node_a, "--channel", channel_id)
    assert status["latest"] == paid  # the payer's own node keeps the co-signed state
    _with_watch(capsys, node_b, key["pros"], channel_id, "channel", "close", "--node", node_a, "--peer-node",
                node_b, "--key", key["cons"], "--channel", channel_id)
    channel = _cli(capsys, "channel", "status", "--node", node_b, "--channel", channel_id)["channel"]
    assert (channel["status"], channel["paid_a_u"], channel["paid_b_u"]) == ("settled", 8_250, 2_250)


def test_a_unilateral_close_starts_the_challenge_period(nodes: tuple[TwoNodes, dict[str, str]],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    two, key = nodes
    node_a, node_b = two.urls
    channel_id = _cli(capsys, "channel", "open", "--node", node_a, "--key", key["cons"], "--counterparty",
                      addr("pros"), "--deposit-u", "900", "--challenge-slots", "1")["channel_id"]
    _cli(capsys, "channel", "close", "--node", node_b, "--key", key["pros"], "--channel", channel_id,
         "--unilateral")
    channel = _cli(capsys, "channel", "status", "--node", node_b, "--channel", channel_id)["channel"]
    assert channel["status"] == "closing" and channel["seq"] == 0
    deadline = time.monotonic() + 10
    while main(["channel", "close", "--node", node_a, "--key", key["cons"], "--channel", channel_id,
                "--settle"]) != 0:
        assert time.monotonic() < deadline, "settle was refused past the challenge period"
        time.sleep(0.3)
    capsys.readouterr()
    channel = _cli(capsys, "channel", "status", "--node", node_a, "--channel", channel_id)["channel"]
    assert (channel["status"], channel["paid_a_u"], channel["paid_b_u"]) == ("settled", 900, 0)
