"""The TRE's SQLite store and its replay-protected counter (tre/_store.py, tre/_counter.py).

Every write transaction bumps a generation kept in the database and raises the counter to
it; opening refuses a database older than the counter (an old copy put back) and
tolerates one newer (a crash between a commit and the counter write). The counter is a
48-byte ``magic || value || HMAC`` record that only goes up and refuses a forged file.

Tests on real files in threads (:class:`AsyncStore` on a path) use the real clock; only the
in-memory, inline store runs under ``autojump_clock``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import shutil
import sqlite3
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

import tre
from tre._counter import CounterTampered, MonotonicCounter
from tre._store import APPLICATION_ID, SCHEMA_VERSION, AsyncStore, Store

KEY = hashlib.sha256(b"test counter key").digest()
OTHER_KEY = hashlib.sha256(b"another device").digest()
MAGIC = b"TRECTR1\x00"


def record(value: int, key: bytes = KEY, magic: bytes = MAGIC) -> bytes:
    """A counter record, MACed as the counter does it (with ``key``)."""
    tag = hmac.new(key, magic + value.to_bytes(8, "big"), hashlib.sha256).digest()
    return struct.pack(">8sQ32s", magic, value, tag)


def new_counter(folder: Path, key: bytes = KEY) -> MonotonicCounter:
    counter = MonotonicCounter(folder / "counter.bin", key)
    counter.create()
    return counter


def new_store(folder: Path) -> tuple[Store, MonotonicCounter]:
    counter = new_counter(folder)
    return Store.create(folder / "tre.db", counter), counter


def put(key: str, value: object) -> Callable[[sqlite3.Connection], None]:
    def fn(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (key, value))

    return fn


def get(store: Store, key: str) -> object:
    row = store.read(lambda c: c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone())
    return None if row is None else row[0]


def copy_db(src: Path, dst: Path) -> None:
    """Copy a database file with its -wal and -shm (whichever exist)."""
    dst.mkdir(exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        path = src.with_name(src.name + suffix)
        if path.exists():
            shutil.copy2(path, dst / path.name)


def restore_db(src: Path, db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        target = db.with_name(db.name + suffix)
        target.unlink(missing_ok=True)
        saved = src / target.name
        if saved.exists():
            shutil.copy2(saved, target)


# --- the counter -----------------------------------------------------------------------------


def test_counter_is_created_at_zero_as_a_private_record(tmp_path: Path) -> None:
    counter = new_counter(tmp_path)
    assert counter.read() == 0
    assert counter.path.read_bytes() == record(0)
    assert len(counter.path.read_bytes()) == 48
    assert stat.S_IMODE(counter.path.stat().st_mode) == 0o600


def test_counter_create_refuses_to_overwrite(tmp_path: Path) -> None:
    counter = new_counter(tmp_path)
    counter.advance(5)
    with pytest.raises(FileExistsError):
        MonotonicCounter(counter.path, KEY).create()
    assert counter.read() == 5


def test_counter_only_goes_up(tmp_path: Path) -> None:
    counter = new_counter(tmp_path)
    counter.advance(3)
    assert counter.read() == 3
    before = counter.path.read_bytes()
    counter.advance(2)  # lower: a no-op
    counter.advance(0)
    counter.advance(3)  # equal: a no-op
    assert counter.read() == 3
    assert counter.path.read_bytes() == before
    counter.advance(4)
    counter.advance(2**64 - 1)
    assert counter.read() == 2**64 - 1
    assert counter.path.read_bytes() == record(2**64 - 1)


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param(lambda: record(7)[:-1] + bytes([record(7)[-1] ^ 1]), id="bad-mac"),
        pytest.param(lambda: record(2, key=OTHER_KEY), id="other-key"),
        pytest.param(
            lambda: MAGIC + (9).to_bytes(8, "big") + record(2)[16:], id="value-raised-mac-kept"
        ),
        pytest.param(lambda: record(2, magic=b"TRECTR2\x00"), id="wrong-magic"),
        pytest.param(lambda: bytes(48), id="zeros"),
        pytest.param(lambda: record(2)[:47], id="short"),
        pytest.param(lambda: record(2) + b"\x00", id="long"),
        pytest.param(lambda: b"", id="empty"),
    ],
)
def test_a_forged_counter_is_refused(tmp_path: Path, forged: Callable[[], bytes]) -> None:
    counter = new_counter(tmp_path)
    counter.advance(2)
    data = forged()
    counter.path.write_bytes(data)
    with pytest.raises(CounterTampered):
        counter.read()
    with pytest.raises(CounterTampered):  # and it is not overwritten by an advance
        counter.advance(100)
    assert counter.path.read_bytes() == data


def test_a_missing_counter_is_refused(tmp_path: Path) -> None:
    counter = MonotonicCounter(tmp_path / "counter.bin", KEY)
    with pytest.raises(CounterTampered) as caught:
        counter.read()
    assert "cannot read the counter" in str(caught.value)
    assert isinstance(caught.value, tre.StorageError)
    assert caught.value.code == "COUNTER_TAMPERED"


def test_counter_repr_shows_no_key(tmp_path: Path) -> None:
    counter = new_counter(tmp_path)
    for text in (repr(counter), str(counter)):
        assert KEY.hex() not in text and repr(KEY)[2:-1] not in text
        assert "counter.bin" in text


# --- the store ------------------------------------------------------------------------------------


def test_create_sets_up_a_durable_tre_database(tmp_path: Path) -> None:
    store, counter = new_store(tmp_path)
    pragmas = store.read(
        lambda c: [
            c.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("application_id", "journal_mode", "synchronous", "secure_delete")
        ]
    )
    assert pragmas == [APPLICATION_ID, "wal", 2, 1]  # synchronous 2 = FULL
    assert get(store, "schema") == SCHEMA_VERSION
    assert store.generation() == 1  # the schema row was the first write
    assert counter.read() == 1
    store.close()


def test_each_write_bumps_the_generation_and_the_counter(tmp_path: Path) -> None:
    store, counter = new_store(tmp_path)
    for i in range(2, 7):
        assert store.write(put(f"k{i}", i)) is None
        assert store.generation() == i
        assert counter.read() == i
    assert store.write(lambda c: "result") == "result"
    assert store.generation() == counter.read() == 7
    store.read(lambda c: c.execute("SELECT * FROM meta").fetchall())  # reads bump nothing
    assert store.generation() == counter.read() == 7
    store.close()


def test_a_failed_write_changes_nothing(tmp_path: Path) -> None:
    store, counter = new_store(tmp_path)

    def insert_then_fail(conn: sqlite3.Connection) -> None:
        put("half", 1)(conn)
        raise tre.KeyExists("refused inside the transaction")

    with pytest.raises(tre.KeyExists):  # the function's own error, unchanged
        store.write(insert_then_fail)
    assert get(store, "half") is None
    assert store.generation() == counter.read() == 1

    def bad_sql(conn: sqlite3.Connection) -> None:
        put("half", 1)(conn)
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(tre.StorageError) as caught:
        store.write(bad_sql)
    assert "writing the TRE database failed" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert get(store, "half") is None
    assert store.generation() == counter.read() == 1
    # the store is still usable afterwards
    store.write(put("after", 2))
    assert get(store, "after") == 2 and store.generation() == 2
    store.close()


def test_a_failed_read_is_a_storage_error(tmp_path: Path) -> None:
    store, _ = new_store(tmp_path)
    with pytest.raises(tre.StorageError, match="reading the TRE database failed"):
        store.read(lambda c: c.execute("SELECT * FROM no_such_table").fetchall())
    store.close()


def test_create_refuses_an_existing_file(tmp_path: Path) -> None:
    store, counter = new_store(tmp_path)
    store.close()
    with pytest.raises(tre.StorageError, match="already exists"):
        Store.create(tmp_path / "tre.db", counter)


def test_open_a_missing_database(tmp_path: Path) -> None:
    with pytest.raises(tre.StorageError, match="does not exist"):
        Store.open(tmp_path / "tre.db", None)


def test_reopen_keeps_the_generation(tmp_path: Path) -> None:
    store, counter = new_store(tmp_path)
    store.write(put("a", 1))
    store.close()
    store = Store.open(tmp_path / "tre.db", counter)
    assert store.generation() == counter.read() == 2
    assert get(store, "a") == 1
    store.write(put("b", 2))
    assert store.generation() == counter.read() == 3
    store.close()


def test_open_tolerates_a_crash_between_commit_and_counter(tmp_path: Path) -> None:
    """A commit whose counter write never happened (the process died in between) leaves
    the database one generation ahead: opening catches the counter up."""
    store, counter = new_store(tmp_path)
    store.close()
    uncounted = Store.open(tmp_path / "tre.db", None)  # commits without the counter
    uncounted.write(put("a", 1))
    uncounted.write(put("b", 2))
    uncounted.close()
    assert counter.read() == 1
    store = Store.open(tmp_path / "tre.db", counter)
    assert store.generation() == counter.read() == 3
    store.close()


@pytest.mark.parametrize("live", [False, True], ids=["at-rest", "with-wal"])
def test_open_detects_a_restored_older_copy(tmp_path: Path, live: bool) -> None:
    db = tmp_path / "tre.db"
    store, counter = new_store(tmp_path)
    store.write(put("a", 1))
    if live:  # copied while open: the last commit is still in the -wal file
        assert db.with_name("tre.db-wal").exists()
        copy_db(db, tmp_path / "old")
        store.write(put("b", 2))
        store.close()
    else:
        store.close()
        copy_db(db, tmp_path / "old")
        store = Store.open(db, counter)
        store.write(put("b", 2))
        store.close()
    copy_db(db, tmp_path / "new")
    restore_db(tmp_path / "old", db)
    with pytest.raises(tre.RollbackDetected) as caught:
        Store.open(db, counter)
    assert "generation 2" in str(caught.value) and "counter is at 3" in str(caught.value)
    assert isinstance(caught.value, tre.StorageError)
    assert counter.read() == 3  # the check did not lower the counter
    # the newest copy opens again
    restore_db(tmp_path / "new", db)
    store = Store.open(db, counter)
    assert get(store, "b") == 2
    store.close()


def test_open_refuses_another_application_database(tmp_path: Path) -> None:
    path = tmp_path / "tre.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY)")
        conn.execute("INSERT INTO meta VALUES ('schema', 1)")
        conn.commit()
    with pytest.raises(tre.StorageError, match="is not a TRE database"):
        Store.open(path, None)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, I am a text file\n" * 100, os.urandom(8192), b"SQLite format 3\x00" + bytes(84)],
    ids=["empty", "text", "random", "header-only"],
)
def test_open_refuses_a_foreign_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tre.db"
    path.write_bytes(content)
    with pytest.raises(tre.StorageError) as caught:
        Store.open(path, None)
    message = str(caught.value)
    assert str(path) in message and "TRE database" in message
    assert "Traceback" not in message and "\n" not in message
    assert caught.value.__cause__ is None


@pytest.mark.parametrize("kind", ["other-sqlite-app", "empty"])
def test_refusing_a_foreign_database_leaves_it_untouched(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "tre.db"
    if kind == "empty":
        path.write_bytes(b"")
    else:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE t (x)")
            conn.execute("INSERT INTO t VALUES (1)")
            conn.commit()
    before = path.read_bytes()
    with pytest.raises(tre.StorageError):
        Store.open(path, None)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tre.db"]


def test_open_refuses_an_unknown_schema(tmp_path: Path) -> None:
    store, counter = new_store(tmp_path)
    store.write(lambda c: c.execute("UPDATE meta SET value = 99 WHERE key = 'schema'"))
    store.close()
    with pytest.raises(tre.StorageError, match="unknown schema version"):
        Store.open(tmp_path / "tre.db", counter)


def test_open_refuses_a_tampered_counter(tmp_path: Path) -> None:
    store, counter = new_store(tmp_path)
    store.close()
    counter.path.write_bytes(record(1, key=OTHER_KEY))
    with pytest.raises(CounterTampered):
        Store.open(tmp_path / "tre.db", counter)


def test_secure_delete_overwrites_deleted_rows(tmp_path: Path) -> None:
    store, _ = new_store(tmp_path)
    marker = b"SECRET-MARKER-" + os.urandom(16).hex().encode()
    store.write(put("secret", marker))
    store.write(lambda c: c.execute("DELETE FROM meta WHERE key = 'secret'"))
    store.read(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
    store.close()
    for path in tmp_path.iterdir():
        assert marker not in path.read_bytes(), path.name


def test_store_repr_shows_no_key(tmp_path: Path) -> None:
    store, _ = new_store(tmp_path)
    for obj in (store, AsyncStore(store)):
        assert KEY.hex() not in repr(obj) and repr(KEY)[2:-1] not in repr(obj)
    store.close()


# --- from trio ----------------------------------------------------------------------------------


async def test_async_store_runs_in_one_worker_thread_at_a_time(tmp_path: Path) -> None:
    store, counter = new_store(tmp_path)
    astore = AsyncStore(store)
    threads: set[int] = set()
    active = 0
    most = 0

    def slow_insert(i: int) -> Callable[[sqlite3.Connection], int]:
        def fn(conn: sqlite3.Connection) -> int:
            nonlocal active, most
            active += 1
            most = max(most, active)
            threads.add(threading.get_ident())
            put(f"k{i}", i)(conn)
            active -= 1
            return i

        return fn

    results: list[int] = []

    async def one(i: int) -> None:
        results.append(await astore.write(slow_insert(i)))

    async with trio.open_nursery() as nursery:
        for i in range(30):
            nursery.start_soon(one, i)
    assert sorted(results) == list(range(30))
    assert most == 1
    assert threading.get_ident() not in threads
    assert store.generation() == counter.read() == 31
    count = await astore.read(lambda c: c.execute("SELECT count(*) FROM meta").fetchone()[0])
    assert count == 30 + 2  # schema + generation
    with pytest.raises(tre.KeyExists):

        def fail(conn: sqlite3.Connection) -> None:
            raise tre.KeyExists("x")

        await astore.write(fail)
    await astore.call(store.close)


async def test_an_in_memory_store_runs_inline(autojump_clock: trio.abc.Clock) -> None:
    store = Store.create(None, None)
    astore = AsyncStore(store, inline=True)
    seen: list[int] = []

    def fn(conn: sqlite3.Connection) -> int:
        seen.append(threading.get_ident())
        put("k", 1)(conn)
        return 5

    start = trio.current_time()
    assert await astore.write(fn) == 5
    assert trio.current_time() == start  # no thread, so the mock clock did not jump
    assert seen == [threading.get_ident()]
    assert store.generation() == 2
    await astore.call(store.close)
