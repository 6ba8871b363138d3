"""``gridchain join``: an observer's home (config, genesis, its own key) and its config keys."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from node.cli import main
from node.ops import genesis as gen
from node.ops.config import ConfigError, load_config
from node.ops.keys import load_key_file
from node.ops.service import NodeService


def test_join_writes_an_observer_home_with_its_own_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen.generate_network(tmp_path / "net", nodes=gen.parse_nodes("4"), base_port=7100)
    home = tmp_path / "member-node"
    assert main(["join", "--genesis", str(tmp_path / "net" / "genesis.json"), "--home", str(home),
                 "--peers", "ws://127.0.0.1:7100/p2p, ws://127.0.0.1:7101", "--api-port", "8090"]) == 0
    info = json.loads(capsys.readouterr().out)
    config = load_config(home, env={})
    assert (config.node_role, config.node_id, config.api_port) == ("observer", -1, 8090)
    assert config.observer_peers == ("ws://127.0.0.1:7100/p2p/observer", "ws://127.0.0.1:7101/p2p/observer")
    key = load_key_file(home / "node_key.json")
    assert info["node_key"] == key.public_key.hex()
    assert stat.S_IMODE((home / "node_key.json").stat().st_mode) == 0o600
    assert (home / "genesis.json").read_bytes() == (tmp_path / "net" / "genesis.json").read_bytes()
    # Environment overrides: a comma-separated peer list; a role that is neither is refused.
    env = load_config(home, env={"GRIDCHAIN_OBSERVER_PEERS": "ws://a/p2p/observer,ws://b/p2p/observer"})
    assert env.observer_peers == ("ws://a/p2p/observer", "ws://b/p2p/observer")
    with pytest.raises(ConfigError):
        load_config(home, env={"GRIDCHAIN_NODE_ROLE": "leader"})
    # Joining again keeps the key (and refuses to overwrite the config without --force).
    assert main(["join", "--genesis", str(tmp_path / "net" / "genesis.json"), "--home", str(home),
                 "--peers", "ws://127.0.0.1:7100/p2p"]) == 2
    assert main(["join", "--genesis", str(tmp_path / "net" / "genesis.json"), "--home", str(home),
                 "--peers", "ws://127.0.0.1:7100/p2p", "--force"]) == 0
    assert load_key_file(home / "node_key.json").public_key == key.public_key


def test_an_observer_may_not_use_a_validator_key(tmp_path: Path) -> None:
    net = tmp_path / "net"
    gen.generate_network(net, nodes=gen.parse_nodes("4"), base_port=7100, observers=1)
    home = net / "observer-1"
    assert NodeService(home, env={}).observer
    (home / "node_key.json").write_bytes((net / "generator" / "validator_key.json").read_bytes())
    with pytest.raises(ConfigError, match="validator key"):
        NodeService(home, env={})
    rows = json.loads((net / "network.json").read_text())["nodes"]
    assert [r.get("node_role", "validator") for r in rows] == ["validator"] * 4 + ["observer"]
    assert rows[4]["member"] == "member-1"
