"""``tre integrity seal``: sign the integrity manifests of a device (at the factory).

The TRE's manifest is signed with the manufacturer CA key; each domain's with its owner's
key from the factory (``owners/<id>.key``), or the manufacturer's for a domain installed
without an owner key. Provisioning runs this; run it again after an authorised update.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import attestation

from ._config import load_config
from ._device import DB_FILE, read_domain_rows, record_from_row
from ._errors import ProvisioningError
from ._factory import Factory, load_factory
from ._installed import device_specs
from ._integrity import TRE_SCOPE, IntegrityError, measure_scope, write_manifest
from ._loader import DomainSpec

__all__ = ["domain_verify_keys", "seal_integrity", "seal_state"]


def seal_integrity(
    state_dir: Path,
    factory: Factory,
    specs: list[DomainSpec],
    roots: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """Measure the TRE's code and each domain's, and write the signed manifests."""
    tre_files = measure_scope(TRE_SCOPE, None, roots)
    write_manifest(state_dir, TRE_SCOPE, tre_files, factory.ca_key)
    signed: dict[str, str] = {}
    for spec in specs:
        owner_key_file = factory.path / "owners" / f"{spec.id}.key"
        if spec.id in factory.owners and owner_key_file.exists():
            key = attestation.load_private_key_pem(owner_key_file.read_bytes())
            signed[spec.id] = "owner"
        else:
            key = factory.ca_key
            signed[spec.id] = "manufacturer"
        write_manifest(state_dir, spec.id, measure_scope(spec.id, spec, None), key)
    return {"tre_files": len(tre_files), "domains": signed}


def seal_state(
    state_dir: Path, factory_dir: Path, roots: Mapping[str, Path] | None = None
) -> dict[str, Any]:
    """Seal the manifests of an existing device from its stored config."""
    state_dir = Path(state_dir)
    if not (state_dir / DB_FILE).is_file():
        raise ProvisioningError(f"{state_dir} is not a provisioned TRE state")
    factory = load_factory(Path(factory_dir))
    conn = sqlite3.connect(f"file:{state_dir / DB_FILE}?mode=ro", uri=True)
    try:
        records = {r[0]: record_from_row(r) for r in read_domain_rows(conn)}
    except sqlite3.DatabaseError as exc:
        raise ProvisioningError(f"cannot read the installed domains: {exc}") from None
    finally:
        conn.close()
    specs = device_specs(state_dir, load_config(state_dir / "config.toml"), records)
    # A domain installed from a package has the package as its reference (tre/_installed.py):
    # no manifest file is signed for it.
    factory_domains = [
        s for s in specs if records.get(s.id) is None or records[s.id].package is None
    ]
    return seal_integrity(state_dir, factory, factory_domains, roots)


def domain_verify_keys(state_dir: Path, ca_public: Ed25519PublicKey) -> dict[str, Ed25519PublicKey]:
    """The key that must have signed each installed domain's manifest."""
    conn = sqlite3.connect(f"file:{Path(state_dir) / DB_FILE}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, owner_key FROM domains").fetchall()
    except sqlite3.DatabaseError as exc:
        raise IntegrityError(f"cannot read the installed domains: {exc}") from None
    finally:
        conn.close()
    return {
        domain_id: Ed25519PublicKey.from_public_bytes(owner_key) if owner_key else ca_public
        for domain_id, owner_key in rows
    }
