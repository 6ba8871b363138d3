"""A real node process's /metrics after rejected submissions: gridchain_transactions_rejected_total
by code (both before admission and at admission), the standard process/platform/gc collectors,
and no `_created` series."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator

import pytest

from node.devnet.localnet import LocalNet
from node.ops import genesis as gen
from tests.integration.cluster_util import Sender, free_base_port, http_json

pytestmark = [pytest.mark.xdist_group("node_metrics"), pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    out = tmp_path_factory.mktemp("metrics") / "net"
    gen.generate_network(out, nodes=gen.parse_nodes("1"), base_port=free_base_port(), slot_ms=60_000,
                         chain_id="gridchain-test")
    network = LocalNet(out)
    network.start_all()
    try:
        network.wait_ready(timeout_s=60)
        yield network
    finally:
        network.stop_all()


def scrape(net: LocalNet) -> str:
    with urllib.request.urlopen(net.nodes[0]["metrics_url"], timeout=5) as response:
        return str(response.read().decode())


def sample(text: str, series: str) -> float | None:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return None if match is None else float(match.group(1))


def test_rejected_submissions_are_counted_by_code(net: LocalNet) -> None:
    url = net.api(0) + "/v1/transactions"
    raw = Sender(net).sign()
    tampered = raw[:-1] + bytes([raw[-1] ^ 1])  # last signature byte

    status, body = http_json(url, {"raw": "not hex"})
    assert status == 400 and body["error"]["code"] == "malformed", body
    status, body = http_json(url, {"raw": tampered.hex()})
    assert 400 <= status < 500, body
    admission_code = body["error"]["code"]
    status, body = http_json(url, {"transactions": [{"raw": tampered.hex()}, {"raw": tampered.hex()}]})
    assert 400 <= status < 500, body

    text = scrape(net)
    assert sample(text, 'gridchain_transactions_rejected_total{code="malformed"}') == 1.0, text
    assert sample(text, f'gridchain_transactions_rejected_total{{code="{admission_code}"}}') == 3.0, text
    status, _ = http_json(url, {"raw": raw.hex()})
    assert status == 202
    text = scrape(net)
    assert sample(text, "gridchain_transactions_submitted_total") == 1.0
    assert sample(text, 'gridchain_transactions_rejected_total{code="malformed"}') == 1.0


def test_standard_collectors_and_no_created_series(net: LocalNet) -> None:
    text = scrape(net)
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
                 "python_info", "python_gc_collections_total"):
        assert re.search(rf"^{name}[{{ ]", text, re.MULTILINE), f"{name} missing"
    assert not [line for line in text.splitlines() if "_created" in line]
    assert sample(text, "gridchain_up") == 1.0
