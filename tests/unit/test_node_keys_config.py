"""Key files, node config and network generation (node.ops.keys, node.ops.config, node.ops.genesis)."""

from __future__ import annotations

import stat
from pathlib import Path

import orjson
import pytest

from consensus import crypto
from contracts.errors import GenesisError
from contracts.initial import initial_state
from node.cli import main
from node.ops import config as cfg
from node.ops import genesis as gen
from node.ops import keys


def test_key_file_roundtrip_is_private_and_refuses_overwrite(tmp_path: Path) -> None:
    signer = keys.new_signer()
    path = tmp_path / "k.json"
    keys.write_key_file(path, signer)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = keys.load_key_file(path)
    assert loaded.public_key == signer.public_key
    assert loaded.address == crypto.address(signer.public_key)
    with pytest.raises(keys.KeyFileError):
        keys.write_key_file(path, keys.new_signer())


def test_tampered_key_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    keys.write_key_file(path, keys.new_signer())
    doc = orjson.loads(path.read_bytes())
    doc["public_key"] = keys.new_signer().public_key.hex()
    path.write_bytes(orjson.dumps(doc))
    with pytest.raises(keys.KeyFileError, match="does not match"):
        keys.load_key_file(path)
    path.write_bytes(b"not json")
    with pytest.raises(keys.KeyFileError):
        keys.load_key_file(path)


def test_cli_keys_new_writes_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a.json"
    assert main(["keys", "new", "--out", str(out)]) == 0
    printed = orjson.loads(capsys.readouterr().out)
    assert printed["address"] == keys.load_key_file(out).address
    assert main(["keys", "new", "--out", str(out)]) == 2


def test_config_roundtrip_and_env_override(tmp_path: Path) -> None:
    conf = cfg.NodeConfig(name="a", role="grid", node_id=0,
                          peers=(cfg.PeerConfig(node_id=1, name="b", url="ws://127.0.0.1:1/p2p"),))
    (tmp_path / cfg.CONFIG_FILE).write_text(cfg.dump_config(conf))
    assert cfg.load_config(tmp_path, env={}) == conf
    over = cfg.load_config(tmp_path, env={"GRIDCHAIN_API_PORT": "9999", "GRIDCHAIN_LISTEN_HOST": "0.0.0.0"})
    assert over.api_port == 9999 and over.listen_host == "0.0.0.0"
    with pytest.raises(cfg.ConfigError):
        cfg.load_config(tmp_path, env={"GRIDCHAIN_API_PORT": "eighty"})


def test_generate_local_network_is_loadable(tmp_path: Path) -> None:
    out = tmp_path / "net"
    network = gen.generate_network(out, nodes=gen.parse_nodes("4"), base_port=7100, slot_ms=5_000)
    assert [n["role"] for n in network["nodes"]] == ["generator", "grid", "retailer", "user"]
    genesis = gen.load_genesis(out / "genesis.json")
    assert genesis.market.slot_ms == 5_000
    assert initial_state(genesis).root  # contracts accept it
    for i, node in enumerate(network["nodes"]):
        home = Path(node["home"])
        conf = cfg.load_config(home, env={})
        assert (conf.node_id, conf.p2p_port, conf.api_port, conf.metrics_port) == (i, 7100 + i, 7200 + i, 7300 + i)
        assert keys.load_key_file(home / cfg.KEY_FILE).public_key == genesis.validators[i].public_key
        assert {p.node_id for p in conf.peers} == set(range(4)) - {i}
        assert keys.is_private(home / cfg.KEY_FILE)
    accounts = orjson.loads((out / "accounts.json").read_bytes())
    assert any(a["role"] == "grid" for a in accounts)
    for account in accounts:
        assert keys.load_key_file(account["key_file"]).address == account["address"]
    with pytest.raises(GenesisError, match="not empty"):
        gen.generate_network(out, nodes=gen.parse_nodes("4"))


def test_compose_mode_uses_service_names_and_fixed_ports(tmp_path: Path) -> None:
    out = tmp_path / "net"
    assert main(["genesis", "--out", str(out), "--host-mode", "compose",
                 "--nodes", "generator:generator,grid:grid,retailer:retailer,user:user"]) == 0
    conf = cfg.load_config(out / "grid", env={})
    assert (conf.listen_host, conf.p2p_port, conf.api_port, conf.metrics_port) == ("0.0.0.0", 26656, 8080, 9100)
    assert {p.url for p in conf.peers} == {f"ws://{n}:26656/p2p" for n in ("generator", "retailer", "user")}


def test_bad_node_spec_and_bad_genesis_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(GenesisError):
        gen.parse_nodes("a:grid,a:user")
    with pytest.raises(GenesisError):
        gen.parse_nodes("nocolon")
    with pytest.raises(GenesisError):
        gen.genesis_from_json(b'{"chain_id": 5}')


def test_genesis_accounts_with_keys_their_owners_hold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alice, bob = crypto.Signer(b"\x01" * 32), crypto.Signer(b"\x02" * 32)
    keys.write_key_file(tmp_path / "alice.json", alice)
    out = tmp_path / "net"
    assert main(["genesis", "--out", str(out), "--nodes", "1", "--no-demo-accounts",
                 "--account", f"alice:consumer:1000:{tmp_path / 'alice.json'}",
                 "--account", f"bob:prosumer:5:{bob.public_key.hex()}"]) == 0
    capsys.readouterr()
    genesis = gen.load_genesis(out / "genesis.json")
    by_name = {a.name: a for a in genesis.accounts}
    assert (by_name["alice"].role, by_name["alice"].balance_u) == ("consumer", 1000)
    assert by_name["alice"].address == crypto.address(alice.public_key)
    assert (by_name["bob"].public_key, by_name["bob"].role, by_name["bob"].balance_u) == (bob.public_key, "prosumer", 5)
    assert genesis.grid_operator == by_name["grid-operator"].address  # the demo manager stays
    rows = {r["name"]: r for r in orjson.loads((out / "accounts.json").read_bytes())}
    assert rows["alice"]["key_file"] == str((tmp_path / "alice.json").resolve()) and rows["bob"]["key_file"] is None


@pytest.mark.parametrize("spec", ["alice:consumer:1000", "alice:wizard:1:" + "00" * 32, "alice:consumer:-1:" + "00" * 32,
                                  "alice:consumer:1:missing-file.json", "grid-operator:consumer:1:" + "00" * 32])
def test_bad_genesis_account_specs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str) -> None:
    assert main(["genesis", "--out", str(tmp_path / "net"), "--nodes", "1", "--account", spec]) == 2
    assert "error:" in capsys.readouterr().err
