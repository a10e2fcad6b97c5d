"""SIGKILL in the middle of domain installs (issue 6: "a crash at any point leaves the old
version running or the new one, never a mix").

A child process (tests/hostile/install_kill9_child.py) installs ledger updates one after
another, each re-sealing the domain's MEASUREMENT-bound record to the new code. The parent
kills it with SIGKILL a random time into an install (staging, fsyncs, loading, the
transaction, the clean-up). After every kill:

- ``PRAGMA integrity_check`` is ``ok`` and the device opens (no rollback detected);
- the domain's row names either the last announced version or the one in flight, and the
  folder it points at holds exactly that version's files;
- the TRE boots with the domain running that version (its integrity reference, the stored
  package, matches the folder), and both records, the OWNER-bound and the re-sealed
  MEASUREMENT-bound one, open with their contents;
- the next install sweeps whatever the killed one left (staging or unreferenced folders).
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import trio

import attestation
from tests.device_helpers import db_rows
from tests.hostile.test_crash_kill9 import Lines
from tests.install_helpers import LEDGER, Site, ledger_files

CHILD = Path(__file__).with_name("install_kill9_child.py")
ROUNDS = 16
SEED = int(os.environ.get("TRE_KILL9_SEED", "6012026"))
ROUND_TIMEOUT = 30.0


def run_round(
    site: Site, key_file: Path, first: int, rng: random.Random, span: float
) -> tuple[int, int]:
    """Start the child; kill it a random time into an install (``span``: about one
    install's duration). (last done, in flight)."""
    wanted = rng.randint(0, 2)  # installs to let finish first
    delay = rng.uniform(0.0, span)
    done = in_flight = site.row()[1]  # the installed counter (first - 1, or lower)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(site.state), str(key_file), str(first)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines = Lines(proc.stdout)
    deadline = time.monotonic() + ROUND_TIMEOUT
    try:
        while True:
            line = lines.next(deadline)
            if line is None:
                raise AssertionError(f"the child exited early: {proc.stderr.read()!r}")
            word, _, number = line.partition(" ")
            if word == "begin":
                in_flight = int(number)
                if in_flight - first >= wanted:
                    break
            else:
                done = int(number)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        while (line := lines.next(deadline)) is not None:
            word, _, number = line.partition(" ")
            if word == "begin":
                in_flight = int(number)
            else:
                done = int(number)
    finally:
        lines.close()
        if proc.poll() is None:  # pragma: no cover - only when an assertion fired above
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -9
    return done, in_flight


async def check_boot(site: Site, version: int) -> None:
    async with site.boot() as t:
        assert t.domain(LEDGER).state == "running"
        assert await t.call(LEDGER, "version") == version
        assert await t.call(LEDGER, "get", "o") == b"owner-data"
        assert await t.call(LEDGER, "get", "m") == b"measurement-data"


def test_kill9_during_installs(tmp_path: Path) -> None:
    print(f"\ninstall kill -9 test: seed {SEED} (TRE_KILL9_SEED), {ROUNDS} rounds")
    rng = random.Random(SEED)
    site = Site(tmp_path)
    key_file = tmp_path / "owner.key"
    key_file.write_bytes(attestation.private_key_pem(site.owner))
    started = time.perf_counter()
    site.install(1)
    span = 1.5 * (time.perf_counter() - started)

    async def seed_records() -> None:
        async with site.boot() as t:
            await t.call(LEDGER, "put", {"label": "o", "data": b"owner-data", "policy": "owner"})
            body = {"label": "m", "data": b"measurement-data", "policy": "measurement"}
            await t.call(LEDGER, "put", body)

    trio.run(seed_records)
    outcomes = {"old": 0, "new": 0, "left a staged or unreferenced folder": 0}
    first = 2
    for _ in range(ROUNDS):
        done, in_flight = run_round(site, key_file, first, rng, span)
        with contextlib.closing(sqlite3.connect(site.state / "tre.db")) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        _, counter, source, _ = site.row()
        assert counter in (done, in_flight), (counter, done, in_flight)
        outcomes["new" if counter == in_flight else "old"] += 1
        assert source == f"package:domains/{LEDGER}/{counter}"
        folder = site.state / "domains" / LEDGER / str(counter)
        on_disk = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert on_disk == ledger_files(counter)  # never a mix of two versions
        staging = site.state / "domains" / ".staging"
        leftovers = list(staging.iterdir()) if staging.exists() else []
        leftovers += [p for p in folder.parent.iterdir() if p != folder]
        outcomes["left a staged or unreferenced folder"] += bool(leftovers)
        trio.run(check_boot, site, counter)
        first = in_flight + 1
    # The next install sweeps every leftover of the killed ones.
    site.install(first, migrate="owner")
    trio.run(check_boot, site, first)
    assert [p.name for p in (site.state / "domains" / LEDGER).iterdir()] == [str(first)]
    assert list((site.state / "domains" / ".staging").iterdir()) == []
    assert db_rows(site.state, "SELECT count(*) FROM keys WHERE domain = ?", LEDGER) == [(2,)]
    print(f"  outcomes: {outcomes}")
