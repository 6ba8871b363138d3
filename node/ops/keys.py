"""Validator and account key files.

Key *generation* needs randomness, so it lives here in the runtime, never in
``consensus/`` (which only turns a seed into a ``crypto.Signer``).

Format: a small JSON object written with
mode 0600 and an atomic rename::

    {"type": "ed25519", "address": "<40 hex>", "public_key": "<64 hex>", "seed": "<64 hex>"}

The raw 32-byte seed is what libsodium needs; PEM/PKCS8 would only add a second
encoding of the same 32 bytes. ``load_key_file`` checks that the stored public
key and address match the seed, so a corrupted or hand-edited file fails loudly.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import orjson

from consensus import crypto

KEY_TYPE = "ed25519"


class KeyFileError(ValueError):
    """A key file that is missing, unreadable or inconsistent."""

    code = "bad_key_file"


@dataclass(frozen=True, slots=True)
class KeyFile:
    """A loaded key: the signer and its public identity."""

    signer: crypto.Signer
    public_key: bytes
    address: str


def new_signer() -> crypto.Signer:
    """A fresh Ed25519 key from the OS CSPRNG."""
    return crypto.Signer(secrets.token_bytes(crypto.SEED_SIZE))


def key_document(signer: crypto.Signer) -> dict[str, str]:
    return {
        "type": KEY_TYPE,
        "address": crypto.address(signer.public_key),
        "public_key": signer.public_key.hex(),
        "seed": signer.seed.hex(),
    }


def write_key_file(path: Path, signer: crypto.Signer, *, overwrite: bool = False) -> None:
    """Write ``signer`` to ``path`` with mode 0600 (tmp file + fsync + rename)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise KeyFileError(f"{path} exists; refusing to overwrite a key (use --force)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, orjson.dumps(key_document(signer), option=orjson.OPT_INDENT_2) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_key_file(path: Path | str) -> KeyFile:
    """Load and check a key file; raise ``KeyFileError`` with a clear message."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    try:
        doc = orjson.loads(raw)
        if not isinstance(doc, dict) or doc.get("type") != KEY_TYPE:
            raise ValueError("not an ed25519 key document")
        signer = crypto.Signer(bytes.fromhex(doc["seed"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a GridChain key file: {exc}") from exc
    if doc.get("public_key") != signer.public_key.hex():
        raise KeyFileError(f"{path}: public_key does not match the seed")
    if doc.get("address") != crypto.address(signer.public_key):
        raise KeyFileError(f"{path}: address does not match the key")
    return KeyFile(signer=signer, public_key=signer.public_key, address=crypto.address(signer.public_key))


def load_signer(path: Path | str) -> crypto.Signer:
    return load_key_file(path).signer


def is_private(path: Path) -> bool:
    """True iff group and others have no access to ``path``."""
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
