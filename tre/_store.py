"""The TRE's persistent state: one SQLite database, one writer, reached from trio.

SQLite from the standard library in WAL mode with ``synchronous=FULL``: a transaction that
returned is on disk, and a crash (even ``kill -9`` in the middle of a write) leaves either
the old state or the new one. Every write transaction also bumps a generation number kept
both in the database and in the replay-protected counter (:mod:`._counter`), so an older
copy of the database put back is refused at open (:class:`RollbackDetected`).

All access goes through one connection and one worker thread at a time
(:class:`AsyncStore`, a ``trio.to_thread`` call under a limiter of one), so the event loop
never blocks on disk and there is exactly one writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import trio

from ._counter import MonotonicCounter
from ._errors import RollbackDetected, StorageError

__all__ = ["AUDIT_SCHEMA", "SCHEMA_VERSION", "USERS_SCHEMA", "AsyncStore", "Store"]

T = TypeVar("T")

#: "TRE1": marks a database as ours (PRAGMA application_id), so a foreign file is refused.
APPLICATION_ID = 0x54524531
SCHEMA_VERSION = 1

#: The audit log's tables (tre/_audit.py, tre/_audit_tables.py). Also created by the log
#: itself on a database made before they existed.
AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_entries (
    seq INTEGER PRIMARY KEY,       -- 0, 1, 2, ...: the leaf index in the Merkle tree
    time REAL NOT NULL,
    domain TEXT NOT NULL,          -- a domain id, or "tre" for TRE-wide entries
    kind TEXT NOT NULL,
    nonce BLOB NOT NULL,
    body BLOB NOT NULL,            -- AES-256-GCM under the domain's audit key
    mac BLOB NOT NULL,             -- forward-secure MAC chain
    leaf BLOB NOT NULL             -- RFC 9162 leaf hash of every field above
) STRICT;
CREATE TABLE IF NOT EXISTS audit_nodes (
    level INTEGER NOT NULL,        -- a complete subtree of 2**level leaves (level >= 1)
    idx INTEGER NOT NULL,          -- starting at leaf idx * 2**level
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size INTEGER PRIMARY KEY,      -- signed by the DeviceID key after its entries committed
    root BLOB NOT NULL,
    time REAL NOT NULL,
    bootcount INTEGER NOT NULL,
    signature BLOB NOT NULL
) STRICT;
"""

#: Host users (tre/_users.py), which also creates it on a database made before it existed.
USERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL,          -- AES-256-GCM: role, grants, verifier; AAD: the name
    failures INTEGER NOT NULL,     -- failed logins since the last success or passwd
    last_failure REAL NOT NULL,
    created REAL NOT NULL
) STRICT;
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value ANY
) STRICT;
CREATE TABLE IF NOT EXISTS domains (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,          -- "plugin:NAME" or "path:/abs/folder"
    owner TEXT NOT NULL,
    owner_key BLOB NOT NULL,       -- raw Ed25519 public key, or empty when unsigned
    svn INTEGER NOT NULL,
    measurement BLOB NOT NULL,     -- at install
    state TEXT NOT NULL,
    installed REAL NOT NULL,
    owner_keys BLOB NOT NULL DEFAULT x'',      -- the owner role: sorted raw keys, concatenated
    owner_threshold INTEGER NOT NULL DEFAULT 0,
    counter INTEGER NOT NULL DEFAULT 0,        -- release counter of the installed package
    package BLOB,                  -- the installed package's envelope (NULL: from the factory)
    epoch BLOB NOT NULL DEFAULT x''  -- random; replaced on remove/transfer (crypto-erase)
) STRICT;
CREATE TABLE IF NOT EXISTS keys (
    domain TEXT NOT NULL,
    label TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    policy TEXT NOT NULL,
    svn INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL,          -- AEAD(secret); AAD: domain, label, version, kind, policy, svn
    public BLOB NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (domain, label)
) STRICT;
CREATE TABLE IF NOT EXISTS key_digests (
    domain TEXT NOT NULL,          -- the authenticated index of key rows (tre/_keyindex.py)
    label TEXT NOT NULL,
    version INTEGER NOT NULL,      -- the label's last version: kept when the key is deleted,
    digest BLOB,                   -- (digest NULL) so a re-created key never reuses the
    PRIMARY KEY (domain, label)    -- associated data of a deleted one
) STRICT;
CREATE TABLE IF NOT EXISTS integrity_checks (
    kind TEXT PRIMARY KEY,         -- boot, scheduled, dormancy, pre-operation
    time REAL NOT NULL,
    result TEXT NOT NULL,          -- ok or mismatch
    detail TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    domain TEXT NOT NULL,
    detail TEXT NOT NULL
) STRICT;
"""
_SCHEMA += AUDIT_SCHEMA
_SCHEMA += USERS_SCHEMA


def _inspect(path: Path) -> None:
    """Refuse a file that is not a healthy TRE database, without changing it."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path} cannot be opened as a TRE database: {exc}") from None
    try:
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        if app_id != APPLICATION_ID:
            raise StorageError(f"{path} is not a TRE database")
        (check,) = conn.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            raise StorageError(f"{path} is corrupt ({check})")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            raise StorageError(f"{path} has an unknown schema version")
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path} cannot be opened as a TRE database: {exc}") from None
    finally:
        conn.close()


def _connect(path: Path | None) -> sqlite3.Connection:
    target = ":memory:" if path is None else str(path)
    conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA secure_delete=ON")  # deleted keys are overwritten, not just unlinked
    return conn


class CommitHook(Protocol):
    """Told about every write transaction (the key index, tre/_keyindex.py, is one)."""

    def seal(self, conn: sqlite3.Connection, generation: int) -> None:
        """Inside the transaction, after the generation moved."""

    def abandon(self) -> None:
        """The transaction rolled back."""


class Store:
    """Synchronous access; use it from one thread at a time (see :class:`AsyncStore`)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        counter: MonotonicCounter | None,
        hook: CommitHook | None = None,
    ) -> None:
        self._conn = conn
        self._counter = counter
        self._hook = hook

    def __repr__(self) -> str:
        return f"Store(counter={self._counter!r})"

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls, path: Path | None, counter: MonotonicCounter | None, hook: CommitHook | None = None
    ) -> Store:
        """A new database (refuses an existing file). The counter must already exist at 0."""
        if path is not None and path.exists():
            raise StorageError(f"{path} already exists")
        conn = _connect(path)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.executescript(_SCHEMA)
        store = cls(conn, counter, hook)
        store.write(
            lambda c: c.execute(
                "INSERT INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
            )
        )
        return store

    @classmethod
    def open(
        cls, path: Path, counter: MonotonicCounter | None, hook: CommitHook | None = None
    ) -> Store:
        """Open an existing database, refusing a foreign, corrupt or rolled-back one. The
        file is looked at read-only first, so a database that is refused is left as it was."""
        if not path.is_file():
            raise StorageError(f"{path} does not exist")
        _inspect(path)
        conn = _connect(path)
        store = cls(conn, counter, hook)
        try:
            store._check_rollback()
        except BaseException:
            conn.close()
            raise
        return store

    def _check_rollback(self) -> None:
        if self._counter is None:
            return
        generation = self.generation()
        counter = self._counter.read()
        if generation < counter:
            raise RollbackDetected(
                f"the database is at generation {generation} but the replay-protected "
                f"counter is at {counter}: an older copy of the database was put back"
            )
        if generation > counter:  # a crash between a commit and the counter write
            self._counter.advance(generation)

    def close(self) -> None:
        self._conn.close()
        if self._counter is not None:
            self._counter.close()

    # --- access ----------------------------------------------------------------------------

    def generation(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return 0 if row is None else int(row[0])

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._conn)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"reading the TRE database failed: {exc}") from None

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one transaction that also bumps the generation; durable on return."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                (generation,) = conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('generation', 1) "
                    "ON CONFLICT(key) DO UPDATE SET value = value + 1 RETURNING value"
                ).fetchone()
                if self._hook is not None:
                    self._hook.seal(conn, int(generation))
            except BaseException:
                conn.execute("ROLLBACK")
                if self._hook is not None:
                    self._hook.abandon()
                raise
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"writing the TRE database failed: {exc}") from None
        if self._counter is not None:
            self._counter.advance(int(generation))
        return result


class AsyncStore:
    """:class:`Store` from trio: each operation runs in a worker thread, one at a time.

    A database in memory (an ephemeral device) never waits for a disk, so its operations
    run inline after a checkpoint instead: no thread hop, and trio's MockClock (which
    would jump ahead while a thread works) stays exact in tests.
    """

    def __init__(self, store: Store, *, inline: bool = False) -> None:
        self.sync = store
        self._limiter = trio.CapacityLimiter(1)
        self._inline = inline

    def __repr__(self) -> str:
        return f"AsyncStore({self.sync!r})"

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._inline:
            await trio.lowlevel.checkpoint()
            return fn(*args)
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.call(self.sync.read, fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.call(self.sync.write, fn)
