"""Durable node storage: one SQLite database in WAL mode, one writer thread.

Theory of operation
-------------------
Everything a node must not forget lives in ``<data_dir>/chain.sqlite``:

* ``meta``      — small named values: the consensus ``SafetyData`` and the
                  QC that committed the latest block;
* ``blocks``    — committed blocks by height (canonical bytes), with the state
                  root and receipts root their execution produced;
* ``txs``       — tx hash -> (height, index, result code) of the inclusion that counted
                  (used up the nonce), else of the first inclusion;
* ``receipts``  — the encoded receipt list of each height (for proofs);
* ``snapshots`` — the encoded contracts state every K blocks and at every
                  checkpoint (``contracts.state.CHECKPOINT_EVERY``; the latest two
                  of each are kept); a restart loads the newest and replays the
                  blocks after it; state sync serves the checkpoints;
* ``pending_blocks`` — proposals seen above the committed height, and ``meta.tip``
                  (high QC and TC, written with the safety data): together the
                  certified tip, so a whole network restarting at once resumes
                  above the rounds it already voted in;
* ``commit_qcs`` — for the last block of every commit, the QC that committed
                  it (a certified child one round later): peers that catch up
                  verify a run of committed blocks against it;
* ``journal``   — transactions accepted (202) but not yet committed; they are
                  removed in the same SQLite transaction that stores the block
                  that commits them, so a kill -9 never loses an accepted tx.

All writes go through one dedicated thread (``_writer``), so the event loop never
blocks on disk and SQLite never sees two writers. The safety data and the journal are
written with ``PRAGMA synchronous=FULL`` (the WAL is fsynced before the call
returns): a vote may leave the process only after the safety data is on disk, and
a 202 only after the transaction is (group commit keeps that cheap: measured no
throughput change). Committed blocks use ``synchronous=NORMAL``, which in WAL mode
survives a process crash (kill -9) and loses at most the last blocks on power
failure — those are refetched from peers.

Reads come from a second connection owned by the caller's thread (the event
loop); WAL readers never wait for the writer, and every read is a point lookup.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Container, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from consensus import codec
from consensus.types import Block, QuorumCert, SafetyData
from contracts.state import CHECKPOINT_EVERY

DB_FILE = "chain.sqlite"
SNAPSHOTS_KEPT = 2
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    block_id BLOB NOT NULL UNIQUE,
    round INTEGER NOT NULL,
    data BLOB NOT NULL,
    state_root BLOB NOT NULL,
    receipts_root BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS txs (
    hash BLOB PRIMARY KEY,
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    code TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receipts (height INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    height INTEGER PRIMARY KEY, state BLOB NOT NULL, state_root BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_blocks (
    block_id BLOB PRIMARY KEY, height INTEGER NOT NULL, data BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commit_qcs (height INTEGER PRIMARY KEY, qc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    hash BLOB PRIMARY KEY, raw BLOB NOT NULL, seq INTEGER NOT NULL
) WITHOUT ROWID;
"""


class StorageError(RuntimeError):
    """The database is unusable (corrupt, wrong chain, out of space)."""

    code = "storage"


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """One executed block as it is stored."""

    block: Block
    block_bytes: bytes
    """``codec.encode(block)``, computed once."""
    block_id: bytes
    state_root: bytes
    receipts_root: bytes
    receipts_bytes: bytes
    """The encoded receipt list (opaque to storage)."""
    tx_results: Sequence[tuple[bytes, str, bool]]
    """(tx hash, result code, counted) in block order; "ok" for success. ``counted``: the
    inclusion used up the tx's nonce (``Receipt.nonce_consumed``)."""


@dataclass(frozen=True, slots=True)
class TxLocation:
    height: int
    index: int
    code: str


@dataclass(frozen=True, slots=True)
class StoredBlock:
    height: int
    block_id: bytes
    round: int
    block_bytes: bytes
    state_root: bytes
    receipts_root: bytes


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class Storage:
    """The node's database. Create with ``Storage.open(data_dir)``; ``close()`` at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storage-writer")
        self._wconn = _connect(path)
        self._wconn.executescript(_SCHEMA)
        self._rconn = _connect(path)
        self._rlock = threading.Lock()
        self._journal_seq = self._read_one("SELECT COALESCE(MAX(seq), 0) FROM journal", ()) or 0
        self._closed = False

    @classmethod
    def open(cls, data_dir: Path) -> Storage:
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            return cls(data_dir / DB_FILE)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open {data_dir / DB_FILE}: {exc}") from exc

    @classmethod
    def initialize_fresh(cls, data_dir: Path, epoch: int = 0) -> None:
        """Create the database of a brand-new validator with empty safety data.

        ``gridchain genesis`` calls this for every node it creates. A node that
        starts with *no* safety data at all is taken to be a wiped one and its
        double-sign guard stays armed until it has caught up with the network;
        a node of a new network starts here instead and may sign at once.
        """
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        conn = _connect(data_dir / DB_FILE)
        try:
            conn.executescript(_SCHEMA)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('safety', ?)",
                         (codec.encode(SafetyData(epoch=epoch)),))
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    # ------------------------------------------------------------------ plumbing
    async def _write(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _tx(self, statements: Iterable[tuple[str, Any]], full_sync: bool = False) -> None:
        conn = self._wconn
        if full_sync:
            conn.execute("PRAGMA synchronous=FULL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    if isinstance(params, list):
                        conn.executemany(sql, params)
                    else:
                        conn.execute(sql, params)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            if full_sync:
                conn.execute("PRAGMA synchronous=NORMAL")

    def _read_one(self, sql: str, params: Any) -> Any:
        with self._rlock:
            row = self._rconn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _read_row(self, sql: str, params: Any) -> Any:
        with self._rlock:
            return self._rconn.execute(sql, params).fetchone()

    def _read_all(self, sql: str, params: Any) -> list[Any]:
        with self._rlock:
            return self._rconn.execute(sql, params).fetchall()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._write(self._wconn.close)
        self._executor.shutdown(wait=True)
        self._rconn.close()

    # ------------------------------------------------------------------ safety
    async def save_safety(self, data: SafetyData, *, tip: bytes | None = None) -> None:
        """Durably store the safety data (and the encoded certified tip) — fsync — before returning."""
        statements: list[tuple[str, Any]] = [
            ("INSERT OR REPLACE INTO meta(key, value) VALUES ('safety', ?)", (codec.encode(data),))
        ]
        if tip is not None:
            statements.append(("INSERT OR REPLACE INTO meta(key, value) VALUES ('tip', ?)", (tip,)))
        await self._write(self._tx, statements, True)

    async def save_pending_block(self, block: Block, block_id: bytes) -> None:
        """Remember an uncommitted proposal (encoded in the writer thread)."""

        def write() -> None:
            self._tx([("INSERT OR IGNORE INTO pending_blocks VALUES (?, ?, ?)",
                       (block_id, block.height, codec.encode(block)))])

        await self._write(write)

    def load_pending_blocks(self, above_height: int) -> list[Block]:
        rows = self._read_all("SELECT data FROM pending_blocks WHERE height > ? ORDER BY height", (above_height,))
        return [codec.decode(row[0], Block) for row in rows]

    def load_safety(self) -> SafetyData | None:
        blob = self._read_one("SELECT value FROM meta WHERE key = 'safety'", ())
        return None if blob is None else codec.decode(blob, SafetyData)

    # ------------------------------------------------------------------ journal
    async def journal_add(self, entries: Sequence[tuple[bytes, bytes]]) -> None:
        """Durably (fsync) remember accepted transactions ``(hash, raw)`` in one SQLite transaction."""
        if not entries:
            return
        start = self._journal_seq
        self._journal_seq += len(entries)
        rows = [(h, raw, start + i + 1) for i, (h, raw) in enumerate(entries)]
        await self._write(
            self._tx, [("INSERT OR IGNORE INTO journal(hash, raw, seq) VALUES (?, ?, ?)", rows)], True
        )

    async def journal_remove(self, hashes: Sequence[bytes]) -> None:
        """Forget accepted transactions that can never commit (expired, rejected on restart)."""
        if hashes:
            await self._write(self._tx, [("DELETE FROM journal WHERE hash = ?", [(h,) for h in hashes])])

    def load_journal(self) -> list[bytes]:
        """Accepted, not yet committed transactions in acceptance order."""
        return [row[0] for row in self._read_all("SELECT raw FROM journal ORDER BY seq", ())]

    def journal_size(self) -> int:
        return int(self._read_one("SELECT COUNT(*) FROM journal", ()) or 0)

    # ------------------------------------------------------------------ blocks
    async def store_committed(
        self,
        records: Sequence[BlockRecord],
        *,
        commit_qc: QuorumCert | None,
        snapshot: tuple[int, bytes, bytes] | None = None,
        extra_meta: Sequence[tuple[str, bytes]] = (),
        journaled: Container[bytes] | None = None,
    ) -> None:
        """Store executed blocks, their tx index and receipts, drop their txs from the
        journal, record ``commit_qc`` and an optional ``(height, state, root)`` snapshot —
        all in one SQLite transaction. ``journaled`` (if given) holds every hash that may be
        in the journal, so the others skip the delete."""
        if not records and snapshot is None:
            return
        block_rows = []
        receipt_rows = []
        counted_rows: list[tuple[bytes, int, int, str]] = []
        uncounted_rows: list[tuple[bytes, int, int, str]] = []
        journal_rows = []
        for rec in records:
            height = rec.block.height
            block_rows.append(
                (height, rec.block_id, rec.block.round, rec.block_bytes, rec.state_root, rec.receipts_root)
            )
            receipt_rows.append((height, rec.receipts_bytes))
            for index, (tx_hash, code, counted) in enumerate(rec.tx_results):
                (counted_rows if counted else uncounted_rows).append((tx_hash, height, index, code))
                if journaled is None or tx_hash in journaled:
                    journal_rows.append((tx_hash,))
        statements: list[tuple[str, Any]] = [
            ("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?, ?)", block_rows),
            ("INSERT OR REPLACE INTO receipts VALUES (?, ?)", receipt_rows),
            # The index records the inclusion that counted (used up the nonce; at most one per
            # hash, the latest for a registration re-sent after its request was dropped); a hash
            # never counted keeps its first inclusion. So counted rows replace, others only fill.
            ("INSERT OR IGNORE INTO txs VALUES (?, ?, ?, ?)", uncounted_rows),
            ("INSERT OR REPLACE INTO txs VALUES (?, ?, ?, ?)", counted_rows),
            ("DELETE FROM journal WHERE hash = ?", journal_rows),
        ]
        if records:
            statements.append(("DELETE FROM pending_blocks WHERE height <= ?", (records[-1].block.height,)))
        if commit_qc is not None and records:
            qc_bytes = codec.encode(commit_qc)
            statements.append(("INSERT OR REPLACE INTO meta(key, value) VALUES ('commit_qc', ?)", (qc_bytes,)))
            statements.append(
                ("INSERT OR REPLACE INTO commit_qcs VALUES (?, ?)", (records[-1].block.height, qc_bytes))
            )
        for key, value in extra_meta:
            statements.append(("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value)))
        if snapshot is not None:
            height, state, root = snapshot
            statements.append(("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)", (height, state, root)))
            statements.append(
                (
                    "DELETE FROM snapshots WHERE height NOT IN "
                    "(SELECT height FROM snapshots ORDER BY height DESC LIMIT ?) AND height NOT IN "
                    "(SELECT height FROM snapshots WHERE height % ? = 0 ORDER BY height DESC LIMIT ?)",
                    (SNAPSHOTS_KEPT, CHECKPOINT_EVERY, SNAPSHOTS_KEPT),
                )
            )
        await self._write(self._tx, statements)

    def load_meta(self, key: str) -> bytes | None:
        return self._read_one("SELECT value FROM meta WHERE key = ?", (key,))  # type: ignore[no-any-return]

    def latest_height(self) -> int:
        return int(self._read_one("SELECT COALESCE(MAX(height), 0) FROM blocks", ()) or 0)

    def load_commit_qc(self) -> QuorumCert | None:
        blob = self._read_one("SELECT value FROM meta WHERE key = 'commit_qc'", ())
        return None if blob is None else codec.decode(blob, QuorumCert)

    def commit_qc_at_or_below(self, height: int, floor: int) -> tuple[int, QuorumCert] | None:
        """The highest ``(h, qc)`` with ``floor <= h <= height`` where ``qc`` commits block ``h``."""
        row = self._read_row(
            "SELECT height, qc FROM commit_qcs WHERE height BETWEEN ? AND ? ORDER BY height DESC LIMIT 1",
            (floor, height),
        )
        return None if row is None else (int(row[0]), codec.decode(row[1], QuorumCert))

    def block(self, height: int) -> StoredBlock | None:
        row = self._read_row(
            "SELECT height, block_id, round, data, state_root, receipts_root FROM blocks WHERE height = ?",
            (height,),
        )
        return None if row is None else StoredBlock(*row)

    def height_of(self, block_id: bytes) -> int | None:
        value = self._read_one("SELECT height FROM blocks WHERE block_id = ?", (block_id,))
        return None if value is None else int(value)

    def blocks_range(self, first: int, last: int) -> list[StoredBlock]:
        """Stored blocks with ``first <= height <= last``, ascending."""
        rows = self._read_all(
            "SELECT height, block_id, round, data, state_root, receipts_root FROM blocks "
            "WHERE height BETWEEN ? AND ? ORDER BY height",
            (first, last),
        )
        return [StoredBlock(*row) for row in rows]

    def block_sizes(self, first: int, last: int) -> list[tuple[int, int]]:
        """``(height, encoded size)`` of stored blocks in ``first..last``, ascending."""
        rows = self._read_all("SELECT height, length(data) FROM blocks WHERE height BETWEEN ? AND ? ORDER BY height",
                              (first, last))
        return [(int(h), int(n)) for h, n in rows]

    def commit_qc_at_or_above(self, height: int) -> tuple[int, QuorumCert] | None:
        """The lowest ``(h, qc)`` with ``h >= height`` where ``qc`` commits block ``h``."""
        row = self._read_row("SELECT height, qc FROM commit_qcs WHERE height >= ? ORDER BY height LIMIT 1", (height,))
        return None if row is None else (int(row[0]), codec.decode(row[1], QuorumCert))

    def receipts(self, height: int) -> bytes | None:
        return self._read_one("SELECT data FROM receipts WHERE height = ?", (height,))  # type: ignore[no-any-return]

    def tx_location(self, tx_hash: bytes) -> TxLocation | None:
        row = self._read_row("SELECT height, idx, code FROM txs WHERE hash = ?", (tx_hash,))
        return None if row is None else TxLocation(*row)

    def tx_locations(self, hashes: Sequence[bytes]) -> dict[bytes, TxLocation]:
        """Locations of the already committed ones among ``hashes``."""
        out: dict[bytes, TxLocation] = {}
        for i in range(0, len(hashes), 500):
            chunk = list(hashes[i : i + 500])
            marks = ",".join("?" * len(chunk))
            for h, height, idx, code in self._read_all(
                f"SELECT hash, height, idx, code FROM txs WHERE hash IN ({marks})", chunk
            ):
                out[bytes(h)] = TxLocation(height, idx, code)
        return out

    def latest_snapshot(self) -> tuple[int, bytes, bytes] | None:
        """``(height, encoded state, state root)`` of the newest snapshot."""
        row = self._read_row(
            "SELECT height, state, state_root FROM snapshots ORDER BY height DESC LIMIT 1", ()
        )
        return None if row is None else (int(row[0]), bytes(row[1]), bytes(row[2]))

    def checkpoints(self) -> list[tuple[int, bytes, int]]:
        """``(height, state root, size)`` of the stored checkpoint snapshots, newest first."""
        rows = self._read_all("SELECT height, state_root, length(state) FROM snapshots WHERE height % ? = 0 "
                              "ORDER BY height DESC", (CHECKPOINT_EVERY,))
        return [(int(h), bytes(r), int(n)) for h, r, n in rows]

    def snapshot_slice(self, height: int, offset: int, length: int) -> bytes | None:
        """``length`` bytes of the snapshot of ``height`` from ``offset`` (None: no such snapshot)."""
        blob = self._read_one("SELECT substr(state, ?, ?) FROM snapshots WHERE height = ?",
                              (offset + 1, length, height))
        return None if blob is None else bytes(blob)

    def first_height(self) -> int:
        """The lowest stored block height (1 unless the node started from a snapshot; 0: none)."""
        return int(self._read_one("SELECT COALESCE(MIN(height), 0) FROM blocks", ()) or 0)
