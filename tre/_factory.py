"""The factory: the out-of-band facility where devices get their keys (R5).

``tre factory init --factory DIR`` makes what a manufacturer keeps offline:

    DIR/ca.pem, DIR/ca.key            the manufacturer CA (Ed25519, self-signed)
    DIR/owners/<domain>.key / .pub    one owner key pair per reference domain, with which
                                      later work signs that owner's packages
    DIR/root/keys/root-<i>.key        the N root keys (Ed25519) of the TUF-style root role
    DIR/root/1.cbor                   root v1: those N keys, a threshold K (default 2 of
                                      3), the owner keys delegated per domain, signed by K
                                      root keys (attestation.make_root)

Later roots (``tre root new``, tre/_root.py) are ``DIR/root/<N>.cbor``; the factory's
current root is the highest-numbered one, and provisioning gives it to each new device.
Private keys are written 0600 and never printed.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import attestation

from ._config import REFERENCE_DOMAINS
from ._errors import ProvisioningError

__all__ = [
    "MAX_ROOT_KEYS",
    "ROOT_VALIDITY_DAYS",
    "Factory",
    "check_root_role",
    "factory_init",
    "load_factory",
    "load_root_keys",
    "root_files",
    "write_new_file",
    "write_secret_file",
]

CA_NAME = "Acme Devices Manufacturer CA"
#: Most keys a root role may have (the CLI's bound; attestation allows more).
MAX_ROOT_KEYS = 16
#: Validity of a new root, in days.
ROOT_VALIDITY_DAYS = 3650
DAY = 86400


def write_new_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Create ``path`` with ``mode`` (refusing to overwrite) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (refusing to overwrite) and fsync it."""
    write_new_file(path, data, 0o600)


def check_root_role(keys: int, threshold: int) -> None:
    """A root role of ``threshold``-of-``keys``: 1 <= threshold <= keys <= 16."""
    if not 1 <= keys <= MAX_ROOT_KEYS:
        raise ProvisioningError(f"a root needs 1..{MAX_ROOT_KEYS} keys, not {keys}")
    if not 1 <= threshold <= keys:
        raise ProvisioningError(f"a root threshold must be 1..{keys} (its keys), not {threshold}")


def root_files(folder: Path) -> dict[int, Path]:
    """The factory's roots: version -> ``root/<version>.cbor`` (canonical numbers only)."""
    found = {}
    for path in (Path(folder) / "root").glob("*.cbor"):
        stem = path.stem
        if stem.isascii() and stem.isdigit() and stem == str(int(stem)) and int(stem) >= 1:
            found[int(stem)] = path
    return dict(sorted(found.items()))


def load_root_keys(folder: Path) -> dict[bytes, Ed25519PrivateKey]:
    """Every root private key the factory holds (``root/keys/*.key``): raw public key ->
    private key, in file-name order."""
    keys: dict[bytes, Ed25519PrivateKey] = {}
    for path in sorted((Path(folder) / "root" / "keys").glob("*.key")):
        try:
            key = attestation.load_private_key_pem(path.read_bytes())
        except attestation.AttestationError:
            raise ProvisioningError(f"{path} is not an Ed25519 private key (PEM)") from None
        keys.setdefault(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw), key)
    return keys


@attrs.frozen(repr=False)
class Factory:
    """What provisioning needs from the factory (loaded from its folder)."""

    path: Path
    ca_key: Ed25519PrivateKey
    ca_cert: x509.Certificate
    #: domain id -> raw Ed25519 owner public key
    owners: dict[str, bytes]
    #: the envelope of the current (highest-numbered) root, ``root/<N>.cbor``; verified
    #: by :func:`load_factory` (signed by a threshold of its own keys)
    root: bytes

    @property
    def root_dir(self) -> Path:
        """``root/``: the roots ``<N>.cbor`` and, in ``keys/``, the root private keys."""
        return self.path / "root"

    def __repr__(self) -> str:
        return f"Factory({str(self.path)!r}, owners={sorted(self.owners)})"


def factory_init(
    folder: Path,
    domains: tuple[str, ...] = REFERENCE_DOMAINS,
    *,
    root_keys: int = 3,
    root_threshold: int = 2,
) -> Factory:
    """Create a manufacturer CA, owner keys and root v1 (``root_threshold`` of
    ``root_keys`` root keys) in ``folder``. Refuses an existing CA or root."""
    folder = Path(folder)
    check_root_role(root_keys, root_threshold)
    if (folder / "ca.key").exists() or (folder / "ca.pem").exists():
        raise ProvisioningError(f"{folder} already holds a manufacturer CA")
    if (folder / "root").exists():
        raise ProvisioningError(f"{folder} already holds a root of trust (root/)")
    (folder / "owners").mkdir(parents=True, exist_ok=True, mode=0o700)
    (folder / "root" / "keys").mkdir(parents=True, mode=0o700)
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
    keys = [Ed25519PrivateKey.generate() for _ in range(root_keys)]
    for i, key in enumerate(keys, 1):
        write_secret_file(
            folder / "root" / "keys" / f"root-{i}.key", attestation.private_key_pem(key)
        )
    root = attestation.make_root(
        version=1,
        expires=int(time.time()) + ROOT_VALIDITY_DAYS * DAY,
        keys=[k.public_key() for k in keys],
        threshold=root_threshold,
        owners={
            domain: ([Ed25519PublicKey.from_public_bytes(raw)], 1) for domain, raw in owners.items()
        },
        signers=keys[:root_threshold],
    )
    attestation.trusted_root(root)  # what provisioning will check: fail here, not there
    write_new_file(folder / "root" / "1.cbor", root)
    return Factory(folder, ca_key, ca_cert, owners, root)


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
    return Factory(folder, ca_key, ca_cert, owners, _current_root(folder))


def _current_root(folder: Path) -> bytes:
    """The highest-numbered ``root/<N>.cbor``, which must be root version N and signed by a
    threshold of its own keys."""
    roots = root_files(folder)
    if not roots:
        raise ProvisioningError(
            f"{folder} has no root of trust (root/<N>.cbor): it predates the root role; "
            "recreate it with 'tre factory init'"
        )
    version, path = next(reversed(roots.items()))
    try:
        envelope = path.read_bytes()
        root = attestation.trusted_root(envelope)
    except OSError as exc:
        raise ProvisioningError(f"cannot read {path}: {exc.strerror}") from None
    except attestation.UpdateError as exc:
        raise ProvisioningError(f"{path} is not a valid root: {exc.message}") from None
    if root.version != version:
        raise ProvisioningError(f"{path} holds root version {root.version}, not {version}")
    return envelope
