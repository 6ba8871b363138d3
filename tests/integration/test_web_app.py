"""The node's web page in a real browser (Debian's chromium through Playwright) against a live
4-process devnet with short slots.

Setup: ``gridchain devnet --nodes 4 --slot-ms 8000`` on 127.0.0.1 (demo accounts funded in
genesis); each participant is a separate browser context that loads its own key file
through the page's file input (the key never leaves the browser: every transaction is signed
by the page with WebCrypto).
Steps: consumer-1 places a buy while generator-1 places a sell for the same slot, each on a
different node; consumer-1 places and cancels a second order; after the slot both submit
their meter readings; consumer-1 sees the trade and, after the slot settles, its settlement
statement, then opens the trade's trace: every lineage record is marked verified by the
page's own Merkle check against block headers it fetched. A new key requests registration
and the grid operator approves it from the grid view, then issues a dispatch instruction
that consumer-1 acknowledges. Then every view is opened at its own URL.
Check: every step's outcome shows on the page; no view logs a console error; axe-core
finds no serious or critical violation in any view; a screenshot of every view is saved
under tests/artifacts/screenshots/ (paths printed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.ops.keys import new_signer, write_key_file
from tests.integration.browser_util import browser, new_page, screenshot
from tests.integration.cluster_util import free_base_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("devnet_web_app"), pytest.mark.timeout(360)]

SLOT_MS = 8_000
GRIDCHAIN = str(Path(sys.executable).with_name("gridchain"))
AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-core" / "axe.min.js"
UI_TIMEOUT_MS = 45_000
"""Longest wait for one outcome on the page (a commit, a clearing, a settlement)."""


def http_get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("webnet")
    log = (home.parent / "webnet.log").open("w")
    proc = subprocess.Popen(
        [GRIDCHAIN, "devnet", "--nodes", "4", "--home", str(home), "--base-port", str(free_base_port()),
         "--slot-ms", str(SLOT_MS)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        network = wait_until("network.json", lambda: _read_json(home / "network.json"), timeout_s=60)
        urls = [n["api_url"] for n in network["nodes"]]
        for url in urls:
            wait_until(f"{url}/readyz", lambda url=url: _ready(url), timeout_s=90)
        accounts = {a["name"]: a for a in json.loads((home / "accounts.json").read_text())}
        yield {"home": home, "urls": urls, "accounts": accounts}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _ready(url: str) -> bool:
    try:
        return http_get(f"{url}/readyz")["status"] == "ready"
    except OSError:
        return False


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as b:
        yield b


class Participant:
    """One browser context with one key file loaded in the participant view."""

    def __init__(self, chromium: Any, url: str, key_file: str | Path) -> None:
        self.page = new_page(chromium)
        self.url = url
        self.page.goto(f"{url}/#/me")
        self.page.set_input_files("#me-key input[type=file]", str(key_file))
        self.page.wait_for_selector("#order-form, #register-form", timeout=UI_TIMEOUT_MS)

    def wait_text(self, selector: str, text: str) -> None:
        try:
            self.page.wait_for_function(
                "([s, t]) => (document.querySelector(s)?.textContent ?? '').includes(t)", arg=[selector, text],
                timeout=UI_TIMEOUT_MS)
        except Exception as exc:  # say what the page shows instead
            shown = self.page.eval_on_selector_all(".msg", "els => els.map(e => `${e.id}: ${e.textContent}`)")
            raise AssertionError(f"{selector} never showed {text!r}; messages on the page: {shown}; "
                                 f"console errors: {self.page.errors}") from exc

    def clear(self, selector: str) -> None:
        """Empty a status message, so a wait for the next outcome cannot see the last one."""
        self.page.eval_on_selector(selector, "e => { e.textContent = ''; }")

    def place(self, *, slot: int, side: str, price: int, quantity_wh: int) -> None:
        self.clear("#order-msg")
        form = self.page.locator("#order-form")
        form.locator("select[name=slot]").select_option(str(slot))
        form.locator("select[name=side]").select_option(side)
        form.locator("input[name=price]").fill(str(price))
        form.locator("input[name=quantity]").fill(str(quantity_wh))
        form.locator("button").click()

    def read_meter(self, *, slot: int, import_wh: int, export_wh: int) -> None:
        """Fill and send the reading form; the caller waits for ``#reading-msg``."""
        self.clear("#reading-msg")
        form = self.page.locator("#reading-form")
        form.locator("input[name=slot]").fill(str(slot))
        form.locator("input[name=import_wh]").fill(str(import_wh))
        form.locator("input[name=export_wh]").fill(str(export_wh))
        form.locator("button").click()


def pick_slot(url: str, *, lead_s: float) -> dict[str, Any]:
    """The first slot whose gate closes at least ``lead_s`` from now, with its times."""
    market = http_get(f"{url}/v1/status")["market"]
    now_ms = time.time() * 1000
    slot = int((now_ms - market["genesis_time_ms"]) // market["slot_ms"]) + 1
    while market["genesis_time_ms"] + slot * market["slot_ms"] - market["gate_lead_ms"] < now_ms + lead_s * 1000:
        slot += 1
    start_ms = market["genesis_time_ms"] + slot * market["slot_ms"]
    return {"slot": slot, "end_ms": start_ms + market["slot_ms"]}


@pytest.fixture(scope="module")
def cycle(devnet: dict[str, Any], chromium: Any) -> dict[str, Any]:
    """The participant trade cycle, done in the browser alone; what it made, for the checks."""
    urls, acc = devnet["urls"], devnet["accounts"]
    buyer = Participant(chromium, urls[0], acc["consumer-1"]["key_file"])
    seller = Participant(chromium, urls[1], acc["generator-1"]["key_file"])
    target = pick_slot(urls[0], lead_s=14)  # room for two pages to sign and commit before the gate
    slot = target["slot"]
    buyer.place(slot=slot, side="buy", price=60, quantity_wh=1_000)
    seller.place(slot=slot, side="sell", price=40, quantity_wh=1_000)
    buyer.wait_text("#order-msg", "committed")
    seller.wait_text("#order-msg", "committed")

    buyer.page.wait_for_selector(f"#my-trades a[href^='#/trade/{slot}-']", timeout=UI_TIMEOUT_MS)
    trade_id = buyer.page.locator(f"#my-trades a[href^='#/trade/{slot}-']").first.inner_text()

    # Readings are accepted once a block's time has passed the slot's end.
    wait_until("a block after the slot's end",
               lambda: http_get(f"{urls[0]}/v1/status")["market"]["block_timestamp_ms"] >= target["end_ms"],
               timeout_s=30)
    # The reading window is one slot long: both meters read at once, then both outcomes.
    buyer.read_meter(slot=slot, import_wh=1_000, export_wh=0)
    seller.read_meter(slot=slot, import_wh=0, export_wh=1_000)
    buyer.wait_text("#reading-msg", "committed")
    seller.wait_text("#reading-msg", "committed")

    # While the slot settles: a second order, cancelled from the open-orders table.
    later = slot + 6  # its gate is still far: the cancel must come before it
    buyer.place(slot=later, side="buy", price=1, quantity_wh=10)
    buyer.wait_text("#order-msg", "committed")
    buyer.page.wait_for_selector(f"#my-orders a[href='#/slot/{later}']", timeout=UI_TIMEOUT_MS)
    cancel = buyer.page.locator(f"#my-orders tr:has(a[href='#/slot/{later}']) button[data-cancel]")
    cancelled_id = cancel.get_attribute("data-cancel")
    buyer.clear("#me-msg")
    cancel.click()
    buyer.wait_text("#me-msg", "cancel: committed")
    assert http_get(f"{urls[0]}/v1/orders/{cancelled_id}")["status"] == "cancelled"

    buyer.page.wait_for_selector(f"#my-settlements a[href='#/slot/{slot}']", timeout=UI_TIMEOUT_MS)
    buyer.page.wait_for_selector(f"#my-readings a[href='#/slot/{slot}']", timeout=UI_TIMEOUT_MS)
    return {"buyer": buyer, "seller": seller, "slot": slot, "trade_id": trade_id,
            "order_id": http_get(f"{urls[0]}/v1/trades?slot={slot}")["trades"][0]["buy_order"]}


def test_participant_trade_cycle_in_the_browser_ends_in_a_verified_trace(cycle: dict[str, Any]) -> None:
    buyer, slot = cycle["buyer"], cycle["slot"]
    settlement = buyer.page.locator(f"#my-settlements tr:has(a[href='#/slot/{slot}'])").inner_text()
    assert "1,000" in settlement and "read" in settlement, settlement
    assert axe_serious(buyer.page) == []
    screenshot(buyer.page, "participant")

    buyer.page.locator(f"#my-trades a[href='#/trade/{cycle['trade_id']}']").click()
    buyer.page.wait_for_selector("main[data-trace-done]", timeout=UI_TIMEOUT_MS)
    roles = buyer.page.eval_on_selector_all("#trace li", "els => els.map(e => [e.dataset.role, e.dataset.verified])")
    assert sorted(r for r, _ in roles) == sorted(["buy_order", "sell_order", "clearing", "trade", "buyer_reading",
                                                  "seller_reading", "buyer_settlement", "seller_settlement"])
    assert all(v == "yes" for _, v in roles), roles
    assert buyer.page.locator("#trace .mark.ok").count() == len(roles)
    screenshot(buyer.page, "trade-trace")
    buyer.page.go_back()
    buyer.page.wait_for_selector("#my-trades", timeout=UI_TIMEOUT_MS)
    assert buyer.page.url.endswith("#/me")
    assert buyer.page.errors == [] and cycle["seller"].page.errors == []


def test_grid_operator_approves_a_registration_and_dispatches(
        devnet: dict[str, Any], chromium: Any, cycle: dict[str, Any], tmp_path: Path) -> None:
    urls, acc = devnet["urls"], devnet["accounts"]
    key_file = tmp_path / "newcomer.json"
    signer = new_signer()
    write_key_file(key_file, signer)
    newcomer = Participant(chromium, urls[2], key_file)
    form = newcomer.page.locator("#register-form")
    form.locator("select[name=role]").select_option("prosumer")
    form.locator("input[name=name]").fill("newcomer")
    form.locator("button").click()
    # Once the request commits the view re-renders as the (pending) account: the message may
    # be gone before a poll sees it, the account card is what stays.
    newcomer.page.wait_for_function(
        "() => (document.querySelector('#register-msg')?.textContent ?? '').includes('committed')"
        " || (document.querySelector('#me-cards')?.textContent ?? '').includes('pending')", timeout=UI_TIMEOUT_MS)

    grid = new_page(chromium)
    grid.goto(f"{urls[3]}/#/grid")
    grid.set_input_files("#grid-key input[type=file]", acc["grid-operator"]["key_file"])
    grid.wait_for_selector("#pending-registrations button[aria-label='approve newcomer']", timeout=UI_TIMEOUT_MS)
    assert axe_serious(grid) == []
    screenshot(grid, "grid-operator")
    grid.locator("#pending-registrations button[aria-label='approve newcomer']").click()
    grid.wait_for_function("document.querySelector('#grid-msg').textContent.includes('committed')",
                           timeout=UI_TIMEOUT_MS)
    address = newcomer.page.evaluate("document.querySelector('#me-key-msg').textContent.split(' ').pop()")
    wait_until("the approval on another node",
               lambda: http_get(f"{urls[0]}/v1/accounts/{address}")["status"] == "active", timeout_s=15)

    dispatch = grid.locator("#dispatch-form")
    dispatch.locator("input[name=account]").fill(acc["consumer-1"]["address"])
    dispatch.locator("button").click()
    grid.wait_for_function("document.querySelector('#dispatch-msg').textContent.includes('committed')",
                           timeout=UI_TIMEOUT_MS)
    buyer = cycle["buyer"]
    buyer.page.wait_for_selector("#my-dispatch button[data-ack]", timeout=UI_TIMEOUT_MS)
    buyer.clear("#me-msg")
    buyer.page.locator("#my-dispatch button[data-ack]").first.click()
    buyer.wait_text("#me-msg", "committed")
    buyer.wait_text("#my-dispatch", "acknowledged")
    assert grid.errors == [] and newcomer.page.errors == [] and buyer.page.errors == []


def axe_serious(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    assert result["testEngine"]["name"] == "axe-core" and result["passes"], "axe checked nothing"
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def open_view(page: Any, route: str) -> None:
    """Go to ``route`` in the same document (a hash change, as a link click) and wait for its view."""
    page.evaluate("(route) => { location.hash = route; }", route)
    wait_view(page, route)


def wait_view(page: Any, route: str) -> None:
    page.wait_for_function(
        "(route) => location.hash === route && document.querySelector('main').dataset.hash === route"
        " && document.querySelector('main').dataset.ready === '1'", arg=route, timeout=UI_TIMEOUT_MS)


def test_every_view_has_its_url_no_console_error_and_no_serious_axe_violation(
        devnet: dict[str, Any], chromium: Any, cycle: dict[str, Any]) -> None:
    url = devnet["urls"][0]
    consumer = devnet["accounts"]["consumer-1"]["address"]
    routes = {
        "explorer": "#/", "market": "#/market", "slot": f"#/slot/{cycle['slot']}",
        "trade": f"#/trade/{cycle['trade_id']}", "operator": "#/operator", "me-no-key": "#/me",
        "grid-no-key": "#/grid", "block": "#/block/2", "order": f"#/order/{cycle['order_id']}",
        "tx": f"#/tx/{cycle['order_id']}", "account": f"#/account/{consumer}",
        "market-older-trades": f"#/market?before={cycle['trade_id']}",
    }
    page = new_page(chromium)
    page.goto(f"{url}/#/")
    violations: dict[str, list[str]] = {}
    for name, route in routes.items():
        open_view(page, route)
        if name == "trade":
            page.wait_for_selector("main[data-trace-done]", timeout=UI_TIMEOUT_MS)
        bad = axe_serious(page)
        if bad:
            violations[name] = bad
        screenshot(page, f"view-{name}")
    # Back and forward walk the same URLs.
    page.go_back()
    wait_view(page, routes["account"])
    page.go_back()
    wait_view(page, routes["tx"])
    page.go_forward()
    wait_view(page, routes["account"])
    assert violations == {}
    assert page.errors == []
