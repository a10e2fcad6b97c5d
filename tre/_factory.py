"""The factory: the out-of-band facility where devices get their keys (R5).

``tre factory init --factory DIR`` makes what a manufacturer keeps offline:

    DIR/ca.pem, DIR/ca.key            the manufacturer CA (Ed25519, self-signed)
    DIR/owners/<domain>.key / .pub    one owner key pair per reference domain, with which
                                      later work signs that owner's packages

Private keys are written 0600 and never printed.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import attestation

from ._config import REFERENCE_DOMAINS
from ._errors import ProvisioningError

__all__ = ["Factory", "factory_init", "load_factory", "write_secret_file"]

CA_NAME = "Acme Devices Manufacturer CA"


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (refusing to overwrite) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


@attrs.frozen(repr=False)
class Factory:
    """What provisioning needs from the factory (loaded from its folder)."""

    path: Path
    ca_key: Ed25519PrivateKey
    ca_cert: x509.Certificate
    #: domain id -> raw Ed25519 owner public key
    owners: dict[str, bytes]

    def __repr__(self) -> str:
        return f"Factory({str(self.path)!r}, owners={sorted(self.owners)})"


def factory_init(folder: Path, domains: tuple[str, ...] = REFERENCE_DOMAINS) -> Factory:
    """Create a manufacturer CA and owner keys in ``folder``. Refuses an existing CA."""
    folder = Path(folder)
    if (folder / "ca.key").exists() or (folder / "ca.pem").exists():
        raise ProvisioningError(f"{folder} already holds a manufacturer CA")
    (folder / "owners").mkdir(parents=True, exist_ok=True, mode=0o700)
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = attestation.make_ca(CA_NAME, now)
    write_secret_file(folder / "ca.key", attestation.private_key_pem(ca_key))
    (folder / "ca.pem").write_bytes(attestation.to_pem(ca_cert))
    owners: dict[str, bytes] = {}
    for domain in domains:
        key = Ed25519PrivateKey.generate()
        write_secret_file(folder / "owners" / f"{domain}.key", attestation.private_key_pem(key))
        public = key.public_key()
        (folder / "owners" / f"{domain}.pub").write_bytes(
            public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
        owners[domain] = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return Factory(folder, ca_key, ca_cert, owners)


def load_factory(folder: Path) -> Factory:
    """Read a factory folder made by :func:`factory_init`."""
    folder = Path(folder)
    try:
        ca_key = attestation.load_private_key_pem((folder / "ca.key").read_bytes())
        ca_cert = attestation.load_cert_pem((folder / "ca.pem").read_bytes())
    except OSError as exc:
        raise ProvisioningError(
            f"{folder} is not a factory folder ({exc.strerror}: {exc.filename}); "
            "create one with 'tre factory init'"
        ) from None
    owners: dict[str, bytes] = {}
    owner_dir = folder / "owners"
    if owner_dir.is_dir():
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        for pub in sorted(owner_dir.glob("*.pub")):
            try:
                key = load_pem_public_key(pub.read_bytes())
                owners[pub.stem] = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
            except (ValueError, TypeError):
                raise ProvisioningError(f"{pub} is not an Ed25519 public key") from None
    return Factory(folder, ca_key, ca_cert, owners)
