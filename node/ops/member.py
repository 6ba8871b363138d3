"""One member, one host: the genesis ceremony and a member's node home.

Ceremony (docs/OPERATIONS.md): every member makes its validator key on its own host
(``gridchain keys new --member``) and publishes only its *member file*::

    {"format": "gridchain-member/v1", "name": "grid", "role": "grid",
     "public_key": "<64 hex>", "address": "<40 hex>",
     "p2p_url": "wss://grid.example.org:26656/p2p", "api_url": "https://..."}

The coordinator builds the genesis from the member files alone (``build_genesis``;
validators in name order, so anyone holding the same member files and parameters
rebuilds a byte-identical file) and publishes it with its hash: SHA-256 of the
file's bytes (``genesis_hash``, the same as ``sha256sum genesis.json``). Each member
checks the hash (``gridchain genesis verify``), then makes its node home from the
genesis and the member files (``configure_home``): its validator index is found by
its public key, its peers' URLs come from their member files, and a ``wss://`` own
URL turns on TLS with a self-signed certificate bound to the key (``node.ops.tls``).

A member home (the directory ``deploy/member/`` mounts)::

    validator_key.json  private (0600)     member.json   public
    tls_key.pem         private (0600)     tls_cert.pem  public
    genesis.json        from the ceremony  node.toml     written by configure_home
    data/               the database (fresh safety data only with new_chain=True)
"""

from __future__ import annotations

import hashlib
import urllib.parse
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
from node.chain.storage import DB_FILE, Storage
from node.ops import keys, tls
from node.ops.config import CONFIG_FILE, GENESIS_FILE, KEY_FILE, NodeConfig, PeerConfig, dump_config
from node.ops.genesis import ExtraAccount, dump_genesis, load_genesis

MEMBER_FORMAT = "gridchain-member/v1"
MEMBER_FILE = "member.json"


class MemberFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a member publishes about its validator: no secret in it."""

    format: str = MEMBER_FORMAT
    name: str
    role: str
    public_key: str
    address: str
    p2p_url: str
    """Where the other validators reach this one: ``wss://HOST:PORT/p2p`` (host a DNS name or address)."""
    api_url: str = ""
    """Where participants reach this node's REST API (informative)."""


def check_p2p_url(url: str) -> str:
    """``ws[s]://HOST:PORT/p2p``; returns the host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname or parts.path != "/p2p":
        raise GenesisError(f"bad p2p url {url!r}: expected wss://HOST:PORT/p2p")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise GenesisError(f"bad p2p url {url!r}: {exc}") from exc
    return parts.hostname


def new_member(*, name: str, role: str, public_key: bytes, p2p_url: str, api_url: str = "") -> MemberFile:
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise GenesisError(f"bad member name {name!r}: letters, digits, - and _ only")
    if not role or not role.isidentifier():
        raise GenesisError(f"bad role {role!r}")
    check_p2p_url(p2p_url)
    return MemberFile(name=name, role=role, public_key=public_key.hex(), address=crypto.address(public_key),
                      p2p_url=p2p_url, api_url=api_url)


def write_member_file(path: Path, member: MemberFile) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(orjson.dumps(msgspec.to_builtins(member), option=orjson.OPT_INDENT_2) + b"\n")


def load_member_file(path: Path) -> MemberFile:
    """Load and check a member file; a private key file is refused by name."""
    try:
        doc: Any = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise GenesisError(f"cannot read {path}: {exc.strerror}") from exc
    except orjson.JSONDecodeError as exc:
        raise GenesisError(f"{path}: not JSON: {exc}") from exc
    if isinstance(doc, dict) and "seed" in doc:
        raise GenesisError(f"{path} is a PRIVATE key file; members share only their member file")
    try:
        member = msgspec.convert(doc, MemberFile)
        public_key = bytes.fromhex(member.public_key)
    except (msgspec.ValidationError, ValueError) as exc:
        raise GenesisError(f"{path}: not a member file: {exc}") from exc
    if member.format != MEMBER_FORMAT:
        raise GenesisError(f"{path}: unknown format {member.format!r}")
    if len(public_key) != 32 or member.address != crypto.address(public_key):
        raise GenesisError(f"{path}: address does not match the public key")
    return new_member(name=member.name, role=member.role, public_key=public_key,
                      p2p_url=member.p2p_url, api_url=member.api_url)


def build_genesis(
    members: list[MemberFile], *, accounts: tuple[ExtraAccount, ...], chain_id: str, genesis_time_ms: int,
    slot_ms: int = 60_000, round_timeout_ms: int = 1_000, zone: str = "Z1",
) -> Genesis:
    """The genesis of a consortium from its member files and public account keys only.

    The grid operator (the chain's manager) is the first ``grid`` account."""
    if not members:
        raise GenesisError("a consortium needs at least one member")
    ordered = sorted(members, key=lambda m: m.name)
    for kind, values in (("name", [m.name for m in ordered]), ("public key", [m.public_key for m in ordered])):
        if len(set(values)) != len(values):
            raise GenesisError(f"two member files have the same {kind}")
    validators = tuple(ValidatorEntry(name=m.name, role=m.role, public_key=bytes.fromhex(m.public_key),
                                      address=m.address) for m in ordered)
    entries = []
    for a in accounts:
        if a.key_file is not None:
            raise GenesisError(f"account {a.name}: give its public key (64 hex), not its private key file")
        entries.append(AccountEntry(name=a.name, address=crypto.address(a.public_key), public_key=a.public_key,
                                    role=a.role, zone=zone, balance_u=a.balance_u))
    grid = [e.address for e in entries if e.role == "grid"]
    if not grid:
        raise GenesisError("the genesis needs an account with role grid (the grid operator): --account NAME:grid:...")
    genesis = Genesis(
        chain_id=chain_id, genesis_time_ms=genesis_time_ms, grid_operator=grid[0], validators=validators,
        accounts=tuple(entries),
        market=default_market_params(slot_ms=slot_ms, gate_lead_ms=min(10_000, slot_ms // 2),
                                     meter_window_ms=max(slot_ms, 2_000)),
        consensus=ConsensusParams(round_timeout_ms=round_timeout_ms),
    )
    validate_genesis(genesis)
    return genesis


def genesis_hash(data: bytes) -> str:
    """The ceremony's hash of a genesis file: SHA-256 of its bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def write_genesis(path: Path, genesis: Genesis) -> str:
    data = dump_genesis(genesis)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
    return genesis_hash(data)


def verify_genesis(path: Path, expect: str) -> str:
    """Check that ``path`` is a valid genesis with hash ``expect``; return its hash."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GenesisError(f"cannot read {path}: {exc.strerror}") from exc
    load_genesis(Path(path))
    actual = genesis_hash(data)
    if actual != expect.strip().lower():
        raise GenesisError(f"genesis hash mismatch: {path} has {actual}, expected {expect}")
    return actual


def configure_home(
    home: Path, members: list[MemberFile], *, listen_host: str = "0.0.0.0", p2p_port: int = 26656,
    api_port: int = 8080, metrics_port: int = 9100, new_chain: bool = False,
) -> NodeConfig:
    """Write ``home/node.toml`` for the validator whose key is ``home/validator_key.json``.

    TLS (a self-signed certificate bound to the key) is on when this member's own p2p URL
    is ``wss://``; ``new_chain`` gives an absent database fresh safety data (a node of a
    new chain may sign at once; never use it for a node whose data was lost)."""
    home = Path(home)
    key = keys.load_key_file(home / KEY_FILE)
    genesis = load_genesis(home / GENESIS_FILE)
    by_key = {m.public_key: m for m in members}
    index = [i for i, v in enumerate(genesis.validators) if v.public_key == key.public_key]
    if not index:
        raise GenesisError(f"{KEY_FILE} is not the key of any validator in {GENESIS_FILE}")
    me = index[0]
    peers = []
    for i, v in enumerate(genesis.validators):
        member = by_key.get(v.public_key.hex())
        if member is None:
            raise GenesisError(f"no member file for validator {v.name} ({v.public_key.hex()[:16]}…)")
        if i != me:
            peers.append(PeerConfig(node_id=i, name=v.name, url=member.p2p_url))
    own = by_key[key.public_key.hex()]
    tls_cert = tls_key = ""
    if own.p2p_url.startswith("wss://"):
        tls.ensure_self_signed(home, name=own.name, hosts=[check_p2p_url(own.p2p_url)])
        tls_cert, tls_key = tls.CERT_FILE, tls.KEY_FILE
    config = NodeConfig(name=own.name, role=own.role, node_id=me, listen_host=listen_host, p2p_port=p2p_port,
                        api_port=api_port, metrics_port=metrics_port, peers=tuple(peers),
                        tls_cert=tls_cert, tls_key=tls_key)
    (home / CONFIG_FILE).write_text(dump_config(config))
    if new_chain:
        init_new_chain_data(home / config.data_dir)
    return config


def init_new_chain_data(data: Path) -> bool:
    """Give an absent database fresh safety data (a validator of a NEW chain, which may sign
    at once); an existing database is left alone. True iff it made one."""
    if (Path(data) / DB_FILE).exists():
        return False
    Storage.initialize_fresh(Path(data))
    return True
