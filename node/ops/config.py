"""Per-node configuration: ``<home>/node.toml`` plus ``GRIDCHAIN_*`` environment overrides.

One node home holds ``node.toml`` (this struct), ``genesis.json`` (the chain) and
``validator_key.json`` (the validator's key, 0600) — or, for an observer
(``node_role = "observer"``, made by ``gridchain join``), ``node_key.json``: the key
its member named on chain with ``set_node_key``. Chain-wide parameters live in
genesis; everything here is local to one process and may differ between nodes.

Every scalar key can be overridden by the environment variable
``GRIDCHAIN_<KEY IN UPPER CASE>`` (e.g. ``GRIDCHAIN_API_PORT=8080``), which is how
containers adjust a generated home without editing it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

CONFIG_FILE = "node.toml"
GENESIS_FILE = "genesis.json"
KEY_FILE = "validator_key.json"
NODE_KEY_FILE = "node_key.json"
"""An observer's key (``gridchain join``)."""
NODE_ROLES = ("validator", "observer")
ENV_PREFIX = "GRIDCHAIN_"


class ConfigError(ValueError):
    """A node home or config value that cannot be used."""

    code = "bad_config"


class PeerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where to reach another validator."""

    node_id: int
    """The peer's index in the genesis validator list."""
    name: str
    url: str
    """WebSocket URL of the peer's p2p listener, e.g. ``ws://127.0.0.1:7101/p2p``."""


class NodeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Local settings of one validator process."""

    name: str
    """Human name of this node (matches its genesis validator entry)."""
    role: str
    """Consortium role of the operator (generator, grid, retailer, user)."""
    node_id: int
    """This validator's index in the genesis validator list (-1 for an observer)."""
    node_role: str = "validator"
    """``validator`` (votes, in the genesis validator list) or ``observer`` (follows the chain
    from ``observer_peers``, verifying every block's commit certificate; never votes)."""
    observer_peers: tuple[str, ...] = ()
    """Observer only: WebSocket URLs of validators' or other observers' observer listeners
    (``ws://host:p2p_port/p2p/observer``). Env override: comma-separated."""
    max_observer_links: int = 16
    """Most observers linked to this node at once; further ones are refused."""
    listen_host: str = "127.0.0.1"
    """Interface all three listeners bind to."""
    p2p_port: int = 26656
    """Peer-to-peer WebSocket listener (path ``/p2p``)."""
    api_port: int = 8080
    """REST API listener."""
    metrics_port: int = 9100
    """Prometheus ``/metrics`` listener."""
    data_dir: str = "data"
    """SQLite database directory; relative paths are relative to the home."""
    log_level: str = "info"
    """Logging level: debug, info, warning, error."""
    peers: tuple[PeerConfig, ...] = ()
    """The other validators."""
    mempool_capacity: int = 100_000
    """Most pending transactions; beyond it submissions get 503 ``mempool_full``."""
    mempool_account_limit: int = 1_000
    """Most pending transactions per sender."""
    gossip_batch_txs: int = 2_000
    """Most transactions per gossip message."""
    gossip_interval_ms: int = 10
    """How long newly accepted transactions wait to be batched into one gossip message."""
    gossip_admission_queue: int = 0
    """Gossiped tx batches that may wait for admission (then dropped and counted); 0 = admit on
    the peer link itself, which then waits (back-pressure on the sender). Measured with
    ``gridchain bench`` on 4 nodes / 2 cores: 0 gives ~3,900 tx/s, 256 ~2,800 tx/s (many
    small blocks), so 0 is the default."""
    shed_backlog_ms: int = 1_500
    """Overload shedding (``node.chain.shedding``): refuse API submissions (503) while the pending
    backlog is more than this many ms of commits at the recent commit rate; 0 = off."""
    shed_latency_ms: int = 0
    """...and while this node's recent mean admission-to-execution latency exceeds this; 0 = off
    (the default: on a slow or shared machine one slow round would refuse every client for a
    second; ``gridchain bench`` turns it on at 1,500 ms, docs/PERFORMANCE.md)."""
    journal_flush_ms: int = 2
    """Group-commit window of the accepted-transaction journal."""
    idle_block_interval_ms: int = 300
    """A leader with nothing to propose waits this long for transactions before proposing an
    empty block (keep it below the genesis round timeout)."""
    snapshot_every_blocks: int = 200
    """A state snapshot is stored every this many blocks; restarts replay the blocks after it."""
    state_sync: bool = False
    """Start a node that is empty or far behind from a peer's certified state snapshot
    (``node.net.statesync``) instead of replaying every block from genesis."""
    outbound_queue_messages: int = 4_096
    """Bound of each peer's outbound queue; on overflow the oldest gossip is dropped."""
    reconnect_min_ms: int = 100
    """First reconnect delay; doubles up to ``reconnect_max_ms``."""
    reconnect_max_ms: int = 3_000
    """Cap of the reconnect backoff."""
    max_message_bytes: int = 32 * 1024 * 1024
    """Largest p2p frame accepted."""
    max_execution_lag_blocks: int = 256
    """Most committed blocks that may wait for execution; beyond it this validator stops
    voting and proposing until execution catches up (back-pressure, bounded memory)."""
    rate_limit_client_per_min: int = 600
    """Transaction submissions (requests, plus each transaction from an unregistered sender)
    per minute per client address at the REST API; 0 = no limit."""
    rate_limit_client_burst: int = 100
    """Burst allowance of ``rate_limit_client_per_min``."""
    rate_limit_sender_per_min: int = 6
    """Transactions per minute per unregistered sender key at the REST API; 0 = no limit."""
    rate_limit_sender_burst: int = 3
    """Burst allowance of ``rate_limit_sender_per_min``."""
    rate_limit_buckets: int = 10_000
    """Most rate-limit buckets kept per limit; the least recently used is evicted beyond it."""
    tls_cert: str = ""
    """PEM certificate for the p2p listener; empty = plain ws://. Relative paths (all three
    TLS files) are relative to the home. Peers authenticate by the handshake, which binds
    this certificate to the validator key (node/ops/tls.py), so a self-signed one is enough."""
    tls_key: str = ""
    """PEM private key matching ``tls_cert``."""
    tls_ca: str = ""
    """CA bundle used to verify peers' certificates when dialling wss:// URLs; empty = accept
    any certificate the peer then binds to its validator key in the handshake."""


def _coerce(value: str, annotation: Any) -> Any:
    if annotation in (bool, "bool"):
        if value.lower() not in ("1", "0", "true", "false"):
            raise ConfigError(f"expected 1, 0, true or false, got {value!r}")
        return value.lower() in ("1", "true")
    if annotation in (tuple[str, ...], "tuple[str, ...]"):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if annotation in (int, "int"):
        try:
            return int(value)
        except ValueError as exc:
            raise ConfigError(f"expected an integer, got {value!r}") from exc
    return value


def apply_env(doc: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Return ``doc`` with ``GRIDCHAIN_<KEY>`` overrides applied to scalar keys."""
    out = dict(doc)
    for field in msgspec.structs.fields(NodeConfig):
        if field.name == "peers":
            continue
        raw = env.get(ENV_PREFIX + field.name.upper())
        if raw is not None:
            try:
                out[field.name] = _coerce(raw, field.type)
            except ConfigError as exc:
                raise ConfigError(f"{ENV_PREFIX}{field.name.upper()}: {exc}") from exc
    return out


def load_config(home: Path, env: Mapping[str, str] | None = None) -> NodeConfig:
    """Read ``home/node.toml``, apply environment overrides and validate."""
    path = Path(home) / CONFIG_FILE
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    doc = apply_env(doc, os.environ if env is None else env)
    try:
        config = msgspec.convert(doc, NodeConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if config.node_role not in NODE_ROLES:
        raise ConfigError(f"{path}: node_role must be one of {', '.join(NODE_ROLES)}")
    # TLS files named relative to the home (as `gridchain member config` writes them).
    tls = {k: str(Path(home) / v) for k in ("tls_cert", "tls_key", "tls_ca")
           if (v := getattr(config, k)) and not Path(v).is_absolute()}
    return msgspec.structs.replace(config, **tls) if tls else config


def data_path(home: Path, config: NodeConfig) -> Path:
    path = Path(config.data_dir)
    return path if path.is_absolute() else Path(home) / path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_config(config: NodeConfig) -> str:
    """``node.toml`` text for ``config`` (scalars, then one ``[[peers]]`` table per peer)."""
    lines = ["# GridChain node configuration (see node/ops/config.py for every key).", ""]
    doc = msgspec.structs.asdict(config)
    for name, value in doc.items():
        if name != "peers":
            lines.append(f"{name} = {_toml_value(value)}")
    for peer in config.peers:
        lines += ["", "[[peers]]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in msgspec.structs.asdict(peer).items()]
    return "\n".join(lines) + "\n"
