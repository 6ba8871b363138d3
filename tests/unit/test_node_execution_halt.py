"""node.chain.driver: execution fails loudly (halt, 503 execution_halted, gauge, ERROR log, no
silent re-run) and consensus is held while execution lags too far (bounded commit queue)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from consensus import events as ev
from consensus.core import genesis_qc
from consensus.types import Block, BlockHeader, payload_root
from node.api.app import create_api_app
from node.chain import execution as execution_mod
from node.chain.driver import Driver
from tests.unit.node_harness import RecordingTransport, make_node


class CountingCore:
    """Stands in for consensus.core.Core: counts the events it is fed."""

    def __init__(self, committed_height: int = 0) -> None:
        self.committed_height = committed_height
        self.handled: list[Any] = []
        self.round = 1
        self.last_voted_round = 0
        self.high_qc = None

    def handle(self, event: Any) -> list[Any]:
        self.handled.append(event)
        return []


@pytest.fixture
async def node(tmp_path: Path) -> Any:
    n = make_node(tmp_path, max_execution_lag_blocks=4)
    n.driver.transport = n.backend.transport = RecordingTransport()
    yield n.driver, n.backend, n.storage
    await n.driver.stop()
    await n.storage.close()


def _blocks(driver: Driver, heights: range) -> list[Block]:
    qc = genesis_qc(driver.genesis_block)
    return [Block(header=BlockHeader(epoch=0, round=h, height=h, parent_qc=qc, author=h % 4,
                                     timestamp_ms=driver.genesis.genesis_time_ms + h, tx_root=payload_root(()),
                                     executed_height=0, executed_state_root=bytes(32)))
            for h in heights]


def _fail_at(monkeypatch: pytest.MonkeyPatch, height: int) -> list[int]:
    """Make apply_block raise OverflowError at ``height``; returns the heights it was called for."""
    calls: list[int] = []
    real = execution_mod.apply_block

    def failing(state: Any, block: Any, **kw: Any) -> Any:
        calls.append(block.height)
        if block.height == height:
            raise OverflowError("int too big to convert")
        return real(state, block, **kw)

    monkeypatch.setattr(execution_mod, "apply_block", failing)
    return calls


async def test_a_failing_block_halts_execution_loudly_and_is_not_re_run(
        node: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Setup: the executor raises at height 2 of a committed chain 1..3. Check: height 1 is
    stored, the node halts at 2 (ERROR log naming the height and the exception, gauge 1,
    /readyz 503 execution_halted, status shows it), and nothing retries block 2."""
    driver, backend, storage = node
    calls = _fail_at(monkeypatch, 2)
    qc = genesis_qc(driver.genesis_block)
    driver._tasks.append(asyncio.create_task(driver._execute_loop(), name="execute"))
    with caplog.at_level(logging.ERROR, logger="gridchain.driver"):
        driver.commits.put_nowait((tuple(_blocks(driver, range(1, 3))), qc))
        for _ in range(200):
            if driver.halted is not None:
                break
            await asyncio.sleep(0.01)
    assert driver.halted is not None and driver.halted.height == 2
    assert "OverflowError" in driver.halted.error
    assert driver.exec.height == 0 and storage.latest_height() == 0  # the batch is stored whole or not at all
    assert driver.metrics.execution_halted._value.get() == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "height 2" in errors[0].getMessage() and "OverflowError" in errors[0].getMessage()
    # Later commits (or a second attempt) do not run the failed block again.
    driver.commits.put_nowait((tuple(_blocks(driver, range(1, 4))), qc))
    await driver.execute_blocks(_blocks(driver, range(1, 4)), qc)
    await asyncio.sleep(0.05)
    assert calls == [1, 2]
    assert backend.not_ready_reason() == "execution_halted" and not backend.ready()
    assert backend.status()["execution_halted"]["height"] == 2
    assert backend.healthy()  # the process stays up, answering peers and the API
    async with TestClient(TestServer(create_api_app(backend), host="127.0.0.1")) as client:
        resp = await client.get("/readyz")
        body = await resp.json()
    assert resp.status == 503 and body["reason"] == "execution_halted", body


async def test_a_halted_node_feeds_its_core_nothing(node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Setup: a running consensus loop; execution fails at height 1. Check: events that
    arrive afterwards never reach the core (no vote, no proposal, no timeout)."""
    driver, _backend, _storage = node
    _fail_at(monkeypatch, 1)
    core = driver.core = CountingCore()
    driver.syncing = False
    task = asyncio.create_task(driver._run())
    try:
        driver._put(ev.Tick(now_ms=1))
        await asyncio.sleep(0.05)
        assert len(core.handled) == 1
        await driver.execute_blocks(_blocks(driver, range(1, 2)), genesis_qc(driver.genesis_block))
        assert driver.halted is not None
        driver._put(ev.Tick(now_ms=2))
        await asyncio.sleep(0.1)
        assert len(core.handled) == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_consensus_is_held_while_execution_lags_too_far(node: Any) -> None:
    """Setup: max_execution_lag_blocks = 4; the core has committed 4 blocks that are not
    executed. Check: no event reaches the core; once execution catches up one block
    (lag 3), the loop resumes and feeds the core again."""
    driver, _backend, _storage = node
    core = driver.core = CountingCore(committed_height=4)
    driver.syncing = False
    task = asyncio.create_task(driver._run())
    try:
        driver._put(ev.Tick(now_ms=1))
        await asyncio.sleep(0.1)
        assert core.handled == [] and driver.execution_lag() == 4
        await driver.execute_blocks(_blocks(driver, range(1, 2)), genesis_qc(driver.genesis_block))
        assert driver.execution_lag() == 3 and driver.metrics.execution_lag._value.get() == 3
        for _ in range(100):
            if core.handled:
                break
            await asyncio.sleep(0.01)
        assert core.handled, "the consensus loop did not resume"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_the_lag_bound_is_a_node_setting_with_a_default() -> None:
    from node.ops.config import NodeConfig

    assert NodeConfig(name="n", role="grid", node_id=0).max_execution_lag_blocks == 256


async def test_a_commit_gap_releases_the_hold_so_a_catch_up_can_start(node: Any) -> None:
    """Setup: held by back-pressure (lag 4 of 4), then committed blocks arrive that do not
    follow the executed head (a gap only a catch-up can fill). Check: the consensus loop
    stops holding and leaves for the catch-up instead of waiting for execution forever."""
    driver, _backend, _storage = node
    core = driver.core = CountingCore(committed_height=4)
    driver.syncing = False
    task = asyncio.create_task(driver._run())
    driver._put(ev.Tick(now_ms=1))
    await asyncio.sleep(0.05)
    assert core.handled == []
    await driver.execute_blocks(_blocks(driver, range(3, 4)), genesis_qc(driver.genesis_block))
    await asyncio.wait_for(task, timeout=2)  # _run returns: the sync loop takes over
    assert driver.syncing and len(core.handled) == 1
