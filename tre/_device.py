"""A provisioned device: its state folder, identity, lifecycle and keystores (R3, R5, R6, R9).

A state folder holds::

    uds.bin      the 32-byte unique device secret (mode 0600; erased by terminate)
    device.pem   the DeviceID certificate, issued by the manufacturer CA
    ca.pem       the manufacturer CA certificate (the trust anchor)
    config.toml  the config the device was provisioned with (paths made absolute)
    counter.bin  the replay-protected counter (the RPMB stand-in, see _counter.py)
    tre.db       SQLite: lifecycle, installed domains, sealed keys, lifecycle events

Identities follow the Open Profile for DICE (see :mod:`attestation`): the DeviceID key is
derived from the device secret; the TRE's CDIs from the secret and the TRE's code; each
domain's CDIs from the TRE's and the domain's measurement. No domain ever sees a secret.
Every lifecycle transition goes through :meth:`Device.emit`: it is written to the
``events`` table and handed to every hook (the audit log of later work plugs in there).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import attestation

from ._config import TREConfig, load_config
from ._counter import MonotonicCounter
from ._counters import COUNTER_DIR, CounterBank
from ._errors import StorageError, Terminated
from ._factory import CA_NAME
from ._keyindex import KeyIndex
from ._keystore import DomainKeys
from ._lifecycle import DOMAIN_LIFECYCLE, TRE_LIFECYCLE, DomainLifecycle, TREState, check_move
from ._loader import DomainSpec
from ._measure import domain_code_hash, manifest_hash, tre_code_hash, unsigned_owner_hash
from ._runlock import state_lock
from ._store import AsyncStore, Store

__all__ = [
    "COUNTER_FILE",
    "DB_FILE",
    "INSERT_DOMAIN",
    "UDS_FILE",
    "Device",
    "DomainRecord",
    "EventHook",
    "TREEvent",
    "ca_authority",
    "counter_key",
    "key_index",
    "measure",
    "new_epoch",
    "read_domain_rows",
    "record_from_row",
]

log = logging.getLogger("tre.device")

UDS_FILE = "uds.bin"
DB_FILE = "tre.db"
COUNTER_FILE = "counter.bin"
#: Default per-domain keystore quotas (keys, bytes of sealed rows).
MAX_KEYS = 64
MAX_KEY_BYTES = 64 * 1024


@attrs.frozen
class TREEvent:
    """A lifecycle transition or tamper event, as handed to hooks."""

    time: float
    kind: str  # e.g. "provisioned", "boot", "tre_state", "domain_state", "tamper", "terminated"
    subject: str  # "tre" or a domain id
    detail: str = ""


EventHook = Callable[[TREEvent], None]


@attrs.frozen
class DomainRecord:
    """An installed domain as the device records it."""

    id: str
    source: str
    owner: str
    owner_key: bytes
    svn: int
    measurement: bytes
    state: DomainLifecycle
    #: the owner role recorded at install (raw keys, threshold); () when unsigned
    owner_keys: tuple[bytes, ...] = ()
    owner_threshold: int = 0
    #: release counter of the installed package (0: installed at the factory)
    counter: int = 0
    #: the installed package's envelope: the domain's integrity reference (None: factory)
    package: bytes | None = attrs.field(default=None, repr=False)
    #: random per install; replaced on remove and transfer (see attestation.domain_epoch_key)
    epoch: bytes = attrs.field(default=b"", repr=False)

    @property
    def role(self) -> attestation.Role | None:
        if not self.owner_keys:
            return None
        return attestation.Role(frozenset(self.owner_keys), self.owner_threshold)

    @property
    def owner_hash(self) -> bytes:
        if self.owner_key:
            return attestation.owner_key_hash(self.owner_key)
        return unsigned_owner_hash(self.owner)


_SELECT_DOMAINS = (
    "SELECT id, source, owner, owner_key, svn, measurement, state, "
    "owner_keys, owner_threshold, counter, package, epoch FROM domains"
)


def read_domain_rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(_SELECT_DOMAINS).fetchall()


def split_keys(blob: bytes) -> tuple[bytes, ...]:
    """Raw 32-byte public keys stored concatenated (an owner or root role in a row)."""
    return tuple(blob[i : i + 32] for i in range(0, len(blob), 32))


def record_from_row(row: tuple[Any, ...]) -> DomainRecord:
    keys = bytes(row[7])
    try:
        state = DomainLifecycle(row[6])
    except ValueError:
        raise StorageError(f"domain {row[0]!r} has an unknown lifecycle state") from None
    return DomainRecord(
        id=row[0],
        source=row[1],
        owner=row[2],
        owner_key=row[3],
        svn=row[4],
        measurement=row[5],
        state=state,
        owner_keys=split_keys(keys),
        owner_threshold=row[8],
        counter=row[9],
        package=row[10],
        epoch=row[11],
    )


def new_epoch() -> bytes:
    """A fresh install epoch (see :func:`attestation.domain_epoch_key`)."""
    return os.urandom(32)


#: INSERT of a factory-installed domain row: id, source, owner, owner_key, svn,
#: measurement, state, installed, owner_keys, owner_threshold, epoch.
INSERT_DOMAIN = (
    "INSERT INTO domains(id, source, owner, owner_key, svn, measurement, state, installed, "
    "owner_keys, owner_threshold, epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def measure(spec: DomainSpec, owner_hash: bytes) -> bytes:
    return attestation.measure_domain(
        domain_code_hash(spec), manifest_hash(spec), owner_hash, spec.manifest.svn
    )


def ca_authority(ca_cert: x509.Certificate) -> bytes:
    return attestation.authority_hash(
        ca_cert.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


# --- provisioning (runs at the factory, synchronously) ------------------------------------------


def key_index(uds: attestation.Secret) -> KeyIndex:
    """The authenticated index of key rows (see tre/_keyindex.py), keyed from the secret."""
    return KeyIndex(attestation.derive_key(uds, "keystore-index").reveal())


def counter_key(uds: attestation.Secret) -> bytes:
    return attestation.derive_key(uds, "rpmb-mac").reveal()


# --- a device at run time -----------------------------------------------------------------------


class Device:
    """An opened device (real or ephemeral). Kernel-side: never handed to a domain."""

    def __init__(
        self,
        *,
        state_dir: Path | None,
        uds: attestation.Secret,
        store: Store,
        config: TREConfig,
        device_cert: x509.Certificate,
        ca_cert: x509.Certificate,
        index: KeyIndex,
    ) -> None:
        self.state_dir = state_dir
        self.store = AsyncStore(store, inline=state_dir is None)
        self.config = config
        self.device_cert = device_cert
        self.ca_cert = ca_cert
        self.hooks: list[EventHook] = []
        self._uds = uds
        #: the store's commit hook too (one object: it carries a transaction's pending state)
        self.key_index = index
        self._device_key: Ed25519PrivateKey = attestation.device_id_key(uds)
        #: the domains' replay-protected counters (tre/_counters.py)
        self.counters = CounterBank(
            None if state_dir is None else Path(state_dir) / COUNTER_DIR,
            attestation.derive_key(uds, "domain-counters").reveal(),
        )
        meta = store.read(lambda c: dict(c.execute("SELECT key, value FROM meta").fetchall()))
        self.ueid: bytes = meta["ueid"]
        self.imei: str = meta.get("imei") or ""
        self.tre_state = TREState(meta["tre_state"])
        self.boot_count: int = int(meta["boot_count"])
        self.authority: bytes = meta["authority"]
        #: the TRE's own code package, once one was installed (``tre install`` of a "tre"
        #: package): the TRE's integrity reference instead of the manifest file
        self.tre_counter: int = int(meta.get("tre_counter") or 0)
        self.tre_package: bytes | None = meta.get("tre_package")
        keys = bytes(meta.get("tre_package_keys") or b"")
        self.tre_package_role: attestation.Role | None = (
            attestation.Role(
                frozenset(split_keys(keys)),
                int(meta.get("tre_package_threshold") or 0),
            )
            if keys
            else None
        )
        self._tre_measurement: bytes | None = None
        self._cdis: attestation.TreCdis | None = None
        self.records: dict[str, DomainRecord] = {
            row[0]: record_from_row(row) for row in store.read(read_domain_rows)
        }

    @property
    def tre_measurement(self) -> bytes:
        """The measurement of the TRE's own code (every file of tre, ipc and attestation),
        taken on first use: an offline operation that derives no key never reads the code."""
        if self._tre_measurement is None:
            self._tre_measurement = tre_code_hash()
        return self._tre_measurement

    @property
    def cdis(self) -> attestation.TreCdis:
        """The TRE's CDIs (from the device secret and :attr:`tre_measurement`)."""
        if self._cdis is None:
            self._cdis = attestation.tre_cdis(self._uds, self.tre_measurement, self.authority)
        return self._cdis

    def derive_key(self, purpose: str) -> bytes:
        """A kernel-side key of the device for one ``purpose`` (from the device secret:
        stable across boots, different on every device)."""
        return attestation.derive_key(self._uds, purpose).reveal()

    @property
    def device_key(self) -> Ed25519PrivateKey:
        """The DeviceID private key (kernel-side only: signs evidence and alias certs)."""
        return self._device_key

    def __repr__(self) -> str:
        where = "ephemeral" if self.state_dir is None else str(self.state_dir)
        return f"<Device {self.ueid.hex()[:12]}... {self.tre_state.value} ({where})>"

    # --- opening --------------------------------------------------------------------------

    @classmethod
    def open_sync(cls, state_dir: Path) -> Device:
        state_dir = Path(state_dir)
        db = state_dir / DB_FILE
        if not db.exists():
            raise StorageError(f"{state_dir} is not a provisioned TRE state (no {DB_FILE})")
        uds_path = state_dir / UDS_FILE
        if not uds_path.exists():
            state = _peek_state(db)
            if state == TREState.TERMINATED.value:
                raise Terminated(f"the device in {state_dir} has been terminated")
            raise StorageError(f"{state_dir} has lost its device secret")
        uds = uds_path.read_bytes()
        if len(uds) != attestation.UDS_SIZE:
            raise StorageError(f"{uds_path} is not a device secret")
        secret = attestation.Secret(uds)
        counter = MonotonicCounter(state_dir / COUNTER_FILE, counter_key(secret))
        index = key_index(secret)
        store = Store.open(db, counter, index)
        try:
            config = load_config(state_dir / "config.toml")
            device_cert = attestation.load_cert_pem((state_dir / "device.pem").read_bytes())
            ca_cert = attestation.load_cert_pem((state_dir / "ca.pem").read_bytes())
        except OSError as exc:
            store.close()
            raise StorageError(
                f"{state_dir} is incomplete: {exc.strerror}: {exc.filename}"
            ) from None
        try:
            device = cls(
                state_dir=state_dir,
                uds=secret,
                store=store,
                config=config,
                device_cert=device_cert,
                ca_cert=ca_cert,
                index=index,
            )
        except BaseException:
            store.close()
            raise
        if device.tre_state is TREState.TERMINATED:
            # A terminate was interrupted after its transaction: the secret is still here.
            store.close()
            raise Terminated(f"the device in {state_dir} has been terminated")
        return device

    @classmethod
    @contextlib.contextmanager
    def offline(cls, state_dir: Path, what: str) -> Iterator[Device]:
        """The device in ``state_dir`` for an offline operation (``what``, e.g. "install"):
        under the state's lock (:class:`StateBusy` while a TRE runs on it), closed after."""
        with state_lock(Path(state_dir), what):
            device = cls.open_sync(Path(state_dir))
            try:
                yield device
            finally:
                device.store.sync.close()
                device.counters.close()

    @classmethod
    async def open(cls, state_dir: Path) -> Device:
        return await trio.to_thread.run_sync(cls.open_sync, Path(state_dir))

    @classmethod
    def ephemeral(cls, config: TREConfig, specs: list[DomainSpec]) -> Device:
        """A throw-away device in memory (random secret, its own CA): what an unprovisioned
        ``open_tre`` runs on, so domains always have a keystore."""
        now = dt.datetime.now(dt.UTC)
        uds = attestation.Secret(os.urandom(attestation.UDS_SIZE))
        ca_key, ca_cert = attestation.make_ca(f"{CA_NAME} (ephemeral)", now)
        ueid = attestation.random_ueid(os.urandom(32))
        cert = attestation.issue_device_cert(
            ca_key, ca_cert, attestation.device_id_key(uds).public_key(), ueid, now
        )
        index = key_index(uds)
        store = Store.create(None, None, index)
        stamp = time.time()

        def write(conn: sqlite3.Connection) -> None:
            meta = {
                "ueid": ueid,
                "imei": "",
                "tre_state": TREState.SECURED.value,
                "boot_count": 0,
                "authority": ca_authority(ca_cert),
                "provisioned": stamp,
            }
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", meta.items())
            for spec in specs:
                owner_hash = unsigned_owner_hash(spec.manifest.owner)
                conn.execute(
                    INSERT_DOMAIN,
                    (
                        spec.id,
                        f"plugin:{spec.id}",
                        spec.manifest.owner,
                        b"",
                        spec.manifest.svn,
                        measure(spec, owner_hash),
                        DomainLifecycle.INSTALLED.value,
                        stamp,
                        b"",
                        0,
                        new_epoch(),
                    ),
                )

        store.write(write)
        return cls(
            state_dir=None,
            uds=uds,
            store=store,
            config=config,
            device_cert=cert,
            ca_cert=ca_cert,
            index=index,
        )

    async def close(self) -> None:
        await self.store.call(self.store.sync.close)
        self.counters.close()

    # --- events and lifecycle -------------------------------------------------------------------

    def emit(self, event: TREEvent) -> None:
        """Hand ``event`` to every hook (the row itself is written by the caller's
        transaction, before). A hook that raises is logged and skipped: an event consumer
        can never stop a lifecycle transition."""
        for hook in list(self.hooks):
            try:
                hook(event)
            except Exception:
                log.exception("an event hook failed on %s %s", event.kind, event.subject)

    def set_record_state(self, domain_id: str, state: DomainLifecycle) -> None:
        """Update the in-memory record after a transition written elsewhere."""
        self.records[domain_id] = attrs.evolve(self.records[domain_id], state=state)

    async def _transition(
        self, kind: str, subject: str, detail: str, change: Callable[[sqlite3.Connection], None]
    ) -> None:
        stamp = time.time()

        def write(conn: sqlite3.Connection) -> None:
            change(conn)
            conn.execute(
                "INSERT INTO events(time, kind, domain, detail) VALUES (?, ?, ?, ?)",
                (stamp, kind, subject, detail),
            )

        await self.store.write(write)
        self.emit(TREEvent(stamp, kind, subject, detail))

    async def boot(self) -> int:
        """Count a boot. Refuses a terminated device."""
        if self.tre_state is TREState.TERMINATED:
            raise Terminated("the device has been terminated")

        def bump(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'boot_count'")

        await self._transition("boot", "tre", f"boot {self.boot_count + 1}", bump)
        self.boot_count += 1
        return self.boot_count

    async def set_domain_state(self, domain_id: str, new: DomainLifecycle, reason: str) -> None:
        record = self.records[domain_id]
        if record.state is new:
            return
        check_move(DOMAIN_LIFECYCLE, f"domain {domain_id!r}", record.state, new)

        def change(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE domains SET state = ? WHERE id = ?", (new.value, domain_id))

        await self._transition(
            "domain_state", domain_id, f"{record.state.value} -> {new.value}: {reason}", change
        )
        self.records[domain_id] = attrs.evolve(record, state=new)

    async def activate(self, domain_ids: list[str]) -> None:
        """Move freshly installed domains to ACTIVE at their first boot (one transaction)."""
        fresh = [
            i
            for i in domain_ids
            if i in self.records and self.records[i].state is DomainLifecycle.INSTALLED
        ]
        if not fresh:
            return
        stamp = time.time()

        def change(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE domains SET state = 'active' WHERE id = ?", [(i,) for i in fresh]
            )
            conn.executemany(
                "INSERT INTO events(time, kind, domain, detail) VALUES (?, 'domain_state', ?, ?)",
                [(stamp, i, "installed -> active: first boot") for i in fresh],
            )

        await self.store.write(change)
        for i in fresh:
            self.records[i] = attrs.evolve(self.records[i], state=DomainLifecycle.ACTIVE)
            self.emit(TREEvent(stamp, "domain_state", i, "installed -> active: first boot"))

    async def set_tre_state(self, new: TREState, reason: str) -> None:
        if self.tre_state is new:
            return
        check_move(TRE_LIFECYCLE, "the TRE", self.tre_state, new)

        def change(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'tre_state'", (new.value,))

        await self._transition(
            "tre_state", "tre", f"{self.tre_state.value} -> {new.value}: {reason}", change
        )
        self.tre_state = new

    async def reload_lifecycle(self) -> tuple[TREState, dict[str, DomainLifecycle]]:
        """Read the persistent lifecycle again (another process, e.g. ``tre tamper``,
        may have changed it)."""

        def read(conn: sqlite3.Connection) -> tuple[str, list[tuple[str, str]]]:
            (state,) = conn.execute("SELECT value FROM meta WHERE key = 'tre_state'").fetchone()
            return state, conn.execute("SELECT id, state FROM domains").fetchall()

        state, rows = await self.store.read(read)
        try:
            return TREState(state), {i: DomainLifecycle(s) for i, s in rows}
        except ValueError:
            raise StorageError("the lifecycle table holds an unknown state") from None

    # --- keys -------------------------------------------------------------------------------------

    def alias_certificate(self, keys: DomainKeys) -> x509.Certificate:
        """The domain's alias certificate, issued by the DeviceID key (DICE layering): it
        names the domain and carries its measurement, owner hash and svn (TCG TcbInfo)."""
        alias, measurement, owner_hash = keys.identity()
        return attestation.issue_alias_cert(
            self._device_key,
            self.device_cert,
            alias.public_key(),
            keys.domain_id,
            measurement,
            owner_hash,
            keys.svn,
            dt.datetime.now(dt.UTC),
        )

    def domain_keys(self, spec: DomainSpec, record: DomainRecord | None = None) -> DomainKeys:
        """Derive a domain's keys from its *current* code (a changed domain gets a different
        measurement, so MEASUREMENT-sealed data of the old code stays closed), its owner and
        its install epoch as ``record`` (default: the installed record) says."""
        record = record if record is not None else self.records.get(spec.id)
        owner_hash = record.owner_hash if record else unsigned_owner_hash(spec.manifest.owner)
        return DomainKeys(
            spec.id,
            self.cdis,
            lambda: measure(spec, owner_hash),
            owner_hash,
            spec.manifest.svn,
            self.store,
            self.key_index,
            max_keys=spec.manifest.quotas.max_keys,
            max_bytes=spec.manifest.quotas.max_key_bytes,
            owner_key=record.owner_key if record else b"",
            ueid=self.ueid,
            epoch=record.epoch if record else b"",
            counters=self.counters,
        )


def _peek_state(db: Path) -> str | None:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'tre_state'").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None
    return None if row is None else str(row[0])
