"""The one place that turns objects into canonical bytes and back.

Everything that is hashed or signed in GridChain (consensus messages, blocks,
transactions, receipts) is a ``msgspec.Struct`` encoded as MessagePack with a
deterministic map order. Struct fields are encoded in definition order, so the same
value always yields the same bytes; ``decode_canonical`` additionally rejects
input that decodes fine but is not the canonical encoding of its value, so a
signature over bytes is a signature over exactly one value.

Decoding is validated: wrong types, unknown fields, floats where integers are
expected and trailing garbage all raise ``CodecError`` and produce nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

DIGEST_SIZE = 32

_ENCODER = msgspec.msgpack.Encoder(order="deterministic")
_DECODERS: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


class CodecError(ValueError):
    """Bytes that are not a valid (canonical) encoding of the expected type."""

    code = "malformed"


def encode(obj: Any) -> bytes:
    """Canonical MessagePack bytes of ``obj``."""
    return _ENCODER.encode(obj)


def _decoder(type_: Any) -> msgspec.msgpack.Decoder[Any]:
    decoder = _DECODERS.get(type_)
    if decoder is None:
        decoder = _DECODERS[type_] = msgspec.msgpack.Decoder(type_)
    return decoder


def decode(data: bytes, type_: type[T]) -> T:
    """Decode and validate ``data`` as ``type_``; raise ``CodecError`` on any defect."""
    try:
        return _decoder(type_).decode(data)  # type: ignore[no-any-return]
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        # msgspec reports invalid UTF-8 inside a str field as UnicodeDecodeError.
        raise CodecError(f"cannot decode {getattr(type_, '__name__', type_)}: {exc}") from exc


def decode_canonical(data: bytes, type_: type[T]) -> T:
    """Like ``decode``, and also require ``data`` to be the canonical encoding."""
    value = decode(data, type_)
    if encode(value) != data:
        raise CodecError(f"non-canonical encoding of {getattr(type_, '__name__', type_)}")
    return value


def digest(data: bytes) -> bytes:
    """SHA-256 of ``data``: the digest used for every id and Merkle node."""
    return hashlib.sha256(data).digest()


def digest_of(obj: Any) -> bytes:
    """Digest of the canonical encoding of ``obj``."""
    return hashlib.sha256(_ENCODER.encode(obj)).digest()


def to_builtins(obj: Any) -> Any:
    """Plain Python values (dicts, lists, ints, str; bytes as hex) for JSON output."""
    return _hexify(msgspec.to_builtins(obj, builtin_types=(bytes,), order="deterministic"))


def _hexify(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _hexify(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_hexify(v) for v in value]
    return value
