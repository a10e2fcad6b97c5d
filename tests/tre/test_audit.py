"""The secure audit record (R11): what is recorded, who can read it, and that every edit
of the audit tables is caught (issue 5, sections 2 and 3).

A provisioned state is booted a few times to fill its log; each attack then edits a copy
of it the way an attacker with the file would (plain SQLite, no keys) and ``tre audit
verify`` must fail naming the problem. Real clock: the device's SQLite I/O runs in worker
threads; every test is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import attestation
import tre
from tests.device_helpers import (
    acli,
    assert_one_line_error,
    cli,
    make_factory,
    provision_device,
)
from tre._audit import AuditLog
from tre._audit_crypto import AuditError, AuditUnreadable, Checkpoint
from tre._audit_offline import open_audit_state, verify_state
from tre._device import DB_FILE, UDS_FILE, Device

LIMIT = 10


def audit_log(t: tre.TRE) -> AuditLog:
    """The audit log attached to a running TRE (test access)."""
    for hook in t._kernel.device.hooks:
        owner = getattr(hook, "__self__", None)
        if isinstance(owner, AuditLog):
            return owner
    raise AssertionError("no audit log is attached")


async def populate(state: Path) -> None:
    """Two boots with denials, key creation and a tamper response."""
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state) as t:
            for _ in range(3):
                with contextlib.suppress(tre.CallError):
                    await t.call("vault", "status")  # undeclared: denied
            await t.tamper("vault", "case opened")
        async with tre.open_tre(state=state) as t:
            await t.call("oem", "info")
            with contextlib.suppress(tre.CallError):
                await t.call("mno", "nothing")


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audit")
    factory = make_factory(root / "factory")
    state = root / "golden"
    provision_device(state, factory)
    trio.run(populate, state)
    return state


@pytest.fixture
def state(golden: Path, tmp_path: Path) -> Path:
    """A copy of the filled state, for one test to attack."""
    copy = tmp_path / "state"
    shutil.copytree(golden, copy)
    return copy


@contextlib.contextmanager
def db(state: Path) -> Iterator[sqlite3.Connection]:
    """The attacker's view: tre.db edited with plain SQLite."""
    conn = sqlite3.connect(state / DB_FILE, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


def problems(state: Path, pinned: Path | None = None) -> tuple[str, ...]:
    return verify_state(state, pinned).problems


def assert_first_problem(state: Path, text: str, pinned: Path | None = None) -> None:
    """Verification fails, and its first problem says ``text``."""
    found = problems(state, pinned)
    assert found and text in found[0], found


def save_checkpoint(state: Path, out: Path) -> Checkpoint:
    with open_audit_state(state) as view:
        cp = view.latest()
        out.write_text(cp.to_json(view.ueid, view.cert_pem))
    return cp


def device_key(state: Path) -> Ed25519PrivateKey:
    return attestation.device_id_key(attestation.Secret((state / UDS_FILE).read_bytes()))


def ueid(state: Path) -> bytes:
    with open_audit_state(state) as view:
        return view.ueid


# --- what is recorded ---------------------------------------------------------------------


def test_the_filled_log_verifies(golden: Path) -> None:
    result = verify_state(golden)
    assert result.ok, result.problems
    assert result.mac_checked
    assert result.entries >= 15
    assert result.checkpoints >= 2


def kinds(state: Path, domain: str) -> list[str]:
    with open_audit_state(state) as view:
        return [e.kind for e in view.read(domain)]


def test_what_is_recorded(golden: Path) -> None:
    tre_kinds = kinds(golden, "tre")
    assert tre_kinds[:2] == ["provisioned", "boot"]  # taken in from the events table
    assert tre_kinds.count("boot") == 2
    assert tre_kinds.count("denied") == 4  # the host's refused calls are TRE-wide entries
    vault = kinds(golden, "vault")
    assert vault.count("tamper") == 1
    assert "locked" in vault
    oem = kinds(golden, "oem")
    assert "key_created" in oem  # oem makes its timestamp key at first boot
    assert "domain_state" in oem


def test_each_event_row_is_recorded_exactly_once(golden: Path) -> None:
    """A transition reaches the log through its hook or its events row, never both."""
    with open_audit_state(golden) as view:
        rows = view.conn.execute("SELECT kind, domain, detail FROM events").fetchall()
        entries = [
            (e.kind, e.body["subject"], e.body["detail"])
            for domain in ("tre", "oem", "meter", "mno", "vault")
            for e in view.read(domain)
        ]
    for row in rows:
        assert entries.count(row) == 1, row


async def test_append_returns_once_the_entry_is_committed(state: Path) -> None:
    with trio.fail_after(LIMIT):
        device = await Device.open(state)
        try:
            log = await AuditLog.open(device)
            async with trio.open_nursery() as nursery:
                await nursery.start(log.serve)
                seqs = []
                for i in range(5):
                    seq = await log.append("mno", "test", {"i": i})
                    # another connection sees it at once: committed
                    with db(state) as conn:
                        row = conn.execute(
                            "SELECT domain, kind FROM audit_entries WHERE seq = ?", (seq,)
                        ).fetchone()
                    assert row == ("mno", "test")
                    seqs.append(seq)
                assert seqs == list(range(seqs[0], seqs[0] + 5))
                nursery.cancel_scope.cancel()
            await log.aclose()
            assert [e.body for e in await log.read("mno") if e.kind == "test"] == [
                {"i": i} for i in range(5)
            ]
            with pytest.raises(AuditError):
                await log.append("nobody", "test", {})
            with pytest.raises(AuditError):
                await log.append("tre", "Bad Kind", {})
        finally:
            await device.close()
    assert verify_state(state).ok


async def test_concurrent_appends_are_group_committed(state: Path) -> None:
    with trio.fail_after(LIMIT):
        device = await Device.open(state)
        try:
            log = await AuditLog.open(device)
            generation = device.store.sync.generation()
            seqs: list[int] = []

            async def one(i: int) -> None:
                seqs.append(await log.append("tre", "test", {"i": i}))

            async with trio.open_nursery() as nursery:
                await nursery.start(log.serve)
                async with trio.open_nursery() as appenders:
                    for i in range(300):
                        appenders.start_soon(one, i)
                nursery.cancel_scope.cancel()
            await log.aclose()
            transactions = device.store.sync.generation() - generation
        finally:
            await device.close()
    assert sorted(seqs) == list(range(min(seqs), min(seqs) + 300))
    assert transactions < 30  # batches, not one transaction per entry
    assert verify_state(state).ok


def entry_count(state: Path) -> int:
    with db(state) as conn:
        (count,) = conn.execute("SELECT count(*) FROM audit_entries").fetchone()
    return int(count)


async def test_keystore_changes_and_sealing_failures_are_recorded(state: Path) -> None:
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state) as t:
            keys = t._kernel.domains["meter"].keys
            assert keys is not None
            keystore = tre.Keystore(keys)
            await audit_log(t).flush()  # the boot's entries
            before = entry_count(state)
            await keystore.generate("audit-test", "hmac")
            # in the key's own transaction: there as soon as the key is
            assert entry_count(state) == before + 1
            with pytest.raises(tre.KeyExists):  # a refused change records nothing
                await keystore.generate("audit-test", "hmac")
            assert entry_count(state) == before + 1
            await keystore.delete("audit-test")
            assert entry_count(state) == before + 2
            with pytest.raises(tre.UnsealError):
                keystore.unseal(b"not sealed")
    meter = kinds(state, "meter")
    assert meter.count("key_created") >= 1
    assert "key_deleted" in meter
    assert "unseal_failed" in meter


async def test_a_tamper_report_from_another_process_is_recorded_at_the_next_boot(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await acli(capsys, "tamper", "--state", state, "--domain", "mno")
    assert code == 0, err
    assert kinds(state, "mno").count("tamper") == 0  # no TRE ran to record it
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state):
            pass
    assert kinds(state, "mno").count("tamper") == 1
    assert verify_state(state).ok


async def test_an_ephemeral_tre_keeps_its_log_in_memory(autojump_clock: Any) -> None:
    async with tre.open_tre() as t:
        log = audit_log(t)
        with contextlib.suppress(tre.CallError):
            await t.call("vault", "status")
        await log.flush()
        denied = [e for e in await log.read("tre") if e.kind == "denied"]
        assert len(denied) == 1
        assert denied[0].body["subject"] == "host"
        cp = await log.latest_checkpoint()
        assert cp is not None and cp.size == log.size and cp.root == log.root


async def test_a_flood_of_events_is_bounded(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tre._audit.MAX_PENDING", 10)
    with trio.fail_after(LIMIT):
        device = await Device.open(state)
        try:
            log = await AuditLog.open(device)
            for i in range(25):  # no writer runs: the queue fills
                log.record("tre", "flood", {"i": i})
            await log.flush()
            entries = [e for e in await log.read("tre") if e.kind in ("flood", "dropped")]
        finally:
            await device.close()
    assert [e.kind for e in entries].count("flood") == 10
    assert entries[0].kind == "dropped" and entries[0].body["detail"] == "15 dropped"


# --- who can read what ---------------------------------------------------------------------


def test_a_domain_cannot_read_another_domains_entries(golden: Path) -> None:
    with open_audit_state(golden) as view:
        keys = view.keys
        assert keys is not None
        rows = view.conn.execute(
            "SELECT seq, time, domain, kind, nonce, body FROM audit_entries"
        ).fetchall()
        opened = 0
        for seq, time_, domain, kind, nonce, body in rows:
            for reader in ("tre", "oem", "meter", "mno", "vault"):
                if reader == domain:
                    keys.decrypt(reader, seq, time_, domain, kind, nonce, body)
                    opened += 1
                else:
                    with pytest.raises(AuditUnreadable):
                        keys.decrypt(reader, seq, time_, domain, kind, nonce, body)
        assert opened == len(rows)
        # read() selects only the reader's own entries
        assert {e.domain for e in view.read("oem")} == {"oem"}
        # a domain's entry moved under another domain's name does not open either
        seq, time_, _, kind, nonce, body = next(r for r in rows if r[2] == "oem")
        with pytest.raises(AuditUnreadable):
            keys.decrypt("mno", seq, time_, "mno", kind, nonce, body)


def test_the_public_view_shows_no_contents(golden: Path, capsys: pytest.CaptureFixture[str]):
    code, out, err = cli(capsys, "audit", "show", "--state", golden, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["entries"] and all(
        set(e) == {"seq", "time", "domain", "kind", "leaf"} for e in data["entries"]
    )
    assert "case opened" not in out and "denied" in out
    code, out, err = cli(capsys, "audit", "show", "--state", golden, "--domain", "vault")
    assert code == 0, err
    assert "case opened" in out
    assert "does not declare" not in out  # the host's denials are TRE-wide, not vault's


def test_reading_needs_the_device_secret(state: Path, capsys: pytest.CaptureFixture[str]):
    (state / UDS_FILE).unlink()
    code, out, err = cli(capsys, "audit", "show", "--state", state, "--domain", "oem")
    assert_one_line_error(code, out, err, "device secret")
    code, out, err = cli(capsys, "audit", "verify", "--state", state)
    assert code == 0, err
    assert "MAC chain was not checked" in out


# --- the CLI --------------------------------------------------------------------------------


def test_cli_checkpoint_prove_and_verify(state: Path, tmp_path: Path, capsys) -> None:
    pin = tmp_path / "pin.json"
    code, out, err = cli(capsys, "audit", "checkpoint", "--state", state, "--out", pin)
    assert code == 0, err
    pinned = json.loads(pin.read_text())
    assert pinned["device_cert"].startswith("-----BEGIN CERTIFICATE-----")
    trio.run(populate, state)  # the log grows
    code, out, err = cli(capsys, "audit", "verify", "--state", state, "--pinned", pin)
    assert code == 0, err
    assert "verified (MAC chain checked, consistent with the pinned checkpoint" in out
    code, out, err = cli(capsys, "audit", "prove", "--state", state, "--from", pin, "--json")
    assert code == 0, err
    proof = json.loads(out)
    assert proof["verified"] and proof["old_size"] == pinned["size"] < proof["new_size"]
    for index in (0, 1, pinned["size"] - 1):
        code, out, err = cli(
            capsys, "audit", "prove", "--state", state, "--index", str(index), "--json"
        )
        assert code == 0, err
        data = json.loads(out)
        assert data["verified"]
        assert attestation.verify_inclusion(
            bytes.fromhex(data["leaf"]),
            index,
            data["size"],
            [bytes.fromhex(p) for p in data["proof"]],
            bytes.fromhex(data["root"]),
        )
    code, out, err = cli(capsys, "audit", "show", "--state", state)
    assert code == 0 and "checkpoints" in out, err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["prove", "--index", "x"], "--index"),
        (["prove", "--index", "-1"], "--index"),
        (["prove", "--index", "100000"], "not covered"),
        (["prove"], "one of the arguments"),
        (["show", "--domain", "nobody"], "nobody"),
        (["verify", "--pinned", "/nonexistent/pin.json"], "cannot read"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_cli_bad_usage_is_one_line(golden: Path, capsys, argv, fragment) -> None:
    code, out, err = cli(capsys, "audit", *argv[:1], "--state", golden, *argv[1:])
    assert_one_line_error(code, out, err, fragment)


def test_cli_on_a_folder_without_a_device(tmp_path: Path, capsys) -> None:
    code, out, err = cli(capsys, "audit", "verify", "--state", tmp_path)
    assert_one_line_error(code, out, err, "not a provisioned TRE state")


def test_a_garbled_pinned_file_is_bad_usage(state: Path, tmp_path: Path, capsys) -> None:
    pin = tmp_path / "pin.json"
    pin.write_text('{"format": "something else"}')
    code, out, err = cli(capsys, "audit", "verify", "--state", state, "--pinned", pin)
    assert_one_line_error(code, out, err, "not an audit checkpoint file")


# --- attacks: each must be detected --------------------------------------------------------

ENTRY = 6  # the row edited (the filled log has many more)


def _entry_edits() -> list[tuple[str, Callable[[Any], Any]]]:
    return [
        ("seq", lambda v: v + 1000),
        ("time", lambda v: v + 1.0),
        ("domain", lambda v: "meter" if v != "meter" else "oem"),
        ("kind", lambda v: v + "x"),
        ("nonce", flip),
        ("body", flip),
        ("mac", flip),
        ("leaf", flip),
    ]


@pytest.mark.parametrize("column, change", _entry_edits(), ids=[c for c, _ in _entry_edits()])
def test_any_edit_of_an_entry_is_detected(state: Path, column: str, change) -> None:
    with db(state) as conn:
        (value,) = conn.execute(
            f"SELECT {column} FROM audit_entries WHERE seq = ?", (ENTRY,)
        ).fetchone()
        conn.execute(f"UPDATE audit_entries SET {column} = ? WHERE seq = ?", (change(value), ENTRY))
    found = problems(state)
    assert found, column
    assert str(ENTRY) in found[0], found


NODE_EDITS = [
    ("level", lambda v: v + 10),
    ("idx", lambda v: v + 1000),
    ("hash", flip),
]


@pytest.mark.parametrize("column, change", NODE_EDITS, ids=[c for c, _ in NODE_EDITS])
@pytest.mark.parametrize("level", [1, 2])
def test_any_edit_of_a_subtree_hash_is_detected(state: Path, column, change, level) -> None:
    with db(state) as conn:
        (value,) = conn.execute(
            f"SELECT {column} FROM audit_nodes WHERE level = ? AND idx = 1", (level,)
        ).fetchone()
        conn.execute(
            f"UPDATE audit_nodes SET {column} = ? WHERE level = ? AND idx = 1",
            (change(value), level),
        )
    found = problems(state)
    assert found and ("node" in found[0] or "missing" in found[0]), found


CHECKPOINT_EDITS = [
    ("size", lambda v: v + 100000),
    ("root", flip),
    ("time", lambda v: v + 1.0),
    ("bootcount", lambda v: v + 1),
    ("signature", flip),
]


@pytest.mark.parametrize("column, change", CHECKPOINT_EDITS, ids=[c for c, _ in CHECKPOINT_EDITS])
def test_any_edit_of_a_checkpoint_is_detected(state: Path, column, change) -> None:
    with db(state) as conn:
        (size,) = conn.execute("SELECT min(size) FROM audit_checkpoints").fetchone()
        (value,) = conn.execute(
            f"SELECT {column} FROM audit_checkpoints WHERE size = ?", (size,)
        ).fetchone()
        conn.execute(
            f"UPDATE audit_checkpoints SET {column} = ? WHERE size = ?", (change(value), size)
        )
    assert_first_problem(state, "checkpoint")


def test_a_deleted_row_of_any_table_is_detected(state: Path) -> None:
    for table, where in (
        ("audit_entries", "seq = 3"),
        ("audit_nodes", "level = 1 AND idx = 0"),
    ):
        copy = state.with_name(f"{state.name}-{table}")
        shutil.copytree(state, copy)
        with db(copy) as conn:
            conn.execute(f"DELETE FROM {table} WHERE {where}")
        assert problems(copy), table


def test_an_emptied_log_is_detected(state: Path) -> None:
    with db(state) as conn:
        for table in ("audit_entries", "audit_nodes", "audit_checkpoints"):
            conn.execute(f"DELETE FROM {table}")
    assert_first_problem(state, "entries were removed")


def _swap_entries_3_and_4(conn: sqlite3.Connection, cols: str) -> None:
    """Entries 3 and 4 trade the values of ``cols`` (comma-separated columns)."""
    a = conn.execute(f"SELECT {cols} FROM audit_entries WHERE seq = 3").fetchone()
    b = conn.execute(f"SELECT {cols} FROM audit_entries WHERE seq = 4").fetchone()
    sets = ", ".join(f"{c} = ?" for c in cols.split(", "))
    conn.execute(f"UPDATE audit_entries SET {sets} WHERE seq = 3", b)
    conn.execute(f"UPDATE audit_entries SET {sets} WHERE seq = 4", a)


def test_a_reordered_pair_is_detected(state: Path) -> None:
    with db(state) as conn:
        _swap_entries_3_and_4(conn, "time, domain, kind, nonce, body, mac, leaf")
    assert_first_problem(state, "entry 3")


def _recompute_tree(conn: sqlite3.Connection) -> None:
    """What an attacker without keys can redo: every leaf and subtree hash."""
    rows = conn.execute(
        "SELECT seq, time, domain, kind, nonce, body, mac FROM audit_entries ORDER BY seq"
    ).fetchall()
    from tre._audit_crypto import entry_leaf, leaf_data

    store = attestation.MemoryNodeStore()
    for seq, time_, domain, kind, nonce, body, mac in rows:
        leaf = entry_leaf(leaf_data(seq, time_, domain, kind, nonce, body), mac)
        conn.execute("UPDATE audit_entries SET leaf = ? WHERE seq = ?", (leaf, seq))
        store.append(leaf)
    conn.execute("DELETE FROM audit_nodes")
    conn.executemany(
        "INSERT INTO audit_nodes VALUES (?, ?, ?)",
        [(lv, ix, h) for (lv, ix), h in store.nodes.items() if lv >= 1],
    )


@pytest.mark.parametrize("public", [False, True])
def test_a_rewritten_history_with_consistent_hashes_is_detected(state: Path, public) -> None:
    """Reordered entries with every leaf and node hash recomputed: the structure holds
    together, but the MAC chain (with the secret) and the signed checkpoints (without it)
    do not."""
    with db(state) as conn:
        _swap_entries_3_and_4(conn, "time, domain, kind, nonce, body, mac")
        _recompute_tree(conn)
    with open_audit_state(state) as view:
        found = view.verify(public_only=public).problems
    assert found
    assert ("checkpoint" if public else "MAC chain") in found[0], found


def test_a_cut_off_end_is_detected(state: Path) -> None:
    """The last entries removed with their subtree hashes and checkpoints: the sealed
    chain key is still the one after the real end."""
    with db(state) as conn:
        (size,) = conn.execute("SELECT count(*) FROM audit_entries").fetchone()
        keep = size - 3
        conn.execute("DELETE FROM audit_entries WHERE seq >= ?", (keep,))
        conn.execute("DELETE FROM audit_checkpoints WHERE size > ?", (keep,))
        _recompute_tree(conn)
    assert_first_problem(state, "removed from or added at the end")


def test_truncation_below_a_pinned_checkpoint_is_detected(state: Path, tmp_path: Path) -> None:
    """An older copy of the whole state folder put back (database *and* counter file, so
    even the rollback check is satisfied) passes on its own; only a pinned checkpoint
    shows the log lost entries."""
    old = tmp_path / "old"
    shutil.copytree(state, old)
    trio.run(populate, state)
    pin = tmp_path / "pin.json"
    save_checkpoint(state, pin)
    shutil.rmtree(state)
    shutil.copytree(old, state)
    assert problems(state) == ()
    assert_first_problem(state, "fewer than the pinned checkpoint", pin)


def test_an_older_database_alone_is_detected_as_a_rollback(state: Path, tmp_path: Path):
    old = tmp_path / "old.db"
    shutil.copy(state / DB_FILE, old)
    trio.run(populate, state)
    shutil.copy(old, state / DB_FILE)
    assert_first_problem(state, "older copy of the database")


def test_a_different_root_at_the_same_size_is_detected(state: Path, tmp_path: Path) -> None:
    """The device's key signed a checkpoint whose root is not the log's at that size
    (equivocation): as a pinned checkpoint, and as a stored one."""
    with open_audit_state(state) as view:
        cp = view.latest()
    other = Checkpoint(cp.size, flip(cp.root), cp.time, cp.boot_count)
    other = other.signed(device_key(state), ueid(state))
    pin = tmp_path / "pin.json"
    with open_audit_state(state) as view:
        pin.write_text(other.to_json(view.ueid, view.cert_pem))
    assert_first_problem(state, "not consistent with the pinned checkpoint", pin)
    with db(state) as conn:
        conn.execute(
            "UPDATE audit_checkpoints SET root = ?, signature = ? WHERE size = ?",
            (other.root, other.signature, other.size),
        )
    assert_first_problem(state, "root is not the tree's root")


def test_a_forged_checkpoint_is_detected(state: Path, tmp_path: Path) -> None:
    forger = Ed25519PrivateKey.generate()
    with open_audit_state(state) as view:
        cp = view.latest()
        pin = tmp_path / "pin.json"
        forged = Checkpoint(cp.size, cp.root, cp.time, cp.boot_count).signed(forger, view.ueid)
        pin.write_text(forged.to_json(view.ueid, view.cert_pem))
    assert_first_problem(state, "not signed by this device", pin)
    with db(state) as conn:
        conn.execute(
            "INSERT INTO audit_checkpoints VALUES (?, ?, ?, ?, ?)",
            (cp.size + 1, cp.root, cp.time, cp.boot_count, forged.signature),
        )
    assert_first_problem(state, "signature is not the DeviceID key's")


def test_verify_exits_1_naming_the_first_problem(state: Path, capsys) -> None:
    with db(state) as conn:
        conn.execute("UPDATE audit_entries SET kind = 'edited' WHERE seq = 2")
    code, out, err = cli(capsys, "audit", "verify", "--state", state)
    assert code == 1
    assert out == ""
    assert err.startswith("tre: audit log NOT verified: entry 2: its leaf hash")
    assert len(err.strip().splitlines()) == 1


async def test_a_log_whose_end_was_cut_off_cannot_be_continued(state: Path) -> None:
    with db(state) as conn:
        (size,) = conn.execute("SELECT count(*) FROM audit_entries").fetchone()
        conn.execute("DELETE FROM audit_entries WHERE seq = ?", (size - 1,))
    with trio.fail_after(LIMIT), pytest.raises(AuditError, match="cannot be continued"):
        async with tre.open_tre(state=state):
            raise AssertionError("booted on a truncated audit log")


async def test_attach_hands_keystores_the_log(state: Path) -> None:
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state) as t:
            log = audit_log(t)
            keys = t._kernel.domains["oem"].keys
            assert keys is not None and keys.audit is log


def test_the_demo_ends_with_an_audit_verification(golden: Path) -> None:
    import io

    from tre._demo import _audit_verification, _Story

    out = io.StringIO()
    assert _audit_verification(_Story(out), golden)
    last = out.getvalue().strip().splitlines()[-1].strip()
    assert last.startswith("audit log: ") and last.endswith(" checkpoints, verified")
