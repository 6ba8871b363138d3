"""The genesis ceremony of node.ops.member and its CLI: member files carry no secret,
the genesis is built from them alone, its hash is printed and verified, and a member
home gets its index, its peers and TLS from the genesis and the member files."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from contracts.errors import GenesisError
from node.cli import main
from node.ops import member, tls
from node.ops.config import load_config
from node.ops.genesis import load_genesis

NAMES = ("user", "grid", "generator", "retailer")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def _ceremony(tmp: Path, capsys: pytest.CaptureFixture[str], *, time_ms: int = 1_700_000_000_000) -> dict[str, Any]:
    for name in NAMES:
        code, out = _cli(capsys, "keys", "new", "--out", str(tmp / name / "validator_key.json"),
                         "--member", str(tmp / name / "member.json"), "--name", name, "--role", name,
                         "--p2p-url", f"wss://{name}.example.org:26656/p2p")
        assert code == 0 and out["member_file"].endswith("member.json")
    code, op = _cli(capsys, "keys", "new", "--out", str(tmp / "operator.json"))
    assert code == 0
    members = [str(tmp / n / "member.json") for n in NAMES]
    code, out = _cli(capsys, "genesis", "--members", *members, "--account", f"operator:grid:1000:{op['public_key']}",
                     "--genesis-time-ms", str(time_ms), "--slot-ms", "10000", "-o", str(tmp / "genesis.json"))
    assert code == 0
    return {"members": members, "operator": op, "out": out}


def test_member_file_is_public_and_genesis_is_built_from_member_files_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = _ceremony(tmp_path, capsys)
    doc = json.loads((tmp_path / "grid" / "member.json").read_text())
    assert set(doc) == {"format", "name", "role", "public_key", "address", "p2p_url", "api_url"}
    key = json.loads((tmp_path / "grid" / "validator_key.json").read_text())
    assert doc["public_key"] == key["public_key"] and key["seed"] not in (tmp_path / "genesis.json").read_text()
    genesis = load_genesis(tmp_path / "genesis.json")
    # Validators in name order, whatever the order of the command line.
    assert [v.name for v in genesis.validators] == sorted(NAMES) == c["out"]["validators"]
    assert genesis.grid_operator == c["operator"]["address"]
    assert c["out"]["genesis_hash"] == member.genesis_hash((tmp_path / "genesis.json").read_bytes())


def test_same_member_files_rebuild_the_same_genesis_hash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = _ceremony(tmp_path, capsys)
    again = tmp_path / "again.json"
    code, out = _cli(capsys, "genesis", "--members", *reversed(c["members"]), "--account",
                     f"operator:grid:1000:{c['operator']['public_key']}", "--genesis-time-ms", "1700000000000",
                     "--slot-ms", "10000", "-o", str(again))
    assert code == 0 and out["genesis_hash"] == c["out"]["genesis_hash"]


def test_verify_accepts_the_printed_hash_and_refuses_any_other(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = _ceremony(tmp_path, capsys)
    path, digest = str(tmp_path / "genesis.json"), c["out"]["genesis_hash"]
    code, out = _cli(capsys, "genesis", "verify", path, "--expect", digest)
    assert code == 0 and out["ok"] is True
    assert _cli(capsys, "genesis", "verify", path, "--expect", "0" * 64)[0] == 1
    # One byte changed in the file: the hash no longer matches.
    text = (tmp_path / "genesis.json").read_text().replace('"gridchain"', '"gridchaim"')
    (tmp_path / "genesis.json").write_text(text)
    assert _cli(capsys, "genesis", "verify", path, "--expect", digest)[0] == 1


def test_private_key_files_are_refused_as_member_files_and_as_accounts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = _ceremony(tmp_path, capsys)
    with pytest.raises(GenesisError, match="PRIVATE"):
        member.load_member_file(tmp_path / "grid" / "validator_key.json")
    code, _ = _cli(capsys, "genesis", "--members", *c["members"], "--account",
                   f"operator:grid:1000:{tmp_path / 'operator.json'}", "-o", str(tmp_path / "g2.json"))
    assert code == 2 and not (tmp_path / "g2.json").exists()
    # No grid account: no manager for the chain.
    code, _ = _cli(capsys, "genesis", "--members", *c["members"], "-o", str(tmp_path / "g3.json"))
    assert code == 2


@pytest.mark.parametrize(("field", "value"), [
    ("p2p_url", "http://grid:26656/p2p"), ("p2p_url", "wss://:26656/p2p"), ("p2p_url", "wss://grid:99999/p2p"),
    ("address", "00" * 20), ("name", "bad name"),
])
def test_bad_member_files_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str,
                                      value: str) -> None:
    _ceremony(tmp_path, capsys)
    path = tmp_path / "grid" / "member.json"
    doc = json.loads(path.read_text())
    doc[field] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(GenesisError):
        member.load_member_file(path)


def test_duplicate_members_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = _ceremony(tmp_path, capsys)
    code, _ = _cli(capsys, "genesis", "--members", c["members"][0], c["members"][0], "--account",
                   f"operator:grid:1:{c['operator']['public_key']}", "-o", str(tmp_path / "dup.json"))
    assert code == 2


def test_member_config_finds_its_index_peers_and_makes_a_bound_tls_cert(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = _ceremony(tmp_path, capsys)
    home = tmp_path / "retailer"
    (home / "genesis.json").write_bytes((tmp_path / "genesis.json").read_bytes())
    code, out = _cli(capsys, "member", "config", "--home", str(home), "--members", *c["members"], "--new-chain")
    assert code == 0 and out["node_id"] == sorted(NAMES).index("retailer") and out["tls"] is True
    config = load_config(home, env={})
    assert {p.name: p.url for p in config.peers} == {
        n: f"wss://{n}.example.org:26656/p2p" for n in NAMES if n != "retailer"}
    # TLS files relative to the home; the key private; the certificate made once.
    assert config.tls_cert == str(home / tls.CERT_FILE) and config.tls_key == str(home / tls.KEY_FILE)
    assert (home / tls.KEY_FILE).stat().st_mode & 0o077 == 0
    fp = tls.cert_file_fingerprint(home / tls.CERT_FILE)
    assert (home / "data" / "chain.sqlite").exists()
    assert _cli(capsys, "member", "config", "--home", str(home), "--members", *c["members"])[0] == 0
    assert tls.cert_file_fingerprint(home / tls.CERT_FILE) == fp
    assert tomllib.loads((home / "node.toml").read_text())["tls_cert"] == "tls_cert.pem"
    # A member file missing: no address for that peer.
    code, _ = _cli(capsys, "member", "config", "--home", str(home), "--members", *c["members"][:3])
    assert code == 2


def test_member_config_refuses_a_key_that_is_not_a_validator(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = _ceremony(tmp_path, capsys)
    home = tmp_path / "stranger"
    assert _cli(capsys, "keys", "new", "--out", str(home / "validator_key.json"))[0] == 0
    (home / "genesis.json").write_bytes((tmp_path / "genesis.json").read_bytes())
    assert _cli(capsys, "member", "config", "--home", str(home), "--members", *c["members"])[0] == 2


def test_init_data_makes_fresh_safety_data_once_where_the_config_says(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """What the Kubernetes init container runs: GRIDCHAIN_DATA_DIR puts the database on
    the volume; an existing database is never replaced."""
    c = _ceremony(tmp_path, capsys)
    home = tmp_path / "grid"
    (home / "genesis.json").write_bytes((tmp_path / "genesis.json").read_bytes())
    assert _cli(capsys, "member", "config", "--home", str(home), "--members", *c["members"])[0] == 0
    assert not (home / "data").exists()  # no --new-chain: no database
    volume = tmp_path / "volume"
    monkeypatch.setenv("GRIDCHAIN_DATA_DIR", str(volume))
    code, out = _cli(capsys, "member", "init-data", "--home", str(home))
    assert code == 0 and out == {"data_dir": str(volume), "created": True}
    before = (volume / "chain.sqlite").read_bytes()
    code, out = _cli(capsys, "member", "init-data", "--home", str(home))
    assert code == 0 and out["created"] is False and (volume / "chain.sqlite").read_bytes() == before
