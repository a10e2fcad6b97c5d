"""The TUF-style root role on the device and at the factory (TUF specification 1.0.x,
sections 5.2 and 5.3).

A device keeps one root: ``meta['root']`` in ``tre.db``, the exact envelope bytes that
provisioning verified with :func:`attestation.trusted_root`. It names the TRE root role
(k-of-n Ed25519 keys, held by the manufacturer) and the owner role it delegates per domain;
packages are verified against it. The trust decisions are pure functions
(attestation/_update.py); this module reads and writes the state and the factory folder:

- :func:`load_root`: the stored root, from an open connection;
- :func:`read_root`: the same from a state folder, read-only and without the device secret
  (``tre root show``);
- :func:`rotate_state`: ``tre root rotate``, offline. The new root must be signed by a
  threshold of the current root's keys *and* a threshold of its own (distinct keys each),
  be version N+1 exactly and not be expired (:func:`attestation.rotate_root`). The check
  and the update are one transaction, so a refused root changes nothing;
- :func:`new_root`: ``tre root new`` at the factory, root N+1 from root N (the factory's
  highest-numbered ``root/<N>.cbor``): other keys or threshold, owners added, re-delegated
  or dropped, signed by a threshold of the old keys and a threshold of the new ones.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import attestation

from ._device import DB_FILE, Device
from ._errors import ProvisioningError, StorageError
from ._factory import (
    DAY,
    ROOT_VALIDITY_DAYS,
    check_root_role,
    load_factory,
    load_root_keys,
    write_new_file,
    write_secret_file,
)
from ._store import APPLICATION_ID

__all__ = [
    "MAX_EXPIRES_DAYS",
    "load_root",
    "new_root",
    "read_root",
    "rotate_state",
    "stored_root",
]

#: The longest validity ``tre root new`` gives a root, in days (100 years).
MAX_EXPIRES_DAYS = 36500.0
_NO_OWNERS: Mapping[str, bytes] = MappingProxyType({})


def _raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


# --- the device's root --------------------------------------------------------------------


def stored_root(value: object) -> attestation.Root:
    """The root in a ``meta['root']`` value; :class:`StorageError` if it is not a root
    signed by a threshold of its own keys (the database was damaged or altered)."""
    if not isinstance(value, bytes):
        raise StorageError("the stored root of trust is not a root envelope")
    try:
        return attestation.trusted_root(value)
    except attestation.UpdateError as exc:
        raise StorageError(f"the stored root of trust is unusable: {exc.message}") from None


def load_root(conn: sqlite3.Connection) -> attestation.Root:
    """The device's root, read in ``conn`` (inside a transaction, the one the caller is
    in). :class:`StorageError` if there is none (a state provisioned before the root role)
    or it does not verify."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'root'").fetchone()
    if row is None:
        raise StorageError(
            "the device has no root of trust (provisioned before the root role); "
            "provision it again from a factory made by 'tre factory init'"
        )
    return stored_root(row[0])


def read_root(state_dir: Path) -> attestation.Root:
    """:func:`load_root` from a state folder, read-only and without the device secret."""
    db = Path(state_dir) / DB_FILE
    if not db.is_file():
        raise StorageError(f"{state_dir} is not a provisioned TRE state (no {DB_FILE})")
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            (app_id,) = conn.execute("PRAGMA application_id").fetchone()
            if app_id != APPLICATION_ID:
                raise StorageError(f"{db} is not a TRE database")
            return load_root(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{db} cannot be read as a TRE database: {exc}") from None


def rotate_state(state_dir: Path, envelope: bytes, now: int) -> attestation.Root:
    """Rotate the device in ``state_dir`` to the root in ``envelope``, at reference time
    ``now`` (unix seconds), offline (a TRE running on the same state meanwhile is fine:
    SQLite serialises the transactions). One transaction reads the current root, decides
    with :func:`attestation.rotate_root`, stores the new root and records a
    ``root_rotated`` event; a refused root raises its :class:`attestation.UpdateError`
    out of the transaction, which rolls back: nothing changes."""
    device = Device.open_sync(Path(state_dir))
    try:

        def write(conn: sqlite3.Connection) -> attestation.Root:
            current = load_root(conn)
            new = attestation.rotate_root(current, envelope, now)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'root'", (new.envelope,))
            conn.execute(
                "INSERT INTO events(time, kind, domain, detail) "
                "VALUES (?, 'root_rotated', 'tre', ?)",
                (time.time(), f"v{current.version} -> v{new.version}"),
            )
            return new

        return device.store.sync.write(write)
    finally:
        device.store.sync.close()


# --- the factory's next root --------------------------------------------------------------


def _check_owner(domain: str, raw: object) -> Ed25519PublicKey:
    try:
        attestation.check_domain_id(domain)
    except attestation.InvalidIdentity as exc:
        raise ProvisioningError(f"owner {domain!r}: {exc.message}") from None
    if not isinstance(raw, bytes) or len(raw) != 32:
        raise ProvisioningError(f"owner {domain!r}: a key must be 32 raw Ed25519 bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ProvisioningError(f"owner {domain!r}: not an Ed25519 public key") from None


def _signers(
    role: attestation.Role, available: Iterable[bytes], prefer: list[bytes], what: str
) -> list[bytes]:
    """A threshold of ``role``'s keys among ``available``, those in ``prefer`` first."""
    usable = [raw for raw in available if raw in role.keys]
    chosen = [raw for raw in prefer if raw in role.keys][: role.threshold]
    for raw in usable:
        if len(chosen) >= role.threshold:
            break
        if raw not in chosen:
            chosen.append(raw)
    if len(chosen) < role.threshold:
        raise ProvisioningError(
            f"the factory holds {len(usable)} of the {role.threshold} keys of {what} "
            "needed to sign the new root"
        )
    return chosen


def _retire(path: Path, version: int) -> None:
    """Rename an owner public key the new root no longer delegates (kept, never deleted)."""
    if path.exists():
        path.rename(path.with_name(f"{path.name}.retired-v{version}"))


def new_root(
    factory_dir: Path,
    *,
    add_owners: Mapping[str, bytes] = _NO_OWNERS,
    drop_owners: Iterable[str] = (),
    new_keys: int | None = None,
    threshold: int | None = None,
    expires_days: float = ROOT_VALIDITY_DAYS,
) -> Path:
    """Make root N+1 from the factory's current root N and write it to
    ``root/<N+1>.cbor`` (never overwriting); returns that path.

    Keys and threshold stay unless ``new_keys`` (fresh keys, written to
    ``root/keys/root-v<N+1>-<i>.key``; the new root has exactly those) or ``threshold`` is
    given. Owners: the current ones, plus ``add_owners`` (domain id -> raw Ed25519 public
    key, 1-of-1; an existing id is re-delegated to the new key), minus ``drop_owners``.
    Signed by a threshold of root N's keys and a threshold of the new keys (TUF 5.3.4),
    and checked with :func:`attestation.rotate_root` before anything is written. The
    factory's ``owners/`` folder then follows the root, for provisioning and later tools:
    each added owner's public key is written to ``owners/<id>.pub``, a dropped owner's
    ``.pub`` is renamed ``<id>.pub.retired-v<N+1>``. Private owner keys are left alone (a
    re-delegated domain's previous owner still signs its transfer)."""
    factory = load_factory(Path(factory_dir))
    current = attestation.trusted_root(factory.root)  # load_factory verified it
    version = current.version + 1
    target = factory.root_dir / f"{version}.cbor"
    if target.exists():
        raise ProvisioningError(f"{target} already exists")
    if not (math.isfinite(expires_days) and 0 < expires_days <= MAX_EXPIRES_DAYS):
        raise ProvisioningError(f"a root's validity must be 0..{MAX_EXPIRES_DAYS:g} days")
    now = time.time()
    expires = int(now + expires_days * DAY)

    # Owners: current + added (re-delegated) - dropped.
    drop = list(dict.fromkeys(drop_owners))
    owners: dict[str, tuple[list[Ed25519PublicKey], int]] = {
        domain: ([Ed25519PublicKey.from_public_bytes(k) for k in sorted(role.keys)], role.threshold)
        for domain, role in current.owners.items()
    }
    for domain in drop:
        if domain in add_owners:
            raise ProvisioningError(f"owner {domain!r} is both added and dropped")
        if domain not in owners:
            raise ProvisioningError(f"root v{current.version} delegates no owner {domain!r}")
        del owners[domain]
    for domain, raw in add_owners.items():
        owners[domain] = ([_check_owner(domain, raw)], 1)

    # Keys: the current ones, or fresh ones.
    available = load_root_keys(factory.path)
    fresh: list[Ed25519PrivateKey] = []
    key_files: list[Path] = []
    if new_keys is None:
        keys = sorted(current.role.keys)
    else:
        check_root_role(new_keys, 1)
        fresh = [Ed25519PrivateKey.generate() for _ in range(new_keys)]
        keys = [_raw(k) for k in fresh]
        key_files = [
            factory.root_dir / "keys" / f"root-v{version}-{i}.key" for i in range(1, new_keys + 1)
        ]
        for path in key_files:
            if path.exists():
                raise ProvisioningError(f"{path} already exists")
    new_threshold = current.role.threshold if threshold is None else threshold
    check_root_role(len(keys), new_threshold)
    new_role = attestation.Role(frozenset(keys), new_threshold)
    private = {**available, **{_raw(k): k for k in fresh}}

    old = _signers(current.role, available, [], f"root v{current.version}")
    new = _signers(new_role, [_raw(k) for k in fresh] or available, old, f"root v{version}")
    envelope = attestation.make_root(
        version=version,
        expires=expires,
        keys=[Ed25519PublicKey.from_public_bytes(k) for k in keys],
        threshold=new_threshold,
        owners=owners,
        signers=[private[raw] for raw in dict.fromkeys([*old, *new])],
    )
    try:
        attestation.rotate_root(current, envelope, int(now))
    except attestation.UpdateError as exc:
        raise ProvisioningError(f"root v{version} would be refused: {exc.message}") from None

    # Write: the new keys, the root, then the owner public keys for later tools. A failure
    # before the root is written removes the keys this call wrote (else they would block
    # every retry, and keys of a root that never existed would linger).
    written: list[Path] = []
    try:
        for path, key in zip(key_files, fresh, strict=True):
            write_secret_file(path, attestation.private_key_pem(key))
            written.append(path)
        write_new_file(target, envelope)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    owner_dir = factory.path / "owners"
    owner_dir.mkdir(mode=0o700, exist_ok=True)
    for domain in drop:
        _retire(owner_dir / f"{domain}.pub", version)
    for domain, raw in add_owners.items():
        pub = owner_dir / f"{domain}.pub"
        tmp = pub.with_name(pub.name + ".tmp")
        tmp.write_bytes(
            Ed25519PublicKey.from_public_bytes(raw).public_bytes(
                Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
            )
        )
        tmp.replace(pub)
    return target
