"""The signing spec works on a live node with no project code on the client side.

Setup: a one-validator network (a real ``gridchain node`` process on 127.0.0.1)
whose genesis has the chain id of docs/test-vectors/transactions.json and holds the
vector keys' accounts (``gridchain genesis --account``). Steps: (1) every vector the
file marks committable is POSTed, as its JSON request, with ``urllib`` alone, and
must commit with an ok receipt and the documented hash; (2) the README's curl block
runs under bash as printed and its order commits. curl is required: without it the
test fails with a message instead of skipping (a skip in CI counts as a failure).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.devnet.localnet import LocalNet
from node.ops import genesis as gen
from node.ops import keys
from tests.integration.cluster_util import free_base_port
from tests.unit import tx_vectors

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("signing_vectors"), pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
VECTORS: dict[str, Any] = json.loads(tx_vectors.VECTORS_PATH.read_text())
SLOT_MS = 10_000
GRIDCHAIN_BIN = Path(sys.executable).parent


def post_json(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_final(api: str, tx_hash: str, *, timeout_s: float = 60.0) -> dict[str, Any]:
    """The tx lookup once the tx is committed or failed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = get_json(f"{api}/v1/transactions/{tx_hash}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            found = None
        if found is not None and found["status"] in ("committed", "failed"):
            return found  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"tx {tx_hash} not final after {timeout_s} s: {found}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNet, dict[str, Path]]]:
    tmp = tmp_path_factory.mktemp("signing")
    key_files = {}
    for name in tx_vectors.RFC8032_SEEDS:
        key_files[name] = tmp / f"{name}.json"
        keys.write_key_file(key_files[name], tx_vectors.signer(name))
    accounts = tuple(
        gen.parse_account(f"{name}:{spec['role']}:{spec['balance_u']}:{key_files[name]}")
        for name, spec in VECTORS["genesis_accounts"].items())
    out = tmp / "net"
    gen.generate_network(out, nodes=gen.parse_nodes("1"), base_port=free_base_port(), slot_ms=SLOT_MS,
                         chain_id=VECTORS["chain_id"], extra_accounts=accounts)
    net = LocalNet(out)
    net.start_all()
    try:
        net.wait_ready(timeout_s=60)
        yield net, key_files
    finally:
        net.stop_all()


def test_documented_vectors_submitted_with_plain_http_commit(live: Any) -> None:
    net, _ = live
    api = net.api(0)
    by_name = {v["name"]: v for v in VECTORS["vectors"]}
    bob = VECTORS["accounts"]["bob"]["address"]
    bob_before = get_json(f"{api}/v1/accounts/{bob}")["balance_u"]
    for name in VECTORS["committable_in_order"]:
        vector = by_name[name]
        status, body = post_json(f"{api}/v1/transactions", vector["request"])
        assert status == 202, (name, status, body)
        assert body["tx_hash"] == vector["tx_hash"], name
        found = wait_final(api, vector["tx_hash"])
        assert found["status"] == "committed", (name, found)
        assert found["receipt"]["ok"] is True and found["receipt"]["kind"] == vector["kind"]
    assert get_json(f"{api}/v1/accounts/{bob}")["balance_u"] == bob_before + 1_000_000
    carol = get_json(f"{api}/v1/accounts/{VECTORS['accounts']['carol']['address']}")
    assert carol["status"] == "pending" and carol["role"] == "prosumer"
    # The raw form of a committed vector is the same transaction: resubmitting it is harmless.
    transfer = by_name["transfer"]
    status, body = post_json(f"{api}/v1/transactions", {"raw": transfer["raw"]})
    assert (status, body.get("tx_hash")) == (202, transfer["tx_hash"]), (status, body)


def readme_curl_block() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- tests/integration/test_signing_vectors.py runs this block with bash -->\n"
                      r"```bash\n(.*?)```", text, re.S)
    assert match, "README.md lost its curl block (or the marker above it)"
    return match.group(1)


def test_the_readme_curl_block_runs_as_printed(live: Any, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed: this test runs the README's curl example and may not skip "
                    "(install curl, e.g. apt-get install curl)")
    net, key_files = live
    api = net.api(0)
    env = {**os.environ, "NODE": api, "KEY": str(key_files["bob"]),
           "PATH": f"{GRIDCHAIN_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_curl_block()], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (done.stdout, done.stderr)
    signed = json.loads((tmp_path / "order.json").read_text())
    assert set(signed) == {"tx", "signature"} and signed["tx"]["body"]["kind"] == "place_order"
    match = re.search(r'"tx_hash":\s*"([0-9a-f]{64})"', done.stdout.splitlines()[-1])
    assert match, f"curl did not print a tx_hash: {done.stdout!r}"
    found = wait_final(api, match.group(1))
    assert found["status"] == "committed", found
    receipt = found["receipt"]
    assert receipt["ok"] is True and receipt["order_id"] == match.group(1)
    assert receipt["slot"] == signed["tx"]["body"]["slot"]
    order = get_json(f"{api}/v1/orders/{receipt['order_id']}")
    assert order["owner"] == VECTORS["accounts"]["bob"]["address"] and order["quantity_wh"] == 500
