"""Tamper response and termination (R6).

Both are lifecycle transitions written in one transaction with their event rows, and only
then handed to the event hooks, so a failing hook (an audit log with a full disk) can
never stop a lock or leave memory and disk disagreeing.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import trio

import attestation

from ._device import DB_FILE, UDS_FILE, Device, TREEvent
from ._errors import ProvisioningError, StorageError, Terminated
from ._lifecycle import DOMAIN_LIFECYCLE, TRE_LIFECYCLE, DomainLifecycle, TREState, check_move
from ._store import APPLICATION_ID

__all__ = ["erase_secret", "tamper", "terminate", "terminate_state"]


def erase_secret(state_dir: Path) -> bool:
    """Overwrite the device secret with zeros, fsync, and remove it. True if there was one."""
    path = Path(state_dir) / UDS_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes(attestation.UDS_SIZE), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()
    return True


async def tamper(
    device: Device, domain_id: str | None, reason: str = "tamper detected"
) -> list[str]:
    """Tamper response: lock one domain, or (``domain_id=None``) the whole TRE and every
    domain in it. Returns the domains now locked. Locking is final; reporting the same
    attack again is recorded again."""
    installed = sorted(
        d for d, r in device.records.items() if r.state is not DomainLifecycle.REMOVED
    )
    if domain_id is not None and domain_id not in installed:
        raise ProvisioningError(f"no domain {domain_id!r} is installed")
    targets = [domain_id] if domain_id is not None else installed
    new_tre = device.tre_state
    if domain_id is None and device.tre_state is TREState.SECURED:
        check_move(TRE_LIFECYCLE, "the TRE", device.tre_state, TREState.LOCKED)
        new_tre = TREState.LOCKED
    moves = []
    for target in targets:
        old = device.records[target].state
        if old is not DomainLifecycle.LOCKED:
            check_move(DOMAIN_LIFECYCLE, f"domain {target!r}", old, DomainLifecycle.LOCKED)
            moves.append((target, old))
    stamp = time.time()
    subject = domain_id or "tre"
    events = [TREEvent(stamp, "tamper", subject, reason)]
    if new_tre is not device.tre_state:
        events.append(
            TREEvent(stamp, "tre_state", "tre", f"{device.tre_state.value} -> locked: {reason}")
        )
    events += [
        TREEvent(stamp, "domain_state", d, f"{old.value} -> locked: {reason}") for d, old in moves
    ]

    def write(conn: sqlite3.Connection) -> None:
        if new_tre is not device.tre_state:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'tre_state'", (new_tre.value,))
        conn.executemany(
            "UPDATE domains SET state = 'locked' WHERE id = ?", [(d,) for d, _ in moves]
        )
        conn.executemany(
            "INSERT INTO events(time, kind, domain, detail) VALUES (?, ?, ?, ?)",
            [(e.time, e.kind, e.subject, e.detail) for e in events],
        )

    await device.store.write(write)
    device.tre_state = new_tre
    for target, _ in moves:
        device.set_record_state(target, DomainLifecycle.LOCKED)
    for event in events:
        device.emit(event)
    return targets


async def terminate(device: Device) -> None:
    """End of life, irreversibly: in one transaction the TRE moves to TERMINATED and every
    stored key row is deleted (secure_delete overwrites them); then the device secret is
    overwritten and removed, so nothing can be derived or booted again. If the power goes
    in between, the next open finishes the job (see :meth:`Device.open_sync`)."""
    stamp = time.time()
    events = []
    if device.tre_state is not TREState.TERMINATED:
        check_move(TRE_LIFECYCLE, "the TRE", device.tre_state, TREState.TERMINATED)
        detail = f"{device.tre_state.value} -> terminated: terminated by the operator"
        events.append(TREEvent(stamp, "tre_state", "tre", detail))
    events.append(TREEvent(stamp, "terminated", "tre", "device secret erased"))

    def write(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = 'terminated' WHERE key = 'tre_state'")
        conn.execute("DELETE FROM keys")
        device.key_index.reset(conn)
        conn.executemany(
            "INSERT INTO events(time, kind, domain, detail) VALUES (?, ?, ?, ?)",
            [(e.time, e.kind, e.subject, e.detail) for e in events],
        )

    await device.store.write(write)
    device.tre_state = TREState.TERMINATED
    if device.state_dir is not None:
        await trio.to_thread.run_sync(erase_secret, device.state_dir)
    for event in events:
        device.emit(event)


def terminate_state(state_dir: Path) -> str:
    """``tre terminate``: reach end of life even for a damaged state folder. The normal
    path opens the device and runs :func:`terminate`; if the device cannot be opened (a
    corrupt or foreign database, a broken counter, a missing certificate, or an earlier
    terminate that was interrupted), the secret is erased anyway -- without it every
    sealed key is useless -- and the database is marked terminated if it can be."""
    state_dir = Path(state_dir)
    if not (state_dir / DB_FILE).exists() and not (state_dir / UDS_FILE).exists():
        raise StorageError(f"{state_dir} is not a provisioned TRE state")
    try:
        device = Device.open_sync(state_dir)
    except Terminated:
        if not erase_secret(state_dir):
            raise
        _mark_terminated(state_dir)
        return "finished an interrupted termination"
    except StorageError as exc:
        erased = erase_secret(state_dir)
        marked = _mark_terminated(state_dir)
        if not erased and not marked:
            raise
        return f"the state was damaged ({exc.message}); the device secret was erased anyway"

    async def run() -> None:
        try:
            await terminate(device)
        finally:
            await device.close()

    trio.run(run)
    return "terminated"


def _mark_terminated(state_dir: Path) -> bool:
    """Best effort, without the counter: record the end of life in a readable database."""
    db = state_dir / DB_FILE
    if not db.is_file():
        return False
    try:
        conn = sqlite3.connect(db)
        try:
            (app_id,) = conn.execute("PRAGMA application_id").fetchone()
            if app_id != APPLICATION_ID:
                return False
            with conn:
                conn.execute("UPDATE meta SET value = 'terminated' WHERE key = 'tre_state'")
                conn.execute("DELETE FROM keys")
                conn.execute(
                    "INSERT INTO events(time, kind, domain, detail) "
                    "VALUES (?, 'terminated', 'tre', 'device secret erased')",
                    (time.time(),),
                )
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return False
    return True
