"""Provisioning at the factory (R5): a device secret, a DeviceID certificate, domains.

Runs synchronously (it is a factory step, not part of a running TRE). A folder that already
holds a device is refused; a failed provisioning removes exactly what it created, so it can
simply be retried and never touches anything else in the folder.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import attestation

from ._config import TREConfig, config_to_toml, default_config
from ._counter import MonotonicCounter
from ._device import (
    COUNTER_FILE,
    DB_FILE,
    INSERT_DOMAIN,
    UDS_FILE,
    ca_authority,
    counter_key,
    key_index,
    measure,
    new_epoch,
)
from ._errors import ProvisioningError
from ._factory import Factory, load_factory, write_secret_file
from ._integrity_seal import seal_integrity
from ._lifecycle import DomainLifecycle, TREState
from ._loader import DomainSpec, resolve
from ._measure import unsigned_owner_hash
from ._runlock import LOCK_FILE, state_lock
from ._store import Store
from ._users import Users, check_name, check_password, users_key

__all__ = ["provision"]

#: Every file provisioning writes into the state folder.
STATE_FILES = (UDS_FILE, DB_FILE, COUNTER_FILE, "device.pem", "ca.pem", "config.toml")


def _source(spec: DomainSpec, config: TREConfig) -> str:
    folder = spec.manifest.directory
    if spec.id in config.enable or (folder is not None and folder not in config.paths):
        return f"plugin:{spec.id}"
    return f"path:{folder}"


def provision(
    state_dir: Path,
    factory_dir: Path,
    *,
    imei: str | None = None,
    config: TREConfig | None = None,
    admin: str | None = None,
    admin_password: str | None = None,
) -> dict[str, Any]:
    """Create a device in ``state_dir`` (which must not hold one yet) from the factory's CA
    and owner keys; install the config's domains; move the TRE to SECURED. With ``admin``
    (and its ``admin_password``), also create the first user, of role admin."""
    state_dir = Path(state_dir)
    if (admin is None) != (admin_password is None):
        raise ProvisioningError("an admin needs a password, and a password an admin")
    if admin is not None:
        check_name(admin)
        check_password(admin_password)
    if state_dir.exists() and not state_dir.is_dir():
        raise ProvisioningError(f"{state_dir} exists and is not a folder")
    _refuse_a_device(state_dir)
    factory = load_factory(Path(factory_dir))
    config = config or default_config()
    specs = resolve(config)
    if imei is not None:
        attestation.check_imei(imei)
    config_text = config_to_toml(config)  # fails before anything is written
    made_folder = not state_dir.exists()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_file = state_dir / LOCK_FILE
    made_lock = not lock_file.exists()
    # Under the state's lock, and checked again under it: two provisionings of one folder
    # cannot interleave (the second would otherwise clean up the first one's files).
    with state_lock(state_dir, "provision"):
        own_config = state_dir / "config.toml"
        kept = own_config.read_bytes() if own_config.exists() else None
        created: list[Path] = []
        try:
            _refuse_a_device(state_dir)
            first = None if admin is None or admin_password is None else (admin, admin_password)
            return _provision(state_dir, factory, specs, config, config_text, imei, created, first)
        except BaseException:
            # Remove exactly what this attempt created; a config.toml the user had put there
            # (and passed as --config) gets its own bytes back.
            for path in created:
                if path.is_dir():
                    shutil.rmtree(path)
                    continue
                for suffix in ("", "-wal", "-shm"):
                    Path(str(path) + suffix).unlink(missing_ok=True)
            if kept is not None:
                own_config.write_bytes(kept)
            if made_lock:
                lock_file.unlink(missing_ok=True)  # (our descriptor keeps the lock meanwhile)
            if made_folder and not any(state_dir.iterdir()):
                state_dir.rmdir()
            raise


def _refuse_a_device(state_dir: Path) -> None:
    present = [name for name in STATE_FILES if (state_dir / name).exists()]
    if {UDS_FILE, DB_FILE} & set(present):
        raise ProvisioningError(f"{state_dir} is already provisioned")
    if set(present) - {"config.toml"}:
        raise ProvisioningError(
            f"{state_dir} holds leftovers of a device ({', '.join(sorted(present))}); "
            "use an empty folder"
        )


def _provision(
    state_dir: Path,
    factory: Factory,
    specs: list[DomainSpec],
    config: TREConfig,
    config_text: str,
    imei: str | None,
    created: list[Path],
    admin: tuple[str, str] | None = None,
) -> dict[str, Any]:
    def target(name: str) -> Path:
        """A file this attempt writes (nothing is there: checked under the lock)."""
        path = state_dir / name
        created.append(path)
        return path

    now = dt.datetime.now(dt.UTC)
    uds = os.urandom(attestation.UDS_SIZE)
    write_secret_file(state_dir / UDS_FILE, uds)  # exclusive: recorded once it is ours
    created.append(state_dir / UDS_FILE)
    secret = attestation.Secret(uds)
    ueid = attestation.ueid_from_imei(imei) if imei else attestation.random_ueid(os.urandom(32))
    device_key = attestation.device_id_key(secret)
    cert = attestation.issue_device_cert(
        factory.ca_key, factory.ca_cert, device_key.public_key(), ueid, now, imei=imei
    )
    target("device.pem").write_bytes(attestation.to_pem(cert))
    target("ca.pem").write_bytes(attestation.to_pem(factory.ca_cert))
    target("config.toml").write_text(config_text, encoding="utf-8")
    counter = MonotonicCounter(target(COUNTER_FILE), counter_key(secret))
    counter.create()
    store = Store.create(target(DB_FILE), counter, key_index(secret))
    stamp = time.time()
    records = []
    for spec in specs:
        owner_key = factory.owners.get(spec.id, b"")
        owner_hash = (
            attestation.owner_key_hash(owner_key)
            if owner_key
            else unsigned_owner_hash(spec.manifest.owner)
        )
        records.append(
            (
                spec.id,
                _source(spec, config),
                spec.manifest.owner,
                owner_key,
                spec.manifest.svn,
                measure(spec, owner_hash),
                DomainLifecycle.INSTALLED.value,
                stamp,
                owner_key,
                1 if owner_key else 0,
                new_epoch(),
            )
        )

    def write(conn: sqlite3.Connection) -> None:
        meta = {
            "ueid": ueid,
            "imei": imei or "",
            "tre_state": TREState.SECURED.value,
            "boot_count": 0,
            "authority": ca_authority(factory.ca_cert),
            "provisioned": stamp,
            # the root of trust for updates (load_factory verified it before anything was
            # written; stored as the exact verified bytes) and the TRE package counter
            "root": attestation.trusted_root(factory.root).envelope,
            "tre_counter": 0,
        }
        conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", meta.items())
        conn.executemany(INSERT_DOMAIN, records)
        conn.execute(
            "INSERT INTO events(time, kind, domain, detail) VALUES (?, 'provisioned', 'tre', ?)",
            (stamp, f"ueid {ueid.hex()}, {len(records)} domains"),
        )

    try:
        store.write(write)
        if admin is not None:  # the first user, in its own transaction
            Users(store, users_key(secret)).add(admin[0], "admin", admin[1])
    finally:
        store.close()
    if not (state_dir / "integrity").exists():
        created.append(state_dir / "integrity")  # before: a failed seal leaves nothing
    sealed = seal_integrity(state_dir, factory, specs)
    result: dict[str, Any] = {
        "ueid": ueid.hex(),
        "imei": imei,
        "domains": [r[0] for r in records],
        "integrity": sealed,
    }
    if admin is not None:
        result["admin"] = admin[0]
    return result
