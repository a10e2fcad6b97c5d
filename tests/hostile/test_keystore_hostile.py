"""Hostile keystore tests (issue 3, section 5): another domain's keys, and a tampered disk.

- Isolation: a domain reaches only its own keystore. The same label in two domains names
  two independent keys; one domain's list, info, sealed data, ciphertexts and tags mean
  nothing to another; keystore objects cannot be handed over through the kernel.
- Storage: one flipped bit in one key row gives a typed error for that key only; a row
  moved to another domain or label does not open; a truncated or foreign ``tre.db`` is a
  clear :class:`tre.StorageError` (also from the CLI: no traceback); an older copy of
  ``tre.db`` put back is :class:`tre.RollbackDetected`; an edited ``counter.bin`` is a
  :class:`tre.StorageError` subclass.

The domains are copies of the fixture plugin (see tests/tre/test_keystore.py). Tests on a
state folder do SQLite I/O in worker threads and so run on the real clock.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tre
from tests.tre.test_audit import audit_log
from tests.tre.test_keystore import (
    D,
    domain_keys,
    ephemeral,
    keystore_of,
    ks,
    make_plugin,
    provision_state,
)
from tre._cli import main as cli_main
from tre._counter import CounterTampered
from tre._device import COUNTER_FILE, DB_FILE, Device
from tre._keystore import Keystore

# --- isolation --------------------------------------------------------------------------------


@pytest.fixture
def two(tmp_path: Path) -> tuple[Path, Path]:
    """alpha may call beta's ``check`` (used by the hand-over test); both serve the host."""
    alpha = make_plugin(tmp_path, "alpha", calls={"beta": ["check"]})
    beta = make_plugin(tmp_path, "beta", allow=("host", "alpha"))
    return alpha, beta


async def test_the_same_label_in_two_domains_names_two_keys(two: tuple[Path, Path]) -> None:
    async with ephemeral(*two) as t:
        infos = {}
        for domain in ("alpha", "beta"):
            for label, kind in [("k", "ed25519"), ("h", "hmac"), ("e", "aead"), ("x", "x25519")]:
                infos[domain, label] = await ks(t, domain, "generate", label, kind)
        assert infos["alpha", "k"]["public"] != infos["beta", "k"]["public"]
        assert infos["alpha", "x"]["public"] != infos["beta", "x"]["public"]
        sig = await ks(t, "alpha", "sign", "k", b"m")
        assert await ks(t, "beta", "verify", "k", b"m", sig) is False
        assert await ks(t, "alpha", "verify", "k", b"m", sig) is True
        tag = await ks(t, "alpha", "mac", "h", b"m")
        assert await ks(t, "beta", "mac", "h", b"m") != tag
        assert await ks(t, "beta", "verify_mac", "h", b"m", tag) is False
        # deleting one leaves the other
        await ks(t, "beta", "delete", "k")
        assert await ks(t, "alpha", "info", "k") == infos["alpha", "k"]
        with pytest.raises(tre.NoSuchKey):
            await ks(t, "beta", "sign", "k", b"m")


async def test_a_domain_cannot_name_another_domains_keys(two: tuple[Path, Path]) -> None:
    async with ephemeral(*two) as t:
        await ks(t, "beta", "generate", "only-beta", "ed25519")
        await ks(t, "beta", "generate", "beta-mac", "hmac")
        await ks(t, "alpha", "generate", "mine", "hmac")
        assert [i["label"] for i in await ks(t, "alpha", "list")] == ["mine"]
        names = [
            "only-beta",
            "beta/only-beta",
            "beta:only-beta",
            "../beta/only-beta",
            "beta.only-beta",
            "beta",
        ]
        for name in names:
            for op, args in [
                ("info", ()),
                ("public_key", ()),
                ("sign", (b"x",)),
                ("mac", (b"x",)),
                ("delete", ()),
            ]:
                with pytest.raises(tre.KeystoreError):
                    await ks(t, "alpha", op, name, *args)
            with pytest.raises(tre.KeystoreError):
                await ks(t, "alpha", "derive", "stolen", name)
        # beta's keys are untouched, and alpha's own list still has only its key
        assert {i["label"] for i in await ks(t, "beta", "list")} == {"only-beta", "beta-mac"}
        assert [i["label"] for i in await ks(t, "alpha", "list")] == ["mine"]
        # generating "only-beta" in alpha makes alpha's own key, not beta's
        mine = await ks(t, "alpha", "generate", "only-beta", "ed25519")
        assert mine["public"] != (await ks(t, "beta", "info", "only-beta"))["public"]


def test_no_keystore_method_takes_a_domain() -> None:
    for name in dir(Keystore):
        if name.startswith("_"):
            continue
        params = inspect.signature(getattr(Keystore, name)).parameters
        assert not any("domain" in p or p in ("owner", "who", "id") for p in params), name


@pytest.mark.parametrize("policy", ["measurement", "owner"])
async def test_sealed_data_does_not_unseal_in_another_domain(
    two: tuple[Path, Path], policy: str
) -> None:
    # both copies have the same code and the same owner: only the domain id differs
    async with ephemeral(*two) as t:
        blob = await ks(t, "beta", "seal", b"beta's", policy=policy)
        with_aad = await ks(t, "beta", "seal", b"beta's", policy=policy, aad=b"a")
        with pytest.raises(tre.UnsealError):
            await ks(t, "alpha", "unseal", blob)
        with pytest.raises(tre.UnsealError):
            await ks(t, "alpha", "unseal", with_aad, aad=b"a")
        assert await ks(t, "beta", "unseal", blob) == b"beta's"


async def test_ciphertext_of_one_domain_does_not_decrypt_in_another(
    two: tuple[Path, Path],
) -> None:
    async with ephemeral(*two) as t:
        for domain in ("alpha", "beta"):
            await ks(t, domain, "generate", "box", "aead")
            await ks(t, domain, "generate", "root", "hmac")
            await ks(t, domain, "derive", "derived", "root", context=b"same context")
        for label in ("box", "derived"):
            blob = await ks(t, "alpha", "encrypt", label, b"alpha's", b"aad")
            with pytest.raises(tre.UnsealError):
                await ks(t, "beta", "decrypt", label, blob, b"aad")
            assert await ks(t, "alpha", "decrypt", label, blob, b"aad") == b"alpha's"


async def test_keystore_objects_cannot_be_handed_to_another_domain(
    two: tuple[Path, Path],
) -> None:
    async with ephemeral(*two) as t:
        outcomes = await t.call("alpha", "handoff", {"peer": "beta"})
        assert outcomes == {
            "keystore": "INVALID_FRAME",
            "keyinfo": "INVALID_FRAME",
            "method": "INVALID_FRAME",
            "context": "INVALID_FRAME",
        }
        assert keystore_of(t, "alpha") is not keystore_of(t, "beta")
        assert "alpha" in repr(keystore_of(t, "alpha"))
        assert await ks(t, "beta", "list") == []


async def test_isolation_holds_on_a_provisioned_device(tmp_path: Path) -> None:
    """The same on a real device whose domains have owner keys from the factory."""
    alpha = make_plugin(tmp_path, "alpha")
    beta = make_plugin(tmp_path, "beta")
    state = provision_state(tmp_path, [alpha, beta])
    async with tre.open_tre(state=state) as t:
        for domain in ("alpha", "beta"):
            await ks(t, domain, "generate", "k", "aead")
        blob = await ks(t, "alpha", "encrypt", "k", b"x")
        sealed = {p: await ks(t, "alpha", "seal", b"x", policy=p) for p in ("owner", "measurement")}
    async with tre.open_tre(state=state) as t:
        assert [i["label"] for i in await ks(t, "beta", "list")] == ["k"]
        with pytest.raises(tre.UnsealError):
            await ks(t, "beta", "decrypt", "k", blob)
        for data in sealed.values():
            with pytest.raises(tre.UnsealError):
                await ks(t, "beta", "unseal", data)
            assert await ks(t, "alpha", "unseal", data) == b"x"


# --- one flipped bit in a key row ----------------------------------------------------------


def flip(value: Any, bit: int = 0) -> Any:
    """``value`` with one bit flipped (in the middle byte of a blob, the last character of
    a text, or bit ``bit`` of an integer)."""
    if isinstance(value, bytes):
        at = len(value) // 2
        return value[:at] + bytes([value[at] ^ (1 << bit)]) + value[at + 1 :]
    if isinstance(value, str):
        raw = value.encode()
        return (raw[:-1] + bytes([raw[-1] ^ (1 << bit)])).decode()
    assert isinstance(value, int)
    return value ^ (1 << bit)


@contextlib.contextmanager
def database(state: Path) -> Iterator[sqlite3.Connection]:
    """The device's database, opened directly (as an attacker with the disk would)."""
    with contextlib.closing(sqlite3.connect(state / DB_FILE)) as conn:
        yield conn
        conn.commit()


def flip_column(state: Path, domain: str, label: str, column: str, bit: int = 0) -> Any:
    with database(state) as conn:
        where = "WHERE domain = ? AND label = ?"
        (value,) = conn.execute(f"SELECT {column} FROM keys {where}", (domain, label)).fetchone()
        flipped = flip(value, bit)
        assert flipped != value
        conn.execute(f"UPDATE keys SET {column} = ? {where}", (flipped, domain, label))
    return flipped


KIND_BUG = (
    "BUG: a flipped bit in a key row's kind or policy text makes KeyKind()/SealPolicy() "
    "raise ValueError in DomainKeys.open_row before its try block, so the whole boot "
    "fails instead of that one key being unavailable"
)
PUBLIC_BUG = (
    "BUG: the public column of a key row is neither in the AEAD associated data nor "
    "checked against the unsealed key: a flipped bit gives an available key whose "
    "public_key()/info().public is not the key's public half"
)


@pytest.mark.parametrize(
    ("column", "bit"),
    [
        ("sealed", 0),
        ("sealed", 7),
        ("nonce", 3),
        ("version", 0),
        ("svn", 0),  # 2 -> 3: above the domain's svn
        ("svn", 1),  # 2 -> 0: another svn's key
        ("label", 0),
        ("domain", 0),
        ("kind", 0),
        ("policy", 0),
        ("public", 0),
    ],
)
async def test_one_flipped_bit_affects_that_key_only(tmp_path: Path, column: str, bit: int) -> None:
    state = provision_state(tmp_path, [make_plugin(tmp_path)])
    async with tre.open_tre(state=state) as t:
        made = {}
        for label, kind in [
            ("before", "ed25519"),
            ("target", "ed25519"),
            ("mac", "hmac"),
            ("box", "aead"),
            ("dh", "x25519"),
        ]:
            made[label] = await ks(t, D, "generate", label, kind)
        await ks(t, D, "generate", "bound", "hmac", policy="measurement")
        tag = await ks(t, D, "mac", "mac", b"data")
        bound_tag = await ks(t, D, "mac", "bound", b"data")
        blob = await ks(t, D, "encrypt", "box", b"data")

    flipped = flip_column(state, D, "target", column, bit)

    async with tre.open_tre(state=state) as t:
        labels = {i["label"]: i for i in await ks(t, D, "list")}
        # The row's original (domain, label) is in the authenticated index: with the row
        # moved away, that key reads as unavailable, not as absent.
        if column == "label":
            assert flipped in labels and labels["target"]["available"] is False
            broken = flipped
        elif column == "domain":
            assert labels["target"]["available"] is False
            broken = None
        else:
            broken = "target"
        if broken is not None:
            info = await ks(t, D, "info", broken)
            if info["available"]:
                # the only acceptable way to stay available: the key is intact and what the
                # keystore says about it is true
                sig = await ks(t, D, "sign", broken, b"x")
                assert tre.verify_ed25519(info["public"], b"x", sig)
                assert await ks(t, D, "public_key", broken) == made["target"]["public"]
            else:
                for op, args in [("sign", (b"x",)), ("public_key", ()), ("verify", (b"", b""))]:
                    with pytest.raises(tre.KeyUnavailable):
                        await ks(t, D, op, broken, *args)
        else:
            with pytest.raises(tre.KeyUnavailable):
                await ks(t, D, "sign", "target", b"x")
        # every other key works
        for label in ("before", "mac", "box", "dh", "bound"):
            assert labels[label]["available"] is True, label
        sig = await ks(t, D, "sign", "before", b"x")
        assert tre.verify_ed25519(made["before"]["public"], b"x", sig)
        assert await ks(t, D, "verify_mac", "mac", b"data", tag) is True
        assert await ks(t, D, "verify_mac", "bound", b"data", bound_tag) is True
        assert await ks(t, D, "decrypt", "box", blob) == b"data"
        assert await ks(t, D, "public_key", "dh") == made["dh"]["public"]


async def test_rows_moved_between_domains_and_labels_do_not_open(tmp_path: Path) -> None:
    state = provision_state(
        tmp_path, [make_plugin(tmp_path, "alpha"), make_plugin(tmp_path, "beta")]
    )
    async with tre.open_tre(state=state) as t:
        await ks(t, "alpha", "generate", "secret", "ed25519")
        await ks(t, "alpha", "generate", "other", "ed25519")
        await ks(t, "alpha", "generate", "again", "hmac")
        await ks(t, "alpha", "delete", "again")
        await ks(t, "alpha", "generate", "again", "hmac")  # version 2
        await ks(t, "beta", "generate", "kept", "hmac")
    with database(state) as conn:
        columns = "version, kind, policy, svn, nonce, sealed, public, created"

        def copy(src: tuple[str, str], dst: tuple[str, str]) -> None:
            conn.execute(
                f"INSERT INTO keys SELECT ?, ?, {columns} FROM keys WHERE domain = ? AND label = ?",
                (*dst, *src),
            )

        copy(("alpha", "secret"), ("beta", "secret"))  # same label, other domain
        copy(("alpha", "secret"), ("beta", "stolen"))
        copy(("alpha", "secret"), ("alpha", "copy"))  # same domain, other label
        # swap the sealed secrets of two rows of alpha
        rows = dict(
            (label, (nonce, sealed))
            for label, nonce, sealed in conn.execute(
                "SELECT label, nonce, sealed FROM keys WHERE domain = 'alpha'"
            )
        )
        for a, b in [("secret", "other"), ("other", "secret")]:
            conn.execute(
                "UPDATE keys SET nonce = ?, sealed = ? WHERE domain = 'alpha' AND label = ?",
                (*rows[b], a),
            )
        # an old version's sealed secret put into the current row (v2 claims to be v1)
        conn.execute("UPDATE keys SET version = 1 WHERE domain = 'alpha' AND label = 'again'")
    async with tre.open_tre(state=state) as t:
        alpha = {i["label"]: i["available"] for i in await ks(t, "alpha", "list")}
        beta = {i["label"]: i["available"] for i in await ks(t, "beta", "list")}
        assert alpha == {"secret": False, "other": False, "copy": False, "again": False}
        assert beta == {"secret": False, "stolen": False, "kept": True}
        with pytest.raises(tre.KeyUnavailable):
            await ks(t, "beta", "sign", "stolen", b"x")


async def test_an_old_row_put_back_whole_does_not_open(tmp_path: Path) -> None:
    state = provision_state(tmp_path, [make_plugin(tmp_path)])
    async with tre.open_tre(state=state) as t:
        old = await ks(t, D, "generate", "k", "ed25519")
    with database(state) as conn:
        old_row = conn.execute("SELECT * FROM keys WHERE label = 'k'").fetchone()
    async with tre.open_tre(state=state) as t:
        await ks(t, D, "delete", "k")  # e.g. the key leaked: the domain replaces it
        new = await ks(t, D, "generate", "k", "ed25519")
        assert new["version"] == 2
    with database(state) as conn:
        conn.execute("DELETE FROM keys WHERE label = 'k'")
        conn.execute(f"INSERT INTO keys VALUES ({', '.join('?' * len(old_row))})", old_row)
    try:
        async with tre.open_tre(state=state) as t:
            info = await ks(t, D, "info", "k")
    except tre.StorageError:
        return  # refusing to boot the spliced database is a fine answer too
    assert info["public"] != old["public"] or not info["available"]


# --- truncated, foreign and rolled-back databases; an edited counter ----------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli_main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def assert_clear(exc: BaseException, *needles: str) -> None:
    message = str(exc)
    assert "Traceback" not in message and "\n" not in message
    for needle in needles:
        assert needle in message
    assert exc.__cause__ is None


def booted_state(tmp_path: Path) -> Path:
    """A provisioned device with one domain, opened once and closed (a clean database)."""
    state = provision_state(tmp_path, [make_plugin(tmp_path)])
    device = Device.open_sync(state)
    device.store.sync.close()
    return state


@pytest.mark.parametrize("keep", [0, 10, 50, 100, 4096, "half", "minus-page"])
def test_a_truncated_database_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep: int | str
) -> None:
    state = booted_state(tmp_path)
    db = state / DB_FILE
    data = db.read_bytes()
    size = {"half": len(data) // 2, "minus-page": len(data) - 4096}.get(str(keep), keep)
    assert isinstance(size, int) and size < len(data)
    db.write_bytes(data[:size])
    with pytest.raises(tre.StorageError) as caught:
        Device.open_sync(state)
    assert_clear(caught.value, str(db))
    code, output = run_cli(capsys, "run", "--state", str(state), "--duration", "0")
    assert code != 0
    assert "Traceback" not in output and "tre: error:" in output and str(db) in output


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda path: path.write_bytes(os.urandom(16384)), id="random"),
        pytest.param(lambda path: path.write_text("not a database\n" * 99), id="text"),
        pytest.param(None, id="other-sqlite-app"),
    ],
)
def test_a_foreign_database_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Callable[[Path], Any] | None
) -> None:
    state = booted_state(tmp_path)
    db = state / DB_FILE
    db.unlink()
    if make is None:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("CREATE TABLE keys (domain TEXT, label TEXT)")
            conn.commit()
    else:
        make(db)
    with pytest.raises(tre.StorageError) as caught:
        Device.open_sync(state)
    assert_clear(caught.value, str(db))
    code, output = run_cli(capsys, "run", "--state", str(state), "--duration", "0")
    assert code != 0
    assert "Traceback" not in output and "tre: error:" in output


def save_db(db: Path, folder: Path) -> None:
    """Copy ``db`` with its -wal and -shm files (those that exist) into ``folder``."""
    folder.mkdir()
    for suffix in ("", "-wal", "-shm"):
        path = db.with_name(db.name + suffix)
        if path.exists():
            shutil.copy2(path, folder / path.name)


def put_back(folder: Path, db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path = db.with_name(db.name + suffix)
        path.unlink(missing_ok=True)
        if (folder / path.name).exists():
            shutil.copy2(folder / path.name, path)


async def test_a_restored_older_database_is_detected(tmp_path: Path) -> None:
    state = provision_state(tmp_path, [make_plugin(tmp_path)])
    db = state / DB_FILE
    async with tre.open_tre(state=state) as t:
        await ks(t, D, "generate", "first", "ed25519")
        save_db(db, tmp_path / "old")  # while running: the commit is in the -wal
        await ks(t, D, "generate", "second", "ed25519")
        await ks(t, D, "delete", "first")  # what the attacker wants undone
    save_db(db, tmp_path / "new")
    put_back(tmp_path / "old", db)
    with pytest.raises(tre.RollbackDetected) as caught:
        async with tre.open_tre(state=state):
            raise AssertionError("booted a rolled-back database")
    assert_clear(caught.value, "older copy")
    # the refusal changed nothing: the newest database boots, with its keys
    put_back(tmp_path / "new", db)
    async with tre.open_tre(state=state) as t:
        assert [i["label"] for i in await ks(t, D, "list")] == ["second"]


async def test_a_restored_copy_from_an_earlier_boot_is_detected(tmp_path: Path) -> None:
    state = provision_state(tmp_path, [make_plugin(tmp_path)])
    db = state / DB_FILE
    async with tre.open_tre(state=state) as t:
        await ks(t, D, "generate", "k", "hmac")
    save_db(db, tmp_path / "old")
    async with tre.open_tre(state=state):
        pass  # a boot alone is a write (the boot count)
    put_back(tmp_path / "old", db)
    with pytest.raises(tre.RollbackDetected):
        Device.open_sync(state)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda data: data[:8] + flip(data[8:16]) + data[16:], id="value-bit"),
        pytest.param(lambda data: data[:-1] + bytes([data[-1] ^ 0x80]), id="mac-bit"),
        pytest.param(lambda data: b"X" + data[1:], id="magic"),
        pytest.param(lambda data: data[:40], id="truncated"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(None, id="deleted"),
    ],
)
async def test_an_edited_counter_is_refused(
    tmp_path: Path, edit: Callable[[bytes], bytes] | None
) -> None:
    state = provision_state(tmp_path, [make_plugin(tmp_path)])
    async with tre.open_tre(state=state) as t:
        await ks(t, D, "generate", "k", "hmac")
    path = state / COUNTER_FILE
    if edit is None:
        path.unlink()
    else:
        path.write_bytes(edit(path.read_bytes()))
    with pytest.raises(tre.StorageError) as caught:
        async with tre.open_tre(state=state):
            raise AssertionError("booted with a tampered counter")
    assert isinstance(caught.value, CounterTampered)
    assert caught.value.code == "COUNTER_TAMPERED"
    assert_clear(caught.value, "counter")


async def test_writes_keep_the_counter_at_the_database_generation(tmp_path: Path) -> None:
    state = provision_state(tmp_path, [make_plugin(tmp_path)])
    async with tre.open_tre(state=state) as t:
        store = domain_keys(t, D).store.sync
        counter = store._counter
        assert counter is not None
        audit = audit_log(t)
        for i in range(3):
            await audit.flush()
            before = store.generation()
            await ks(t, D, "generate", f"k{i}", "hmac")
            await audit.flush()  # the key's audit entry and checkpoint are transactions too
            assert store.generation() > before and store.generation() == counter.read()
        await audit.flush()
        before = store.generation()
        with pytest.raises(tre.KeyExists):  # a refused write bumps nothing
            await ks(t, D, "generate", "k0", "hmac")
        assert store.generation() == before == counter.read()
