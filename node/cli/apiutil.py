"""Helpers shared by the API-side commands (``tx``, ``query``, ``verify-proof``):
argument types, slot resolution, JSON output and error reporting.

Not a command itself (it is not listed in ``COMMAND_MODULES``).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

DEFAULT_NODE = "http://127.0.0.1:7200"
"""API of node 0 of a default local devnet (base port 7100 + 100)."""
SLOT_MARGIN_MS = 1_500
"""``--slot next`` picks a slot whose gate closes at least this long from now (time to commit)."""


class UsageError(ValueError):
    code = "bad_argument"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def add_node_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", default=DEFAULT_NODE, help=f"node API URL (default {DEFAULT_NODE})")


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1 or len(value) > 19:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def uint_arg(value: str) -> int:
    if not value.isdigit() or len(value) > 19:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value!r}")
    return int(value)


def address_arg(value: str) -> str:
    if len(value) != 40 or any(c not in "0123456789abcdef" for c in value):
        raise argparse.ArgumentTypeError("an address is 40 lowercase hex characters")
    return value


def hash_arg(value: str) -> str:
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise argparse.ArgumentTypeError("a hash/id is 64 lowercase hex characters")
    return value


def resolve_slot(text: str, market: dict[str, Any], *, at_ms: int | None = None) -> int:
    """A slot number from ``N``, ``next``, ``next+K``, ``current`` or ``previous``.

    ``next`` is the first slot whose gate closes at least ``SLOT_MARGIN_MS`` from
    now (orders for it will still be accepted), ``previous`` the slot that ended
    most recently (readings for it are accepted).
    """
    if text.isdigit():
        return int(text)
    now = now_ms() if at_ms is None else at_ms
    t0, slot_ms, lead_ms = market["genesis_time_ms"], market["slot_ms"], market["gate_lead_ms"]
    current = max(0, (now - t0) // slot_ms)
    if text == "current":
        return int(current)
    if text == "previous":
        if current < 1:
            raise UsageError("no slot has ended yet")
        return int(current - 1)
    if text == "next" or text.startswith("next+"):
        extra = text[5:] if text != "next" else "0"
        if not extra.isdigit():
            raise UsageError(f"bad slot {text!r}: use N, next, next+K, current or previous")
        first = max(0, (now + SLOT_MARGIN_MS + lead_ms - t0) // slot_ms + 1)
        return int(first + int(extra))
    raise UsageError(f"bad slot {text!r}: use N, next, next+K, current or previous")


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def fail(code: str, message: str, *, status: int) -> int:
    """Report an error as JSON on stderr and return the exit status."""
    sys.stderr.write(orjson.dumps({"error": {"code": code, "message": message}}).decode() + "\n")
    return status
