"""Durable store of payment-channel states held by this node (docs/CHANNELS.md): per channel
the latest state co-signed by both parties — the watchtower's evidence. (Proposals awaiting
a countersignature are not evidence; ``node.chain.channels`` keeps them in memory.)

A node acknowledges an update only once it is on disk: the SQLite database runs with
``synchronous=FULL`` (WAL mode), so a commit returns after fsync and a crash or power cut
never loses an acknowledged state — the watchtower's evidence. Every call runs on one
worker thread (``asyncio.to_thread`` would spread them over the pool; SQLite connections
want one thread), so the event loop never waits for the disk. The store takes what the
caller checked; it only keeps the newer of two states (higher seq) and its bound.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import msgspec

MAX_CHANNELS = 10_000
"""Channels one node keeps states of; further new channels are refused (``limit_reached``)."""

T = TypeVar("T")


class CoSigned(msgspec.Struct, frozen=True):
    """A channel state with both parties' signatures."""

    channel_id: str
    seq: int
    state: bytes
    """Canonical bytes of the ``contracts.transactions.ChannelState`` (what was signed)."""
    signature_a: bytes
    signature_b: bytes


class StoreFull(Exception):
    """The node keeps ``MAX_CHANNELS`` channels already."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS cosigned (
    channel_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, state BLOB NOT NULL,
    signature_a BLOB NOT NULL, signature_b BLOB NOT NULL);
"""


class ChannelStore:
    """The SQLite file of channel states; ``await ChannelStore.open(path)``."""

    def __init__(self, db: sqlite3.Connection, pool: concurrent.futures.ThreadPoolExecutor) -> None:
        self._db = db
        self._pool = pool

    @classmethod
    async def open(cls, path: Path) -> ChannelStore:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="channels-db")

        def connect() -> sqlite3.Connection:
            db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            return db

        db = await asyncio.get_running_loop().run_in_executor(pool, connect)
        return cls(db, pool)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def close(self) -> None:
        await self._run(self._db.close)
        self._pool.shutdown(wait=True)

    # --- reads ------------------------------------------------------------------------------

    async def latest(self, channel_id: str) -> CoSigned | None:
        def read() -> CoSigned | None:
            row = self._db.execute("SELECT channel_id, seq, state, signature_a, signature_b FROM cosigned "
                                   "WHERE channel_id = ?", (channel_id,)).fetchone()
            return None if row is None else CoSigned(*row)
        return await self._run(read)

    async def all_latest(self) -> list[CoSigned]:
        """Every channel's latest co-signed state (at most ``MAX_CHANNELS``)."""
        def read() -> list[CoSigned]:
            rows = self._db.execute("SELECT channel_id, seq, state, signature_a, signature_b FROM cosigned")
            return [CoSigned(*row) for row in rows]
        return await self._run(read)

    # --- writes (durable when they return) --------------------------------------------------

    async def put_cosigned(self, item: CoSigned) -> bool:
        """Keep ``item`` if it is newer than the stored state; True if it was kept. On disk
        (fsync) when this returns."""
        def write() -> bool:
            with self._db:  # one transaction: BEGIN ... COMMIT
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute("SELECT seq FROM cosigned WHERE channel_id = ?", (item.channel_id,)).fetchone()
                if row is not None and row[0] >= item.seq:
                    return False
                if row is None:
                    self._check_room()
                self._db.execute("INSERT OR REPLACE INTO cosigned VALUES (?, ?, ?, ?, ?)",
                                 (item.channel_id, item.seq, item.state, item.signature_a, item.signature_b))
                return True
        return await self._run(write)

    def _check_room(self) -> None:
        (count,) = self._db.execute("SELECT COUNT(*) FROM cosigned").fetchone()
        if count >= MAX_CHANNELS:
            raise StoreFull(f"this node keeps {MAX_CHANNELS} channels")
