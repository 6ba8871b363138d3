"""The OpenAPI document is the truth, proved by schemathesis against a live node.

A one-validator network on 127.0.0.1 (it commits alone), with one cleared trade so that
accounts, orders, transactions and trade lineages exist; their identifiers are given to
schemathesis as dictionaries, so generated cases reach real records as well as missing
and invalid ones. Then the ``st`` CLI runs every documented operation with every check
(no 5xx, responses conform to their schemas and headers, every status code documented,
invalid input refused, wrong methods 405 with Allow), a fixed seed, one worker and a
bounded number of examples per operation; the run must exit 0.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.transactions import PlaceOrder, Tx, sign_tx
from node.devnet.localnet import LocalNet
from node.ops import genesis as gen
from node.ops.keys import load_key_file
from tests.integration.cluster_util import free_base_port, http_json, submit, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("openapi_schemathesis"), pytest.mark.timeout(600)]

ST = str(Path(sys.executable).with_name("st"))
CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = int(os.environ.get("ST_MAX_EXAMPLES", "12"))
"""Per operation and phase; the coverage phase adds its deterministic boundary cases.
``ST_MAX_EXAMPLES`` / ``ST_SEED`` widen or vary the search by hand."""
SEED = int(os.environ.get("ST_SEED", "20261202"))
SLOT_MS = 6_000


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNet, dict[str, list[Any]]]]:
    out = tmp_path_factory.mktemp("openapi") / "net"
    gen.generate_network(out, nodes=gen.parse_nodes("1"), base_port=free_base_port(), slot_ms=SLOT_MS,
                         chain_id="gridchain-openapi", round_timeout_ms=1_000)
    net = LocalNet(out)
    net.start_all()
    try:
        net.wait_ready(timeout_s=60)
        yield net, seed_records(net)
    finally:
        net.stop_all()


def seed_records(net: LocalNet) -> dict[str, list[Any]]:
    """One sell and one buy order in a slot soon to close; wait for its trade."""
    api = net.api(0)
    accounts = {a["name"]: a for a in json.loads((net.dir / "accounts.json").read_text())}
    market = http_json(api + "/v1/status")[1]["market"]
    now = int(time.time() * 1000)
    # The first slot whose gate closes at least 2 s from now.
    slot = max(0, (now + 2_000 + market["gate_lead_ms"] - market["genesis_time_ms"]) // market["slot_ms"] + 1)
    raws = []
    for name, side, price, qty in (("generator-1", "sell", 10, 100), ("consumer-1", "buy", 20, 60)):
        key = load_key_file(accounts[name]["key_file"])
        tx = Tx(chain_id=net.network["chain_id"], sender=key.address, public_key=key.public_key, nonce=1,
                expires_at_ms=now + 600_000,
                body=PlaceOrder(slot=slot, side=side, price_u_per_wh=price, quantity_wh=qty))  # type: ignore[arg-type]
        raws.append(sign_tx(tx, key.signer))
    hashes = submit(net, 0, raws)
    trade_id = f"{slot}-0"
    wait_until("the seeded trade", lambda: http_json(api + f"/v1/trace/trades/{trade_id}")[0] == 200,
               timeout_s=3 * SLOT_MS / 1000 + 30)
    return {
        "hashes": hashes,
        "addresses": [accounts["generator-1"]["address"], accounts["consumer-1"]["address"]],
        "trades": [trade_id],
        "slots": [slot],
    }


def config_with_records(tmp: Path, records: dict[str, list[Any]]) -> Path:
    """The checked-in settings plus the seeded identifiers, each used in half the cases."""
    lines = [CONFIG.read_text(), ""]
    for name, values in records.items():
        lines.append(f"[dictionaries.{name}]\nvalues = {json.dumps(values)}\n")
    bindings = {"path.hash": "hashes", "path.order_id": "hashes", "path.address": "addresses",
                "query.account": "addresses", "path.trade_id": "trades", "path.slot": "slots",
                "query.slot": "slots"}
    lines.append("[parameters]")
    lines += [f'"{key}" = {{ dictionary = "{name}", probability = 0.5 }}' for key, name in bindings.items()]
    path = tmp / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_operation_conforms_to_the_openapi_document(
        node: tuple[LocalNet, dict[str, list[Any]]], tmp_path: Path) -> None:
    net, records = node
    config = config_with_records(tmp_path, records)
    proc = subprocess.run(
        [ST, "--config-file", str(config), "run", net.api(0) + "/openapi.json", "--checks", "all",
         "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
         "--request-timeout", "10", "--output-truncate", "false", "--max-failures", "50",
         "--report", "junit", "--report-dir", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=540, cwd=tmp_path, env=_env())
    output = proc.stdout + proc.stderr
    (tmp_path / "st-output.txt").write_text(output)
    assert proc.returncode == 0, output[-20_000:]
    tested = re.search(r"Tested:\s+(\d+)", output)
    selected = re.search(r"Selected:\s+(\d+)/(\d+)", output)
    cases = re.search(r"(\d+) generated", output)
    assert tested and selected and cases, output[-5_000:]
    assert int(tested.group(1)) == int(selected.group(2)) == len(_operations(net)), output[-5_000:]
    print(f"schemathesis: {cases.group(1)} cases over {tested.group(1)} operations")


def _operations(net: LocalNet) -> list[tuple[str, str]]:
    doc: dict[str, Any] = http_json(net.api(0) + "/openapi.json")[1]
    return [(method, path) for path, item in doc["paths"].items() for method in item]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
    env["NO_COLOR"] = "1"
    return env
