"""The audit log of a state folder, read without booting: the device owner's tool and the
auditor's (what ``tre audit`` runs; tre/_cli_audit.py prints it).

The database is opened read-only, and everything is read inside one read transaction, so a
TRE running on the same folder can go on writing (WAL readers do not block the writer).
The public structure -- entries' sequence numbers, times, domains, kinds and leaf hashes,
the subtree hashes and the checkpoints -- needs nothing secret to check. Reading a
domain's bodies and checking the MAC chain need keys derived from the device secret
(``uds.bin``): only the device owner's tool has them.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import attestation

from ._audit_crypto import AuditError, AuditKeys, Checkpoint
from ._audit_tables import (
    AuditEntry,
    SqlNodeStore,
    Verification,
    checkpoints,
    latest_checkpoint,
    log_size,
    public_entries,
    read_entries,
    verify_log,
)
from ._counter import MonotonicCounter
from ._device import COUNTER_FILE, DB_FILE, UDS_FILE, counter_key
from ._errors import StorageError
from ._measure import tre_code_hash, unsigned_owner_hash
from ._store import APPLICATION_ID

__all__ = ["AuditState", "Proof", "open_audit_state", "verify_state"]


@attrs.frozen
class Proof:
    """An inclusion or consistency proof and whether it verified."""

    kind: str  # "inclusion" or "consistency"
    verified: bool
    data: dict[str, Any]


class AuditState:
    """An audit log as stored in a state folder (see :func:`open_audit_state`)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        public: Ed25519PublicKey,
        ueid: bytes,
        cert_pem: str,
        keys: AuditKeys | None,
        rollback: str | None,
    ) -> None:
        self.conn = conn
        self.public = public
        self.ueid = ueid
        self.cert_pem = cert_pem
        #: None without the device secret (a terminated device, or an auditor's copy)
        self.keys = keys
        #: why the database is older than the replay-protected counter, if it is
        self.rollback = rollback

    def __repr__(self) -> str:
        return f"<AuditState {self.ueid.hex()[:12]}...>"

    @property
    def size(self) -> int:
        return log_size(self.conn)

    def checkpoints(self) -> list[Checkpoint]:
        return checkpoints(self.conn)

    def latest(self) -> Checkpoint:
        cp = latest_checkpoint(self.conn)
        if cp is None:
            raise AuditError("the audit log has no checkpoint yet (boot the device once)")
        return cp

    def public_entries(self) -> list[dict[str, Any]]:
        return [
            {"seq": s, "time": t, "domain": d, "kind": k, "leaf": leaf.hex()}
            for s, t, d, k, leaf in public_entries(self.conn)
        ]

    def read(self, domain: str) -> list[AuditEntry]:
        """``domain``'s entries, opened with its key only."""
        if self.keys is None:
            raise AuditError("reading entries needs the device secret, which this state lacks")
        if not self.keys.knows(domain):
            raise AuditError(f"no domain {domain!r} is installed (TRE-wide entries: 'tre')")
        return read_entries(self.conn, self.keys, domain)

    def verify(
        self, pinned: Checkpoint | None = None, *, public_only: bool = False
    ) -> Verification:
        """The full check of :func:`tre._audit_tables.verify_log`, preceded by the
        rollback check (the database must not be older than the counter)."""
        chain = sealer = None
        if self.keys is not None and not public_only:
            chain, sealer = self.keys.chain_start(), self.keys.chain_sealer()
        result = verify_log(
            self.conn, public=self.public, ueid=self.ueid, chain=chain, sealer=sealer, pinned=pinned
        )
        if self.rollback is not None:
            return attrs.evolve(result, problems=(self.rollback, *result.problems))
        return result

    def load_pinned(self, path: Path) -> Checkpoint:
        """A checkpoint file from ``tre audit checkpoint``, checked to be this device's."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise AuditError(f"cannot read {path}: {exc.strerror}") from None
        cp, ueid, _cert = Checkpoint.from_json(text)
        if ueid != self.ueid:
            raise AuditError(f"{path} is a checkpoint of another device (UEID {ueid.hex()})")
        return cp

    def prove_inclusion(self, index: int) -> Proof:
        """Entry ``index`` in the tree of the latest checkpoint."""
        cp = self.latest()
        if not 0 <= index < cp.size:
            raise AuditError(
                f"entry {index} is not covered by the latest checkpoint (size {cp.size})"
            )
        store = SqlNodeStore(self.conn)
        leaf = store.subtree(0, index)
        path = attestation.inclusion_proof(store, index, cp.size)
        ok = cp.verify(self.public, self.ueid) and attestation.verify_inclusion(
            leaf, index, cp.size, path, cp.root
        )
        data = {
            "index": index,
            "leaf": leaf.hex(),
            "size": cp.size,
            "root": cp.root.hex(),
            "proof": [p.hex() for p in path],
        }
        return Proof("inclusion", ok, data)

    def prove_consistency(self, pinned: Checkpoint) -> Proof:
        """From a pinned checkpoint to the latest one."""
        cp = self.latest()
        data: dict[str, Any] = {
            "old_size": pinned.size,
            "old_root": pinned.root.hex(),
            "new_size": cp.size,
            "new_root": cp.root.hex(),
        }
        signed = pinned.verify(self.public, self.ueid) and cp.verify(self.public, self.ueid)
        if pinned.size > cp.size:
            return Proof("consistency", False, {**data, "proof": [], "problem": "truncated"})
        store = SqlNodeStore(self.conn)
        path = attestation.consistency_proof(store, pinned.size, cp.size) if pinned.size else []
        ok = signed and attestation.verify_consistency(
            pinned.size, cp.size, pinned.root, cp.root, path
        )
        return Proof("consistency", ok, {**data, "proof": [p.hex() for p in path]})


def _read_keys(state_dir: Path, conn: sqlite3.Connection, meta: dict[str, Any]) -> AuditKeys:
    uds = attestation.Secret((state_dir / UDS_FILE).read_bytes())
    cdis = attestation.tre_cdis(uds, tre_code_hash(), meta["authority"])
    owners = {
        domain_id: attestation.owner_key_hash(key) if key else unsigned_owner_hash(owner)
        for domain_id, owner, key in conn.execute("SELECT id, owner, owner_key FROM domains")
    }
    return AuditKeys(cdis, owners)


def _rollback(state_dir: Path, meta: dict[str, Any]) -> str | None:
    uds = attestation.Secret((state_dir / UDS_FILE).read_bytes())
    counter = MonotonicCounter(state_dir / COUNTER_FILE, counter_key(uds))
    try:
        value = counter.read()
    except StorageError as exc:
        return f"the replay-protected counter cannot be checked: {exc.message}"
    generation = int(meta.get("generation", 0))
    if generation < value:
        return (
            f"the database is at generation {generation} but the replay-protected counter is "
            f"at {value}: an older copy of the database was put back"
        )
    return None


@contextlib.contextmanager
def open_audit_state(state_dir: Path) -> Iterator[AuditState]:
    """The audit log of ``state_dir``, read-only, seen at one instant."""
    state_dir = Path(state_dir)
    db = state_dir / DB_FILE
    if not db.is_file():
        raise StorageError(f"{state_dir} is not a provisioned TRE state (no {DB_FILE})")
    try:
        cert = attestation.load_cert_pem((state_dir / "device.pem").read_bytes())
    except OSError as exc:
        raise StorageError(f"{state_dir} is incomplete: {exc.strerror}: {exc.filename}") from None
    public = cert.public_key()
    if not isinstance(public, Ed25519PublicKey):  # pragma: no cover - load_cert_pem checks
        raise StorageError("the DeviceID certificate does not hold an Ed25519 key")
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{db} cannot be opened: {exc}") from None
    try:
        conn.execute("BEGIN")  # one snapshot for everything below
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        if app_id != APPLICATION_ID:
            raise StorageError(f"{db} is not a TRE database")
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit_entries'").fetchone():
            raise AuditError(f"{db} has no audit log (made before this version)")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        secret = (state_dir / UDS_FILE).exists()
        state = AuditState(
            conn,
            public=public,
            ueid=bytes(meta.get("ueid", b"")),
            cert_pem=attestation.to_pem(cert).decode("ascii"),
            keys=_read_keys(state_dir, conn, meta) if secret else None,
            rollback=_rollback(state_dir, meta) if secret else None,
        )
        yield state
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{db} cannot be read as a TRE database: {exc}") from None
    finally:
        conn.close()


def verify_state(state_dir: Path, pinned: Path | None = None) -> Verification:
    """``tre audit verify``: the whole check of a state folder's audit log."""
    with open_audit_state(state_dir) as state:
        return state.verify(None if pinned is None else state.load_pinned(pinned))
