"""Installing, updating, removing and transferring domains on a provisioned device (R4, R12).

Offline operations on a state folder (``tre install|remove|transfer``): they hold the
state's lock (:mod:`._runlock`), so they never run beside a TRE booted on it; the new code
runs from the next boot. The trust decisions are :mod:`attestation._update`'s; this module
applies them to the device.

Install (and update), in this order; a refusal at any step changes nothing:

1. the package's target names the domain (read unverified: it only chooses *which* role
   must have signed, :func:`attestation.verify_package` then checks that role);
2. the TRE must be secured; an installed domain must not be locked (remove it first);
3. :func:`attestation.verify_package` against the root stored on the device, with the
   domain's last release counter (a removed domain keeps its counter, so an old package
   cannot come back after a removal) and the current time; :func:`attestation.check_files`
   on the files in hand;
4. an installed domain's recorded owner must still be the owner the root delegates
   (an owner change is a transfer, below);
5. stage: every file is written (``O_EXCL``, fsync'd) into a fresh folder under
   ``domains/.staging/``, read back and checked again (what is on disk is what was
   verified), moved to ``domains/<id>/<counter>/`` and loaded (manifest and class must
   agree, the manifest's id must be the target's), then measured;
6. keys: rows sealed under OWNER stay (svn rule); rows sealed under MEASUREMENT are
   re-sealed to the new measurement if the package says ``migrate = "owner"`` (the owner
   vouches that the new code may read the old code's secrets), and crypto-erased
   otherwise: lost by design;
7. one SQLite transaction commits the domain row (code folder, owner role, svn,
   measurement, release counter, the package itself as the integrity reference) with the
   key rows and an event. A crash before it leaves the old version (the new folder is
   unreferenced and swept at the next install); after it, the new one. Never a mix.
8. the superseded folder is deleted.

Remove deletes every key row of the domain (SQLite ``secure_delete``, then a WAL
checkpoint that truncates the log), replaces its install epoch (every key it could derive
is gone: a crypto-erase) and keeps its row as ``removed`` with its counter.

Transfer (``tre transfer``): the root must already delegate the domain to the new owner
(``tre root new --owner ID=NEW.pub`` + ``tre root rotate``), and the package must carry a
threshold of the new owner's keys (checked by verify_package) *and* of the owner recorded
on the device. The domain gets the new owner and a new epoch: everything the old owner
sealed becomes unreadable, and its key rows are erased.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attestation

from ._counter import fsync_dir
from ._device import Device, DomainRecord, TREEvent, measure, new_epoch
from ._errors import ConfigError, InstallRefused
from ._installed import PACKAGE_DIR, package_folder, package_source, record_spec
from ._integrity import manifest_path
from ._keystore import DomainKeys, KeyKind, SealPolicy
from ._lifecycle import DOMAIN_LIFECYCLE, DomainLifecycle, TREState, check_move
from ._loader import DomainSpec, load_domain_dir
from ._measure import code_files, read_code, read_tree, tre_roots
from ._root import load_root

__all__ = ["STAGING_DIR", "install_package", "remove_domain", "transfer_domain"]

STAGING_DIR = ".staging"
_KEY_COLUMNS = "label, version, kind, policy, svn, nonce, sealed, public, created"


def install_package(
    state_dir: Path,
    envelope: bytes,
    files: Mapping[str, bytes],
    *,
    domain: str | None = None,
    now: int | None = None,
    code_roots: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """Install or update the domain a package targets (``domain``, if given, must be it),
    or authorise the TRE's own code (a ``"tre"`` package; ``code_roots`` points at other
    copies of its folders, for tests)."""
    return _run(
        Path(state_dir), envelope, files, domain, now, transfer=False, code_roots=code_roots
    )


def transfer_domain(
    state_dir: Path,
    domain: str,
    envelope: bytes,
    files: Mapping[str, bytes],
    *,
    now: int | None = None,
) -> dict[str, Any]:
    """Give ``domain`` to the owner the root now delegates it to (see the module doc)."""
    return _run(Path(state_dir), envelope, files, domain, now, transfer=True)


def remove_domain(state_dir: Path, domain: str) -> dict[str, Any]:
    """Remove ``domain`` and crypto-erase its keystore (see the module docstring)."""
    state_dir = Path(state_dir)
    with Device.offline(state_dir, "remove a domain") as device:
        record = device.records.get(domain)
        if record is None or record.state is DomainLifecycle.REMOVED:
            raise InstallRefused(f"no domain {domain!r} is installed")
        check_move(DOMAIN_LIFECYCLE, f"domain {domain!r}", record.state, DomainLifecycle.REMOVED)
        stamp = time.time()

        def write(conn: sqlite3.Connection) -> int:
            erased = _erase_keys(conn, device, domain)
            conn.execute(
                "UPDATE domains SET state = 'removed', epoch = ?, package = NULL WHERE id = ?",
                (new_epoch(), domain),
            )
            _event(conn, stamp, "domain_removed", domain, f"{erased} keys crypto-erased")
            return erased

        erased = device.store.sync.write(write)
        _truncate_wal(device)
        device.counters.erase_domain(domain)  # (they no longer verify: a new epoch)
        device.emit(TREEvent(stamp, "domain_removed", domain, f"{erased} keys erased"))
        shutil.rmtree(state_dir / PACKAGE_DIR / domain, ignore_errors=True)
        manifest_path(state_dir, domain).unlink(missing_ok=True)
    return {"domain": domain, "removed": True, "keys_erased": erased, "counter": record.counter}


# --- install, update, transfer --------------------------------------------------------------


def _target_domain(envelope: bytes, expected: str | None) -> str | None:
    """The domain a package targets (None: the TRE's own code)."""
    target = str(attestation.describe_package(envelope)["target"])
    domain_id = None if target == attestation.TRE_TARGET else target.partition(":")[2]
    if expected is not None and expected != domain_id:
        raise attestation.WrongTarget(f"package targets {target!r}, not domain {expected!r}")
    return domain_id


def _run(
    state_dir: Path,
    envelope: bytes,
    files: Mapping[str, bytes],
    expected: str | None,
    now: int | None,
    *,
    transfer: bool,
    code_roots: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    domain_id = _target_domain(envelope, expected)
    if domain_id is None and transfer:
        raise attestation.WrongTarget("the TRE's own code has no owner to transfer")
    when = int(time.time()) if now is None else now
    with Device.offline(state_dir, "install") as device:
        if domain_id is None:
            return _install_tre(device, envelope, files, when, code_roots)
        return _install(device, state_dir, domain_id, envelope, files, when, transfer)


def _install_tre(
    device: Device,
    envelope: bytes,
    files: Mapping[str, bytes],
    now: int,
    code_roots: Mapping[str, Path] | None,
) -> dict[str, Any]:
    """A package of the TRE's own code (target ``"tre"``, signed by a threshold of the root
    role). The code itself is installed by the device's software installer (pip, the OS
    image): this *authorises* it. The package must list exactly the installed files of
    tre, ipc and attestation, byte for byte; it then becomes the TRE's integrity reference
    (instead of the manifest file) with its release counter, in one transaction, so older
    code cannot boot again even with its own, genuinely signed, older package or manifest."""
    if device.tre_state is not TREState.SECURED:
        raise InstallRefused(f"the TRE is {device.tre_state.value}: nothing can be installed")
    root = device.store.sync.read(load_root)
    package = attestation.verify_package(
        root, envelope, target=attestation.TRE_TARGET, last_counter=device.tre_counter, now=now
    )
    attestation.check_files(package, files)
    try:
        attestation.check_files(package, dict(read_tree(code_roots or tre_roots())))
    except attestation.FileMismatch as exc:
        raise attestation.FileMismatch(
            f"the installed TRE code is not what the package lists: {exc.message}"
        ) from None
    stamp = time.time()
    previous = device.tre_counter

    def write(conn: sqlite3.Connection) -> None:
        _same_root(conn, root.envelope)
        values = {
            "tre_counter": package.counter,
            "tre_package": envelope,
            "tre_package_keys": b"".join(sorted(root.role.keys)),
            "tre_package_threshold": root.role.threshold,
        }
        conn.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            values.items(),
        )
        _event(conn, stamp, "tre_updated", "tre", f"counter {previous} -> {package.counter}")

    device.store.sync.write(write)
    device.emit(TREEvent(stamp, "tre_updated", "tre", f"counter {package.counter}"))
    return {
        "domain": None,
        "target": attestation.TRE_TARGET,
        "action": "authorised",
        "counter": package.counter,
        "previous_counter": previous,
        "files": len(package.files),
    }


def _install(
    device: Device,
    state_dir: Path,
    domain_id: str,
    envelope: bytes,
    files: Mapping[str, bytes],
    now: int,
    transfer: bool,
) -> dict[str, Any]:
    if device.tre_state is not TREState.SECURED:
        raise InstallRefused(f"the TRE is {device.tre_state.value}: nothing can be installed")
    record = device.records.get(domain_id)
    live = record if record is not None and record.state is not DomainLifecycle.REMOVED else None
    if live is not None and live.state is DomainLifecycle.LOCKED:
        raise InstallRefused(f"domain {domain_id!r} is locked (tamper response); remove it first")
    if transfer and live is None:
        raise InstallRefused(f"no domain {domain_id!r} is installed: nothing to transfer")
    root = device.store.sync.read(load_root)
    package = attestation.verify_package(
        root,
        envelope,
        target=attestation.domain_target(domain_id),
        last_counter=record.counter if record is not None else 0,
        now=now,
    )
    new_role = root.owners[domain_id]  # verify_package found it
    old_role = live.role if live is not None else None
    if transfer:
        if old_role is None:
            raise InstallRefused(
                f"domain {domain_id!r} has no owner key on this device; install a package "
                "signed by the owner the root delegates instead"
            )
        if old_role == new_role:
            raise InstallRefused(
                f"the root still delegates {domain_id!r} to its current owner; rotate the root "
                "to delegate it to the new owner first (tre root new --owner, tre root rotate)"
            )
        if not attestation.signed_by(envelope, old_role):
            raise attestation.BelowThreshold(
                f"the transfer of {domain_id!r} lacks a threshold of its current owner's keys"
            )
    elif old_role is not None and old_role != new_role:
        raise InstallRefused(
            f"the root delegates {domain_id!r} to another owner than the one installed; "
            "an owner change goes through 'tre transfer'"
        )
    attestation.check_files(package, files)
    # A new owner (first install, reinstall, transfer, or a factory domain installed
    # without an owner key) starts from nothing: a fresh epoch, no key survives.
    fresh = live is None or old_role is None or transfer
    final = _stage(state_dir, domain_id, package, files, device.records)
    committed = False
    try:
        spec = _load_staged(final, domain_id)
        identity = min(new_role.keys)
        new_record = DomainRecord(
            id=domain_id,
            source=package_source(domain_id, package.counter),
            owner=spec.manifest.owner,
            owner_key=identity,
            svn=spec.manifest.svn,
            measurement=measure(spec, attestation.owner_key_hash(identity)),
            state=live.state if live is not None else DomainLifecycle.INSTALLED,
            owner_keys=tuple(sorted(new_role.keys)),
            owner_threshold=new_role.threshold,
            counter=package.counter,
            package=envelope,
            epoch=new_epoch() if fresh else live.epoch,  # type: ignore[union-attr]
        )
        if record is not None and live is None:
            check_move(DOMAIN_LIFECYCLE, f"domain {domain_id!r}", record.state, new_record.state)
        old_keys = None
        if not fresh and package.migrate == "owner":
            old_keys = _old_keys(device, state_dir, live)  # type: ignore[arg-type]
        kind = (
            "domain_transferred" if transfer else "domain_updated" if live else "domain_installed"
        )
        # The new keys are derived only to re-seal migrated rows (deriving them measures
        # the TRE's code: most installs need not).
        new_keys = device.domain_keys(spec, new_record) if old_keys is not None else None
        outcome = _commit(device, new_record, new_keys, old_keys, fresh, kind, root.envelope)
        committed = True
    finally:
        if not committed:
            shutil.rmtree(final, ignore_errors=True)
    if fresh:
        _truncate_wal(device)
        device.counters.erase_domain(domain_id)  # (they no longer verify: a new epoch)
    if record is not None and record.source != new_record.source:
        old_folder = package_folder(state_dir, record.source)
        if old_folder is not None:
            shutil.rmtree(old_folder, ignore_errors=True)
    manifest_path(state_dir, domain_id).unlink(missing_ok=True)  # the package is the reference
    return {
        "domain": domain_id,
        "action": kind.removeprefix("domain_"),
        "counter": package.counter,
        "previous_counter": record.counter if record is not None else None,
        "svn": new_record.svn,
        "files": len(package.files),
        "owner_key": attestation.key_id(identity),
        "migrate": package.migrate or "none",
        **outcome,
    }


def _stage(
    state_dir: Path,
    domain_id: str,
    package: attestation.Package,
    files: Mapping[str, bytes],
    records: Mapping[str, DomainRecord],
) -> Path:
    """Write the files into a fresh staging folder, check them as read back from disk, and
    move the folder to ``domains/<id>/<counter>`` (unreferenced until the commit)."""
    base = state_dir / PACKAGE_DIR
    staging = base / STAGING_DIR
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    _sweep(state_dir, records)
    stage = Path(tempfile.mkdtemp(prefix=f"{domain_id}-", dir=staging))
    try:
        for rel, data in sorted(files.items()):
            path = stage / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        for folder in sorted({(stage / rel).parent for rel in files}, reverse=True):
            fsync_dir(folder)
        on_disk = {rel: read_code(path) for rel, path in code_files(stage)}
        attestation.check_files(package, on_disk)
        final = base / domain_id / str(package.counter)
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.rename(stage, final)  # refuses an existing final folder (never overwrites code)
        fsync_dir(final.parent)
        fsync_dir(staging)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return final


def _load_staged(folder: Path, domain_id: str) -> DomainSpec:
    try:
        spec = load_domain_dir(folder, strict=True)
    except ConfigError as exc:
        raise InstallRefused(f"the package of {domain_id!r} does not load: {exc}") from None
    if spec.id != domain_id:
        raise InstallRefused(f"the package targets {domain_id!r} but its manifest is {spec.id!r}")
    return spec


def _old_keys(device: Device, state_dir: Path, record: DomainRecord) -> DomainKeys | None:
    """The keys of the installed version (to open its MEASUREMENT rows), if it loads."""
    try:
        return device.domain_keys(record_spec(state_dir, record), record)
    except Exception:  # the old code is gone or broken: its MEASUREMENT rows cannot open
        return None


def _commit(
    device: Device,
    record: DomainRecord,
    new_keys: DomainKeys | None,
    old_keys: DomainKeys | None,
    fresh: bool,
    kind: str,
    root_envelope: bytes,
) -> dict[str, int]:
    stamp = time.time()
    domain = record.id

    def write(conn: sqlite3.Connection) -> dict[str, int]:
        _same_root(conn, root_envelope)
        counts = {"keys_kept": 0, "keys_migrated": 0, "keys_erased": 0}
        if fresh:
            counts["keys_erased"] = _erase_keys(conn, device, domain)
        else:
            rows = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM keys WHERE domain = ?",  # noqa: S608 (constant)
                (domain,),
            ).fetchall()
            for row in rows:
                label, version, kind_s, policy_s = row[:4]
                if policy_s == SealPolicy.OWNER.value:
                    counts["keys_kept"] += 1
                    continue
                secret = old_keys.row_secret(row) if old_keys is not None else None
                device.key_index.update(conn, remove=[(domain, label)])
                if secret is None or new_keys is None:
                    conn.execute("DELETE FROM keys WHERE domain = ? AND label = ?", (domain, label))
                    counts["keys_erased"] += 1
                    continue
                nonce, sealed = new_keys.seal_row(
                    label, version, KeyKind(kind_s), SealPolicy.MEASUREMENT, secret
                )
                conn.execute(
                    "UPDATE keys SET svn = ?, nonce = ?, sealed = ? WHERE domain = ? AND label = ?",
                    (new_keys.svn, nonce, sealed, domain, label),
                )
                new_row = (domain, label, version, kind_s, policy_s, new_keys.svn, nonce, sealed)
                device.key_index.update(conn, add=[(*new_row, row[7])])
                counts["keys_migrated"] += 1
        conn.execute(
            "INSERT INTO domains(id, source, owner, owner_key, svn, measurement, state, "
            "installed, owner_keys, owner_threshold, counter, package, epoch) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "source = excluded.source, owner = excluded.owner, owner_key = excluded.owner_key, "
            "svn = excluded.svn, measurement = excluded.measurement, state = excluded.state, "
            "installed = excluded.installed, owner_keys = excluded.owner_keys, "
            "owner_threshold = excluded.owner_threshold, counter = excluded.counter, "
            "package = excluded.package, epoch = excluded.epoch",
            (
                domain,
                record.source,
                record.owner,
                record.owner_key,
                record.svn,
                record.measurement,
                record.state.value,
                stamp,
                b"".join(record.owner_keys),
                record.owner_threshold,
                record.counter,
                record.package,
                record.epoch,
            ),
        )
        detail = f"counter {record.counter}, svn {record.svn}, " + ", ".join(
            f"{v} {k.removeprefix('keys_')}" for k, v in counts.items()
        )
        _event(conn, stamp, kind, domain, detail)
        return counts

    counts = device.store.sync.write(write)
    device.records[domain] = record
    device.emit(TREEvent(stamp, kind, domain, f"counter {record.counter}"))
    return counts


# --- helpers ----------------------------------------------------------------------------------


def _same_root(conn: sqlite3.Connection, envelope: bytes) -> None:
    """In the commit's transaction: the root the package was verified against is still the
    device's (``tre root rotate`` takes no state lock: it may run during an install, e.g. to
    revoke the very owner whose package is being staged)."""
    if load_root(conn).envelope != envelope:
        raise InstallRefused("the device's root changed during the install: install again")


def _erase_keys(conn: sqlite3.Connection, device: Device, domain: str) -> int:
    labels = [
        r[0]
        for r in conn.execute(
            "DELETE FROM keys WHERE domain = ? RETURNING label", (domain,)
        ).fetchall()
    ]
    device.key_index.update(conn, remove=[(domain, label) for label in labels])
    return len(labels)


def _event(conn: sqlite3.Connection, stamp: float, kind: str, domain: str, detail: str) -> None:
    conn.execute(
        "INSERT INTO events(time, kind, domain, detail) VALUES (?, ?, ?, ?)",
        (stamp, kind, domain, detail),
    )


def _truncate_wal(device: Device) -> None:
    """Move every page into the database and empty the write-ahead log, so the erased
    rows' old pages do not linger in it (``secure_delete`` zeroes them in the database)."""
    device.store.sync.read(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())


def _sweep(state_dir: Path, records: Mapping[str, DomainRecord]) -> None:
    """Delete what a crashed install left: staging folders, and version folders that no
    committed row points at. Only runs under the state lock (nothing else installs)."""
    base = state_dir / PACKAGE_DIR
    for leftover in (base / STAGING_DIR).iterdir():
        shutil.rmtree(leftover, ignore_errors=True)
    referenced = {
        folder.resolve()
        for r in records.values()
        if r.state is not DomainLifecycle.REMOVED
        and (folder := package_folder(state_dir, r.source)) is not None
    }
    for domain_dir in base.iterdir():
        if domain_dir.name == STAGING_DIR or not domain_dir.is_dir():
            continue
        for version in domain_dir.iterdir():
            if version.resolve() not in referenced:
                shutil.rmtree(version, ignore_errors=True)
