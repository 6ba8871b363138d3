"""A short demo trading day on a running network, through the client library only.

``run_demo(network_dir)`` (or ``await run_demo_async(...)`` from inside an event
loop) reads ``network.json`` and ``accounts.json`` written by ``gridchain
genesis``/``devnet`` and, with a rich progress bar:

1. registers a new prosumer with a fresh key, has the grid operator approve it
   and mint it some tokens;
2. for each of the next ``slots`` delivery slots places asks (generator,
   prosumer, retailer) and bids (consumers, the newcomer), spread over the
   nodes' APIs, in one burst per slot;
3. waits for gate closure and clearing, submits every trader's meter reading
   (with a small shortfall for one seller, so the imbalance rule shows) once the
   slot has ended, and waits for settlement;
4. verifies one trade's lineage proofs against the block headers of another
   node, and prints a summary table (price, volume, trades, imbalance) and the
   balance change of every participant.

Everything goes through ``node.client``: the demo is also a smoke test of the
API, the CLI's library and the contracts on a real cluster.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from consensus import crypto
from contracts import transactions as txs
from node.cli.apiutil import resolve_slot
from node.cli.proof import verify_trace
from node.client import AsyncClient, now_ms
from node.ops import keys

POLL_S = 0.25
"""How often the demo polls slot state."""
ASKS: tuple[tuple[str, int, int], ...] = (("generator", 40, 3_000), ("prosumer", 55, 800), ("retailer", 70, 1_500))
"""(role, price µ/Wh, quantity Wh) of the sell side each slot."""
BIDS: tuple[tuple[str, int, int], ...] = (("consumer", 90, 1_200), ("consumer", 60, 1_500), ("newcomer", 80, 600))
"""(role, price µ/Wh, quantity Wh) of the buy side each slot (consumers in accounts.json order)."""


class DemoError(RuntimeError):
    """The demo could not run (missing files, a failed transaction, a timeout)."""


@dataclass
class Participant:
    name: str
    role: str
    address: str
    signer: crypto.Signer
    client: AsyncClient


@dataclass
class DemoResult:
    slots: list[dict[str, Any]] = field(default_factory=list)
    """Final slot records (settled)."""
    balances_before: dict[str, int] = field(default_factory=dict)
    balances_after: dict[str, int] = field(default_factory=dict)
    proofs_ok: bool = False
    tx_count: int = 0


def _load_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise DemoError(f"cannot read {path}: {exc}") from exc


def _total_u(account: dict[str, Any] | None) -> int:
    if account is None:
        return 0
    return int(account["balance_u"] + account["locked_u"] + account["pending_u"] - account["debt_u"])


class _Demo:
    def __init__(self, network_dir: Path, *, slots: int, console: Console, timeout_s: float) -> None:
        self.dir = network_dir
        self.slots = slots
        self.console = console
        self.timeout_s = timeout_s
        network = _load_json(network_dir / "network.json")
        self.urls = [n["api_url"] for n in network["nodes"]]
        if not self.urls:
            raise DemoError("network.json lists no nodes")
        self.clients = [AsyncClient(url) for url in self.urls]
        self.accounts = _load_json(network_dir / "accounts.json")
        self.people: list[Participant] = []
        self.result = DemoResult()

    async def close(self) -> None:
        for c in self.clients:
            await c.close()

    def _by_role(self, role: str) -> list[Participant]:
        return [p for p in self.people if p.role == role]

    def _load_people(self) -> None:
        for i, acc in enumerate(self.accounts):
            if acc["role"] not in ("grid", "generator", "prosumer", "retailer", "consumer"):
                continue
            signer = keys.load_signer(acc["key_file"])
            self.people.append(Participant(acc["name"], acc["role"], acc["address"], signer,
                                           self.clients[i % len(self.clients)]))
        for role in ("grid", "generator", "prosumer", "retailer", "consumer"):
            if not self._by_role(role):
                raise DemoError(f"accounts.json has no {role} account")

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not all(await asyncio.gather(*(c.ready() for c in self.clients))):
            if time.monotonic() > deadline:
                raise DemoError("nodes did not become ready")
            await asyncio.sleep(POLL_S)

    async def _send(self, who: Participant, body: Any, **kw: Any) -> dict[str, Any]:
        out = await who.client.send(who.signer, body, wait=True, wait_timeout_s=self.timeout_s, **kw)
        self.result.tx_count += 1
        return out

    async def onboard(self) -> None:
        """Register a newcomer with a fresh key; the grid operator approves and funds it."""
        grid = self._by_role("grid")[0]
        signer = keys.new_signer()
        address = crypto.address(signer.public_key)
        key_path = self.dir / "keys" / f"demo-newcomer-{address[:8]}.json"
        keys.write_key_file(key_path, signer)
        newcomer = Participant(f"newcomer-{address[:6]}", "newcomer", address, signer, self.clients[-1])
        await self._send(newcomer, txs.RegisterRequest(role="consumer", zone="Z1", name=newcomer.name))
        await self._send(grid, txs.ApproveRegistration(account=address))
        await self._send(grid, txs.Mint(to=address, amount_u=50_000_000))
        self.people.append(newcomer)

    async def _orders(self, slot: int) -> None:
        consumers = self._by_role("consumer")
        sends = []
        for role, price, qty in ASKS:
            sends.append((self._by_role(role)[0], txs.PlaceOrder(slot=slot, side="sell", price_u_per_wh=price,
                                                                 quantity_wh=qty)))
        for k, (role, price, qty) in enumerate(BIDS):
            who = self._by_role(role)[0] if role == "newcomer" else consumers[k % len(consumers)]
            sends.append((who, txs.PlaceOrder(slot=slot, side="buy", price_u_per_wh=price, quantity_wh=qty)))
        await asyncio.gather(*(self._send(who, body) for who, body in sends))

    async def _wait_slot(self, slot: int, status: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s + self._slot_ms / 1000 * 3
        order = ("open", "cleared", "settled")
        while True:
            record = await self.clients[0].slot(slot)
            if record is not None and order.index(record["status"]) >= order.index(status):
                return record
            if time.monotonic() > deadline:
                raise DemoError(f"slot {slot} did not reach {status}")
            await asyncio.sleep(POLL_S)

    async def _readings(self, slot: int) -> None:
        trades = await self.clients[0].trades(slot=slot)
        net: dict[str, int] = {}
        for t in trades:
            net[t["seller"]] = net.get(t["seller"], 0) + t["quantity_wh"]
            net[t["buyer"]] = net.get(t["buyer"], 0) - t["quantity_wh"]
        end_ms = self._t0 + (slot + 1) * self._slot_ms
        while now_ms() < end_ms + 200:
            await asyncio.sleep(POLL_S)
        sends = []
        generator = self._by_role("generator")[0].address
        for who in self.people:
            if who.address not in net:
                continue
            contracted = net[who.address]
            if contracted > 0:
                # The generator delivers 2 % short so the imbalance price shows in settlement.
                export = contracted - contracted // 50 if who.address == generator else contracted
                body = txs.SubmitReading(slot=slot, import_wh=0, export_wh=export)
            else:
                body = txs.SubmitReading(slot=slot, import_wh=-contracted, export_wh=0)
            sends.append(self._send(who, body))
        await asyncio.gather(*sends)

    async def _check_proofs(self, slot: int) -> bool:
        trades = await self.clients[0].trades(slot=slot)
        if not trades:
            return True
        trace = await self.clients[0].trace(trades[0]["trade_id"])
        if trace is None:
            return False
        other = self.clients[-1]
        roots = {}
        for entry in trace["lineage"]:
            h = entry["location"]["height"]
            header = await other.block(h)
            if header is not None:
                roots[h] = bytes.fromhex(header["receipts_root"])
        return all(r["ok"] for r in verify_trace(trace, roots=roots))

    async def run(self) -> DemoResult:
        self._load_people()
        steps = 2 + 4 * self.slots + 1
        columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), TextColumn(
            "{task.completed}/{task.total}"), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task("waiting for the nodes", total=steps)
            await self._wait_ready()
            status = await self.clients[0].status()
            market = status["market"]
            self._t0, self._slot_ms = market["genesis_time_ms"], market["slot_ms"]
            progress.advance(task)
            progress.update(task, description="registering and funding a newcomer")
            await self.onboard()
            for p in self.people:
                self.result.balances_before[p.name] = _total_u(await self.clients[0].account(p.address))
            progress.advance(task)
            first = resolve_slot("next", market)
            slots = list(range(first, first + self.slots))
            for slot in slots:
                progress.update(task, description=f"slot {slot}: placing bids and asks")
                await self._orders(slot)
                progress.advance(task)
            for slot in slots:
                progress.update(task, description=f"slot {slot}: waiting for gate closure and clearing")
                await self._wait_slot(slot, "cleared")
                progress.advance(task)
                progress.update(task, description=f"slot {slot}: delivery, then meter readings")
                await self._readings(slot)
                progress.advance(task)
            for slot in slots:
                progress.update(task, description=f"slot {slot}: waiting for settlement")
                self.result.slots.append(await self._wait_slot(slot, "settled"))
                progress.advance(task)
            progress.update(task, description="verifying a trade's lineage proofs on another node")
            self.result.proofs_ok = await self._check_proofs(slots[0])
            for p in self.people:
                self.result.balances_after[p.name] = _total_u(await self.clients[0].account(p.address))
            progress.advance(task)
            progress.update(task, description="demo trading day done")
        self._print_summary()
        return self.result

    def _print_summary(self) -> None:
        table = Table(title="Demo trading day: slots")
        for col in ("slot", "status", "price µ/Wh", "volume Wh", "trades"):
            table.add_column(col, justify="right")
        for s in self.result.slots:
            table.add_row(str(s["slot"]), s["status"], str(s["price_u_per_wh"]), f"{s['volume_wh']:,}",
                          str(len(s["trades"])))
        self.console.print(table)
        people = Table(title="Participants: result of the trading day (µ)")
        people.add_column("account")
        people.add_column("change µ", justify="right")
        for name, before in self.result.balances_before.items():
            after = self.result.balances_after.get(name, before)
            people.add_row(name, f"{after - before:+,}")
        self.console.print(people)
        verdict = "[green]verified[/]" if self.result.proofs_ok else "[red]FAILED[/]"
        self.console.print(f"{self.result.tx_count} transactions; trade lineage proofs {verdict}.")


async def run_demo_async(network_dir: Path | str, *, slots: int = 2, console: Console | None = None,
                         timeout_s: float = 60.0) -> DemoResult:
    """Run the demo trading day against the network in ``network_dir`` (see module docstring)."""
    demo = _Demo(Path(network_dir), slots=slots, console=console or Console(), timeout_s=timeout_s)
    try:
        return await demo.run()
    finally:
        await demo.close()


def run_demo(network_dir: Path | str, *, slots: int = 2, console: Console | None = None,
             timeout_s: float = 60.0) -> DemoResult:
    """Blocking ``run_demo_async`` (do not call from inside a running event loop)."""
    return asyncio.run(run_demo_async(network_dir, slots=slots, console=console, timeout_s=timeout_s))
