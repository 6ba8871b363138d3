"""API benchmark (not a test): admission throughput of POST /v1/transactions and
event fan-out cost, over the in-memory backend (real decode, signature check and
``check_tx``; no consensus). Prints numbers; run with

    .venv/bin/python -m tests.unit.api_bench [--txs 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
import msgspec
from aiohttp import web

from contracts import transactions as txs
from node.api.app import EventHub, create_api_app
from tests.unit.api_memory_backend import MemoryBackend, addr, signed

BATCH = 1_000


async def admission(n_txs: int) -> None:
    backend = MemoryBackend(capacity=10**7)
    raws = [signed("cons", txs.Transfer(to=addr("gen"), amount_u=1), nonce=n + 1) for n in range(n_txs)]
    singles = [signed("gen", txs.Transfer(to=addr("cons"), amount_u=1), nonce=n + 1) for n in range(2_000)]
    runner = web.AppRunner(create_api_app(backend))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/transactions"
    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        for i in range(0, n_txs, BATCH):
            async with session.post(url, data=msgspec.msgpack.encode(raws[i:i + BATCH]),
                                    headers={"Content-Type": "application/msgpack"}) as resp:
                assert resp.status == 202, await resp.text()
        elapsed = time.perf_counter() - start
        print(f"admission, msgpack batches of {BATCH}: {n_txs} tx in {elapsed:.2f} s = {n_txs / elapsed:,.0f} tx/s")
        start = time.perf_counter()
        for raw in singles:
            async with session.post(url, json={"raw": raw.hex()}) as resp:
                assert resp.status == 202
        elapsed = time.perf_counter() - start
        print(f"admission, one JSON tx per request: {len(singles)} in {elapsed:.2f} s = "
              f"{len(singles) / elapsed:,.0f} req/s")
    await runner.cleanup()


async def fanout() -> None:
    backend = MemoryBackend(capacity=10**6)
    await backend.submit([signed("cons", txs.Transfer(to=addr("gen"), amount_u=1), nonce=n + 1)
                          for n in range(3_000)])
    hub = EventHub(queue_size=100_000, max_subscribers=100, state=lambda: backend.state)
    subs = [hub.subscribe(topics=frozenset({"txs", "blocks"}), account=addr("gen") if i % 2 else None)
            for i in range(10)]
    committed = backend.commit_block()
    start = time.perf_counter()
    hub.on_block(committed)
    elapsed = time.perf_counter() - start
    queued = sum(s.queue.qsize() for s in subs)
    print(f"event fan-out, 3000-tx block to 10 subscribers: {elapsed * 1000:.1f} ms on the loop, {queued} messages")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--txs", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(admission(args.txs))
    asyncio.run(fanout())


if __name__ == "__main__":
    main()
