"""One validator's driver, backend and storage in-process, on a generated 4-node network
(the generator's home), for the node.chain unit tests; and a transport that records."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from node.chain.admission import BoundedSet
from node.chain.backend import Backend
from node.chain.driver import Driver
from node.chain.mempool import Mempool
from node.chain.storage import Storage
from node.ops import genesis as gen
from node.ops.config import load_config
from node.ops.keys import load_key_file
from node.ops.metrics import NodeMetrics


@dataclass
class RecordingTransport:
    """Stands in for node.net.transport.Transport: every peer is linked; frames are recorded."""

    log: list[str] = field(default_factory=list)
    sent: list[tuple[int, int, bytes]] = field(default_factory=list)
    broadcasts: list[tuple[int, bytes]] = field(default_factory=list)

    def send(self, peer: int, kind: int, payload: bytes) -> bool:
        self.log.append("send")
        self.sent.append((peer, kind, payload))
        return True

    def broadcast(self, kind: int, payload: bytes) -> None:
        self.log.append("broadcast")
        self.broadcasts.append((kind, payload))

    def connected(self) -> list[int]:
        return [1, 2, 3]


@dataclass
class InProcessNode:
    driver: Driver
    backend: Backend
    storage: Storage
    accounts: dict[str, Any]
    """accounts.json of the generated network, by account name."""


def make_node(tmp_path: Path, *, capacity: int = 100, account_limit: int = 10, **config: Any) -> InProcessNode:
    """The generator validator of a fresh 4-node network; ``config`` overrides NodeConfig fields."""
    out = tmp_path / "net"
    gen.generate_network(out, nodes=gen.parse_nodes("4"), base_port=7100)
    home = out / "generator"
    node_config = msgspec.structs.replace(load_config(home, env={}), **config)
    genesis = gen.load_genesis(out / "genesis.json")
    storage = Storage.open(home / "data")
    mempool = Mempool(capacity=capacity, account_limit=account_limit)
    metrics = NodeMetrics()
    driver = Driver(config=node_config, genesis=genesis, signer=load_key_file(home / "validator_key.json").signer,
                    storage=storage, mempool=mempool, metrics=metrics, verified=BoundedSet(1000), admitted_at={})
    driver.load()
    backend = Backend(config=node_config, genesis=genesis, storage=storage, mempool=mempool, metrics=metrics,
                      driver=driver)
    accounts = {a["name"]: a for a in json.loads((out / "accounts.json").read_text())}
    return InProcessNode(driver=driver, backend=backend, storage=storage, accounts=accounts)
