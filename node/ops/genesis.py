"""Network generation: genesis, per-node homes, demo accounts and their key files.

``generate_network`` writes a directory that a devnet, a docker compose stack or
an operator can start from::

    DIR/genesis.json            the chain (contracts.genesis.Genesis; bytes as hex)
    DIR/network.json            every node: name, role, node_id, urls, home
    DIR/accounts.json           demo accounts: name, address, role, zone, balance, key file
    DIR/keys/<account>.json     demo account keys (0600); the nodes never read them
    DIR/<node>/node.toml        that node's config (node.ops.config.NodeConfig)
    DIR/<node>/genesis.json     a copy of the genesis
    DIR/<node>/validator_key.json  the validator key (0600)
    DIR/<node>/data/chain.sqlite   an empty database holding fresh safety data: a
                                node started WITHOUT it (wiped data directory) keeps
                                its double-sign guard armed until it has caught up
    DIR/observer-<i>/           with ``observers``: an observer's home (``gridchain join``:
                                node.toml, genesis.json, node_key.json), following every
                                validator; its member is the genesis account
                                ``member-<i>`` (key in DIR/keys/), which registers the
                                node key on chain once the chain runs (``set_node_key``)

Two host modes: ``local`` (every node on 127.0.0.1 with ports derived from a base
port: p2p P+i, api P+100+i, metrics P+200+i) and ``compose`` (each node is a
container named after it, listening on 0.0.0.0 with p2p 26656, api 8080,
metrics 9100; the host publishes api 8081.. and metrics 9101..).

Genesis JSON uses hex for bytes (DESIGN §3); ``load_genesis`` turns it back into
a validated ``Genesis``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson

from consensus import crypto
from consensus.config import ConsensusParams
from contracts.errors import GenesisError
from contracts.genesis import (
    AccountEntry,
    Genesis,
    ValidatorEntry,
    default_market_params,
    validate_genesis,
)
from contracts.transactions import ROLES
from node.chain.storage import Storage
from node.ops import keys
from node.ops.config import CONFIG_FILE, GENESIS_FILE, KEY_FILE, NodeConfig, PeerConfig, dump_config

DEFAULT_ROLES = ("generator", "grid", "retailer", "user")
COMPOSE_P2P_PORT = 26656
COMPOSE_API_PORT = 8080
COMPOSE_METRICS_PORT = 9100
COMPOSE_HOST_API_BASE = 8081
COMPOSE_HOST_METRICS_BASE = 9101
DEMO_BALANCE_U = 1_000_000_000_000
"""Demo accounts start with 1,000,000 tokens (10^12 µ): enough for many MWh at p_max."""
BENCH_BALANCE_U = 1_000_000_000

# (name, role, zone) of the demo participants; the grid operator manages the chain.
DEMO_ACCOUNTS: tuple[tuple[str, str, str], ...] = (
    ("grid-operator", "grid", "Z1"),
    ("generator-1", "generator", "Z1"),
    ("retailer-1", "retailer", "Z1"),
    ("prosumer-1", "prosumer", "Z1"),
    ("consumer-1", "consumer", "Z1"),
    ("consumer-2", "consumer", "Z1"),
    ("regulator-1", "regulator", "Z1"),
)


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class ExtraAccount:
    """A genesis account whose key already exists (``--account NAME:ROLE:BALANCE_U:KEY``)."""

    name: str
    role: str
    balance_u: int
    public_key: bytes
    key_file: Path | None
    """The key file it came from; None when only the public key was given."""


def parse_account(text: str) -> ExtraAccount:
    """``NAME:ROLE:BALANCE_U:KEY`` where KEY is a key file or a public key (64 hex)."""
    parts = text.split(":", 3)
    if len(parts) != 4 or not all(parts):
        raise GenesisError(f"bad account {text!r}: expected NAME:ROLE:BALANCE_U:KEY")
    name, role, balance, key = parts
    if role not in ROLES:
        raise GenesisError(f"bad account {text!r}: role must be one of {', '.join(ROLES)}")
    if not balance.isdigit():
        raise GenesisError(f"bad account {text!r}: BALANCE_U must be a non-negative integer (µ)")
    key_file: Path | None = None
    if len(key) == 64 and all(c in "0123456789abcdef" for c in key.lower()):
        public_key = bytes.fromhex(key)
    else:
        key_file = Path(key)
        public_key = keys.load_key_file(key_file).public_key
    return ExtraAccount(name=name, role=role, balance_u=int(balance), public_key=public_key, key_file=key_file)


def parse_nodes(text: str) -> list[NodeSpec]:
    """``"4"`` (default roles, cycled) or ``"name:role,name:role,..."``."""
    text = text.strip()
    if text.isdigit():
        count = int(text)
        if not 1 <= count <= 64:
            raise GenesisError("--nodes must be between 1 and 64")
        specs = []
        for i in range(count):
            role = DEFAULT_ROLES[i % len(DEFAULT_ROLES)]
            name = role if count <= len(DEFAULT_ROLES) else f"{role}-{i // len(DEFAULT_ROLES) + 1}"
            specs.append(NodeSpec(name=name, role=role))
        return specs
    specs = []
    for item in text.split(","):
        name, sep, role = item.strip().partition(":")
        if not sep or not name or not role:
            raise GenesisError(f"bad node spec {item!r}: expected name:role")
        if not all(c.isalnum() or c in "-_" for c in name):
            raise GenesisError(f"bad node name {name!r}: letters, digits, - and _ only")
        specs.append(NodeSpec(name=name, role=role))
    if len({s.name for s in specs}) != len(specs):
        raise GenesisError("node names must be unique")
    return specs


def _ports(mode: str, base_port: int, index: int) -> tuple[int, int, int]:
    if mode == "compose":
        return COMPOSE_P2P_PORT, COMPOSE_API_PORT, COMPOSE_METRICS_PORT
    return base_port + index, base_port + 100 + index, base_port + 200 + index


def _p2p_url(mode: str, spec: NodeSpec, p2p_port: int) -> str:
    host = spec.name if mode == "compose" else "127.0.0.1"
    return f"ws://{host}:{p2p_port}/p2p"


def generate_network(
    out: Path,
    *,
    nodes: list[NodeSpec],
    host_mode: str = "local",
    base_port: int = 7100,
    slot_ms: int = 60_000,
    chain_id: str = "gridchain-local",
    round_timeout_ms: int = 1_000,
    demo_accounts: bool = True,
    bench_accounts: int = 0,
    bench_role: str = "consumer",
    extra_accounts: tuple[ExtraAccount, ...] = (),
    genesis_time_ms: int | None = None,
    force: bool = False,
    observers: int = 0,
) -> dict[str, Any]:
    """Write a complete network into ``out``; return the network.json document.

    ``bench_accounts`` funded accounts named ``bench-NNNN`` of role ``bench_role`` serve
    ``gridchain bench`` (prosumers for the market workload: they may buy, sell and meter).

    ``extra_accounts`` join the genesis with keys their owners already hold (after the
    demo accounts, so the demo grid operator stays the chain's manager)."""
    if host_mode not in ("local", "compose"):
        raise GenesisError("host mode must be 'local' or 'compose'")
    if not nodes:
        raise GenesisError("a network needs at least one node")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise GenesisError(f"{out} is not empty (use --force to overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    validator_signers = [keys.new_signer() for _ in nodes]
    validators = tuple(
        ValidatorEntry(name=s.name, role=s.role, public_key=k.public_key, address=crypto.address(k.public_key))
        for s, k in zip(nodes, validator_signers, strict=True)
    )
    account_rows: list[dict[str, Any]] = []
    entries: list[AccountEntry] = []
    wanted: list[tuple[str, str, str, int, Path]] = []
    # A grid operator always exists: the chain needs its manager.
    demo = DEMO_ACCOUNTS if demo_accounts else DEMO_ACCOUNTS[:1]
    wanted += [(n, r, z, DEMO_BALANCE_U, out / "keys" / f"{n}.json") for n, r, z in demo]
    wanted += [(f"member-{i + 1}", "prosumer", "Z1", DEMO_BALANCE_U, out / "keys" / f"member-{i + 1}.json")
               for i in range(observers)]
    wanted += [
        (f"bench-{i:04d}", bench_role, "Z1", BENCH_BALANCE_U, out / "keys" / "bench" / f"bench-{i:04d}.json")
        for i in range(bench_accounts)
    ]
    grid_operator = ""
    for name, role, zone, balance_u, key_path in wanted:
        signer = keys.new_signer()
        keys.write_key_file(key_path, signer)
        addr = crypto.address(signer.public_key)
        entries.append(
            AccountEntry(name=name, address=addr, public_key=signer.public_key, role=role, zone=zone, balance_u=balance_u)
        )
        account_rows.append(
            {"name": name, "address": addr, "public_key": signer.public_key.hex(), "role": role,
             "zone": zone, "balance_u": balance_u, "key_file": str(key_path.resolve())}
        )
        if role == "grid" and not grid_operator:
            grid_operator = addr
    names = {e.name for e in entries}
    for extra in extra_accounts:
        if extra.name in names:
            raise GenesisError(f"account name {extra.name!r} is used twice")
        names.add(extra.name)
        addr = crypto.address(extra.public_key)
        entries.append(AccountEntry(name=extra.name, address=addr, public_key=extra.public_key,
                                    role=extra.role, zone="Z1", balance_u=extra.balance_u))
        account_rows.append(
            {"name": extra.name, "address": addr, "public_key": extra.public_key.hex(), "role": extra.role,
             "zone": "Z1", "balance_u": extra.balance_u,
             "key_file": str(extra.key_file.resolve()) if extra.key_file is not None else None})
        if extra.role == "grid" and not grid_operator:
            grid_operator = addr
    if genesis_time_ms is None:
        genesis_time_ms = int(time.time() * 1000)
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time_ms=genesis_time_ms,
        grid_operator=grid_operator,
        validators=validators,
        accounts=tuple(entries),
        market=default_market_params(slot_ms=slot_ms, gate_lead_ms=min(10_000, slot_ms // 2),
                                     meter_window_ms=max(slot_ms, 2_000)),
        consensus=ConsensusParams(round_timeout_ms=round_timeout_ms),
    )
    validate_genesis(genesis)
    genesis_json = dump_genesis(genesis)
    (out / GENESIS_FILE).write_bytes(genesis_json)

    node_rows = []
    for index, (spec, signer) in enumerate(zip(nodes, validator_signers, strict=True)):
        p2p, api, metrics = _ports(host_mode, base_port, index)
        peers = tuple(
            PeerConfig(node_id=j, name=other.name, url=_p2p_url(host_mode, other, _ports(host_mode, base_port, j)[0]))
            for j, other in enumerate(nodes)
            if j != index
        )
        config = NodeConfig(
            name=spec.name, role=spec.role, node_id=index,
            listen_host="0.0.0.0" if host_mode == "compose" else "127.0.0.1",
            p2p_port=p2p, api_port=api, metrics_port=metrics, peers=peers,
        )
        home = out / spec.name
        home.mkdir(parents=True, exist_ok=True)
        (home / CONFIG_FILE).write_text(dump_config(config))
        (home / GENESIS_FILE).write_bytes(genesis_json)
        keys.write_key_file(home / KEY_FILE, signer)
        Storage.initialize_fresh(home / config.data_dir)
        if host_mode == "compose":
            api_url = f"http://127.0.0.1:{COMPOSE_HOST_API_BASE + index}"
            metrics_url = f"http://127.0.0.1:{COMPOSE_HOST_METRICS_BASE + index}/metrics"
        else:
            api_url = f"http://127.0.0.1:{api}"
            metrics_url = f"http://127.0.0.1:{metrics}/metrics"
        node_rows.append(
            {"name": spec.name, "role": spec.role, "node_id": index,
             "address": crypto.address(signer.public_key), "public_key": signer.public_key.hex(),
             "p2p_url": _p2p_url(host_mode, spec, p2p), "api_url": api_url, "metrics_url": metrics_url,
             "home": str(home.resolve())}
        )
    node_rows += _observer_rows(out, nodes, observers, host_mode=host_mode, base_port=base_port,
                                genesis_json=genesis_json)
    network = {"chain_id": chain_id, "host_mode": host_mode, "nodes": node_rows}
    (out / "network.json").write_bytes(orjson.dumps(network, option=orjson.OPT_INDENT_2) + b"\n")
    (out / "accounts.json").write_bytes(orjson.dumps(account_rows, option=orjson.OPT_INDENT_2) + b"\n")
    return network


def _observer_rows(out: Path, nodes: list[NodeSpec], count: int, *, host_mode: str, base_port: int,
                   genesis_json: bytes) -> list[dict[str, Any]]:
    """Homes of ``count`` observers following every validator (ports continue the validators')."""
    from node.ops.observers import create_observer_home

    peers = [_p2p_url(host_mode, spec, _ports(host_mode, base_port, j)[0]) for j, spec in enumerate(nodes)]
    rows = []
    for i in range(count):
        index = len(nodes) + i
        p2p, api, metrics = _ports(host_mode, base_port, index)
        name = f"observer-{i + 1}"
        info = create_observer_home(
            out / name, genesis_json=genesis_json, name=name, peers=peers,
            listen_host="0.0.0.0" if host_mode == "compose" else "127.0.0.1",
            p2p_port=p2p, api_port=api, metrics_port=metrics)
        rows.append({"name": name, "role": "member", "node_role": "observer", "node_id": -1,
                     "member": f"member-{i + 1}", "public_key": info["node_key"],
                     "p2p_url": _p2p_url(host_mode, NodeSpec(name=name, role="observer"), p2p),
                     "api_url": f"http://127.0.0.1:{api}", "metrics_url": f"http://127.0.0.1:{metrics}/metrics",
                     "home": info["home"]})
    return rows


def dump_genesis(genesis: Genesis) -> bytes:
    doc = msgspec.to_builtins(genesis, builtin_types=(bytes,), order="deterministic")
    return orjson.dumps(doc, default=_hex_default, option=orjson.OPT_INDENT_2) + b"\n"


def _hex_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _unhex(value: Any, info: Any) -> Any:
    """Turn hex strings back into bytes wherever ``info`` (msgspec type info) expects bytes."""
    mi = msgspec.inspect
    if isinstance(info, mi.Metadata):
        return _unhex(value, info.type)
    if isinstance(info, mi.BytesType) and isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError as exc:
            raise GenesisError(f"bad hex string {value[:20]!r}") from exc
    if isinstance(info, mi.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f.type for f in info.fields}
        return {k: _unhex(v, fields[k]) if k in fields else v for k, v in value.items()}
    if isinstance(info, (mi.ListType, mi.VarTupleType)) and isinstance(value, list):
        return [_unhex(v, info.item_type) for v in value]
    if isinstance(info, mi.UnionType):
        for option in info.types:
            if not isinstance(option, mi.NoneType):
                return _unhex(value, option)
    return value


def genesis_from_json(data: bytes) -> Genesis:
    """Parse and validate genesis JSON; raise ``GenesisError`` with a clear message."""
    try:
        doc = orjson.loads(data)
        genesis = msgspec.convert(_unhex(doc, msgspec.inspect.type_info(Genesis)), Genesis)
    except (orjson.JSONDecodeError, msgspec.ValidationError) as exc:
        raise GenesisError(f"invalid genesis: {exc}") from exc
    validate_genesis(genesis)
    return genesis


def load_genesis(path: Path) -> Genesis:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GenesisError(f"cannot read {path}: {exc.strerror}") from exc
    return genesis_from_json(data)
