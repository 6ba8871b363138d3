"""``gridchain tx ... --dry-run``: prints the signed transaction as the REST API accepts
it and sends nothing. With --chain-id, --nonce, --expires-at-ms and a numeric slot the
output is fully determined: it is the documented test vector, byte for byte."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from node.cli import main
from node.ops import keys
from tests.unit import tx_vectors
from tests.unit.test_api_cli import node  # noqa: F401  (fixture)

UNREACHABLE = "http://127.0.0.1:9"
VECTORS = {v["name"]: v for v in orjson.loads(tx_vectors.VECTORS_PATH.read_bytes())["vectors"]}
FIXED = ("--chain-id", tx_vectors.CHAIN_ID, "--expires-at-ms", str(tx_vectors.EXPIRES_AT_MS))


@pytest.fixture
def vector_keys(tmp_path: Path) -> dict[str, str]:
    out = {}
    for name in tx_vectors.RFC8032_SEEDS:
        path = tmp_path / f"{name}.json"
        keys.write_key_file(path, tx_vectors.signer(name))
        out[name] = str(path)
    return out


def dry_run(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main(["tx", *argv, "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return orjson.loads(out)


def test_offline_dry_run_prints_exactly_the_documented_vectors(vector_keys: dict[str, str], capsys: Any) -> None:
    bob = tx_vectors.address("bob")
    cases = {
        "transfer": ("transfer", "--key", vector_keys["alice"], "--nonce", "1", "--to", bob, "--amount-u", "1000000"),
        "place_order": ("order", "--key", vector_keys["bob"], "--nonce", "1", "--slot", "29000000", "--side", "buy",
                        "--price", "120", "--quantity-wh", "500"),
        "cancel_order": ("cancel", "--key", vector_keys["bob"], "--nonce", "2",
                         "--order-id", VECTORS["place_order"]["tx_hash"]),
        "submit_reading": ("reading", "--key", vector_keys["carol"], "--account", bob, "--nonce", "1",
                           "--slot", "29000000", "--import-wh", "0", "--export-wh", "1250"),
        "register_request": ("register", "--key", vector_keys["carol"], "--nonce", "1", "--role", "prosumer",
                             "--zone", "Z1", "--name", "carol"),
        "notarize": ("notarize", "--key", vector_keys["alice"], "--party-key", vector_keys["bob"], "--nonce", "2",
                     "--doc-hash", VECTORS["notarize"]["request"]["tx"]["body"]["doc_hash"],
                     "--title", "supply contract 42"),
    }
    for name, argv in cases.items():
        kind, *rest = argv
        printed = dry_run(capsys, kind, "--node", UNREACHABLE, *FIXED, *rest)
        assert printed == VECTORS[name]["request"], name


def test_dry_run_sends_nothing_and_its_output_is_accepted_by_a_node(node: Any, capsys: Any) -> None:  # noqa: F811
    server, key = node
    gen = keys.load_key_file(key["gen"]).address
    before = server.backend.state.accounts[gen].balance_u
    printed = dry_run(capsys, "transfer", "--node", server.url, "--key", key["cons"], "--to", gen,
                      "--amount-u", "7")
    time.sleep(0.3)  # blocks keep coming: nothing was sent
    assert server.backend.state.accounts[gen].balance_u == before
    request = urllib.request.Request(server.url + "/v1/transactions", data=json.dumps(printed).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
        tx_hash = json.loads(response.read())["tx_hash"]
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline and status != "committed":
        with urllib.request.urlopen(f"{server.url}/v1/transactions/{tx_hash}", timeout=10) as response:
            status = json.loads(response.read())["status"]
        time.sleep(0.05)
    assert status == "committed"
    assert server.backend.state.accounts[gen].balance_u == before + 7


def test_version_prints_the_installed_release(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.metadata

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"gridchain {importlib.metadata.version('gridchain')}"
