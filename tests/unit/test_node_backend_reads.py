"""API reads see the contracts state only at block boundaries, never mid-block."""

import asyncio
from types import SimpleNamespace

from node.chain.backend import Backend


def backend_over(state: object) -> tuple[Backend, asyncio.Event]:
    idle = asyncio.Event()
    idle.set()
    backend = Backend.__new__(Backend)
    backend.driver = SimpleNamespace(state_idle=idle, exec=SimpleNamespace(state=state))  # type: ignore[assignment]
    return backend, idle


async def test_read_state_waits_while_a_block_is_being_applied() -> None:
    backend, idle = backend_over({"height": 1})
    idle.clear()  # the driver is applying a block
    reader = asyncio.create_task(backend.read_state())
    await asyncio.sleep(0.05)
    assert not reader.done(), "a read must not see the state while a block is applied"
    backend.driver.exec.state = {"height": 2}  # type: ignore[attr-defined]
    idle.set()
    assert await asyncio.wait_for(reader, 1.0) == {"height": 2}


async def test_read_state_returns_at_once_when_idle() -> None:
    backend, _ = backend_over({"height": 7})
    assert await asyncio.wait_for(backend.read_state(), 1.0) == {"height": 7}
