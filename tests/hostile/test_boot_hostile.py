"""Hostile cases of the boot path for installed domains, found in review: an installed
domain's code is measured before it is imported (tampered code never runs, not even its
module's top level, and only that domain is locked); edited rows of the domains table
(state, source, owner threshold) lock that domain or refuse the boot with a typed error,
and never leak the store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import tre
import tre._integrity as integrity_mod
from tests.install_helpers import LEDGER, Site


def _edit(state: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(state / "tre.db")
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def _folder(site: Site) -> Path:
    source: str = site.row()[2]
    return site.state / source.removeprefix("package:")


# --- 1. the installed entry module runs before the integrity check -----------------------------

TAMPERED = """\
import tre, tre._integrity as _i
_orig = _i.IntegrityMonitor.boot_check
_i.IntegrityMonitor.boot_check = lambda self: (_orig(self), set())[1]  # runs before the check
VERSION = 666

class Ledger(tre.Domain):
    @tre.service
    async def version(self, caller, body): return VERSION
    @tre.service
    async def put(self, caller, body): return True
    @tre.service
    async def get(self, caller, body): return b""
    @tre.service
    async def seal(self, caller, body): return b""
    @tre.service
    async def unseal(self, caller, body): return b""
    @tre.service
    async def keys(self, caller, body): return []
"""


async def test_tampered_entry_module_runs_before_check_and_boots_unlocked(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.install(1)
    (_folder(site) / "ledger.py").write_text(TAMPERED)
    original = integrity_mod.IntegrityMonitor.boot_check
    try:
        async with site.boot() as t:
            state = t.domain(LEDGER).state
            version = await t.call(LEDGER, "version") if state != "locked" else None
    finally:
        integrity_mod.IntegrityMonitor.boot_check = original  # type: ignore[method-assign]
    # The changed file must lock the domain; its code must not have run.
    assert state == "locked", f"tampered ledger booted {state!r} and answered {version!r}"


# --- 2. a tampered domain.toml / entry module refuses the whole boot ---------------------------


@pytest.mark.parametrize(
    "name, data",
    [("domain.toml", b"this is = = not toml"), ("ledger.py", b"raise RuntimeError('x')\n")],
)
async def test_tampered_installed_file_locks_domain_not_whole_tre(
    tmp_path: Path, name: str, data: bytes
) -> None:
    site = Site(tmp_path)
    site.install(1)
    (_folder(site) / name).write_bytes(data)
    # README: "a mismatch in a domain locks that domain ... and the rest boots"
    async with site.boot() as t:
        assert t.domain(LEDGER).state == "locked"
        assert t.domain("oem").state != "locked"


async def test_a_module_that_raises_systemexit_is_never_imported(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.install(1)
    (_folder(site) / "ledger.py").write_bytes(b"raise SystemExit(0)\n")
    async with site.boot() as t:  # that domain is locked, its code never imported
        assert t.domain(LEDGER).state == "locked"
        assert t.domain("oem").state == "running"


# --- 3. database edits: untyped crashes --------------------------------------------------------


async def test_bad_state_column_is_a_typed_refusal(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.install(1)
    _edit(site.state, "UPDATE domains SET state = 'bogus' WHERE id = ?", LEDGER)
    with pytest.raises(tre.TREError):  # (was a ValueError from DomainLifecycle(...))
        async with site.boot():
            pass


async def test_a_bad_source_domain_id_locks_that_domain(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.install(1)
    _edit(site.state, "UPDATE domains SET source = 'package:domains/../1' WHERE id = ?", LEDGER)
    async with site.boot() as t:  # that domain is locked, its code never imported
        assert t.domain(LEDGER).state == "locked"
        assert t.domain("oem").state == "running"


async def test_zero_owner_threshold_accepts_unsigned_reference(tmp_path: Path) -> None:
    """A threshold of 0 (not something an install writes) makes any unsigned envelope a valid
    integrity reference: tampered files plus a self-made package boot unlocked."""
    import attestation

    site = Site(tmp_path)
    site.install(1)
    folder = _folder(site)
    (folder / "ledger.py").write_text(
        (folder / "ledger.py").read_text().replace("VERSION = 1", "VERSION = 666")
    )
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    forged = attestation.make_package(
        target="domain:" + LEDGER, counter=1, expires=2**31, files=files, signers=[]
    )
    _edit(
        site.state,
        "UPDATE domains SET owner_threshold = 0, package = ? WHERE id = ?",
        forged,
        LEDGER,
    )
    async with site.boot() as t:
        assert t.domain(LEDGER).state == "locked"


@pytest.mark.parametrize("keys", [b"\x00", b"\x01" * 33, b""])
async def test_malformed_owner_keys_lock_the_domain(tmp_path: Path, keys: bytes) -> None:
    site = Site(tmp_path)
    site.install(1)
    _edit(site.state, "UPDATE domains SET owner_keys = ? WHERE id = ?", keys, LEDGER)
    async with site.boot() as t:
        assert t.domain(LEDGER).state == "locked"


async def test_a_bad_source_counter_locks_that_domain(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.install(1)
    _edit(
        site.state,
        "UPDATE domains SET source = 'package:domains/ledger/\u00b2' WHERE id = ?",
        LEDGER,
    )
    async with site.boot() as t:  # that domain is locked, its code never imported
        assert t.domain(LEDGER).state == "locked"
        assert t.domain("oem").state == "running"


async def test_bad_state_column_does_not_leak_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Device.open_sync opens the Store, then Device.__init__ raises on the bad row: the
    store (its SQLite connection and the counter file) is never closed."""
    from tre._store import Store

    opened: list[Store] = []
    real_open = Store.open.__func__  # type: ignore[attr-defined]

    def spy(cls: type[Store], /, *args: object, **kwargs: object) -> Store:
        store: Store = real_open(cls, *args, **kwargs)
        opened.append(store)
        return store

    monkeypatch.setattr(Store, "open", classmethod(spy))
    site = Site(tmp_path)
    site.install(1)
    _edit(site.state, "UPDATE domains SET state = 'bogus' WHERE id = ?", LEDGER)
    with pytest.raises(tre.StorageError):
        async with site.boot():
            pass
    assert opened
    with pytest.raises(sqlite3.ProgrammingError):  # closed connection
        opened[-1]._conn.execute("SELECT 1")
