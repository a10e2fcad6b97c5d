"""DICE-style key derivation for the TRE and its domains.

The layering follows the Open Profile for DICE (Open DICE, pigweed.googlesource.com/open-dice)
and the TCG DICE Layering Architecture: a Unique Device Secret (UDS) is the root; each
layer's Compound Device Identifiers (CDIs) are derived one-way from the layer below and the
measurement of the layer above, so a layer never sees its parent's secret and a change of
code changes every secret derived from the attestation CDI.

Every derivation is HKDF-SHA256 (RFC 5869) through ``cryptography``'s HKDF, with an ``info``
string starting ``b"tre/v1/"`` and naming the purpose, so different derivations never share
an HKDF input (domain separation). The input keying material is always a secret (UDS or
CDI), the salt a public value (a measurement, an authority hash, an owner hash, or empty).
An empty salt is the RFC 5869 default: HMAC pads keys with zeros, so ``b""`` equals HashLen
zero bytes.

The tree::

    UDS --> device_id_key            info "tre/v1/device-id"          (Ed25519, lifetime)
     +----> TreCdis.attest  salt = TRE code measurement, info "tre/v1/cdi-attest"
     |        `-> DomainCdis.attest  salt = domain measurement, info ".../domain-attest/<id>"
     |              `-> alias_key    info "tre/v1/alias-key"          (Ed25519)
     `----> TreCdis.seal    salt = authority hash,       info "tre/v1/cdi-seal"
              +-> DomainCdis.seal_measurement  salt = domain measurement,
              |                               info ".../domain-seal-measurement/<id>"
              `-> owner_seal_key  salt = owner key hash,
                                  info ".../domain-seal-owner/<id>/<svn u32be>"

``TreCdis.seal`` is Open DICE's CDI_Seal: it depends on the authority (who may sign TRE code)
and not on the code itself, so data sealed under it survives TRE updates. ``owner_seal_key``
follows SGX's MRSIGNER sealing: bound to the owner's key and an svn, not to the code, so a
domain's updates keep their sealed data; the runtime lets a domain at svn N derive the keys
of every svn <= N (to unseal what older versions sealed) and never of a higher svn.

Fixed-layout hashes (:func:`measure_domain`, :func:`hash_files`, :func:`owner_key_hash`,
:func:`authority_hash`) are SHA-256 over a version tag and length-prefixed fields (4-byte
big-endian lengths; 8-byte for file contents), so no two different inputs encode alike.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import attrs
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._errors import InvalidIdentity
from ._secret import Secret

__all__ = [
    "DIGEST_SIZE",
    "MAX_SVN",
    "UDS_SIZE",
    "DomainCdis",
    "TreCdis",
    "alias_key",
    "authority_hash",
    "check_domain_id",
    "derive_key",
    "device_id_key",
    "domain_cdis",
    "domain_epoch_key",
    "hash_files",
    "measure_domain",
    "owner_key_hash",
    "owner_seal_key",
    "tre_cdis",
]

#: Size of the Unique Device Secret, in bytes.
UDS_SIZE = 32
#: Size of every measurement and hash input (SHA-256), in bytes.
DIGEST_SIZE = 32
#: Highest security version number (svns are encoded as 4-byte big-endian, signed-safe).
MAX_SVN = 2**31 - 1
#: RFC 5869: L <= 255 * HashLen.
_MAX_HKDF_LENGTH = 255 * 32

_PREFIX = b"tre/v1/"
# A domain id as the derivations and certificates carry it: ASCII, no "/" (it separates
# fields in info strings), at most 64 characters (ub-common-name, RFC 5280). A superset
# of the manifest rule in tre/_manifest.py.
_DOMAIN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PURPOSE_MAX = 128


# --- input checks -------------------------------------------------------------------------


def _check_digest(name: str, value: object) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidIdentity(f"{name} must be {DIGEST_SIZE} bytes, not {type(value).__name__}")
    if len(value) != DIGEST_SIZE:
        raise InvalidIdentity(f"{name} must be {DIGEST_SIZE} bytes (SHA-256), got {len(value)}")
    return value


def _check_svn(svn: object) -> int:
    if isinstance(svn, bool) or not isinstance(svn, int):
        raise InvalidIdentity(f"svn must be an int, not {type(svn).__name__}")
    if not 0 <= svn <= MAX_SVN:
        raise InvalidIdentity(f"svn must be in 0..{MAX_SVN}, got {svn}")
    return svn


def check_domain_id(domain_id: object) -> str:
    """Return ``domain_id`` if the derivations and certificates can carry it, else raise.

    1 to 64 ASCII characters: letters, digits, ``.``, ``_``, ``-``, starting with a letter
    or digit. :class:`InvalidIdentity` otherwise.
    """
    if not isinstance(domain_id, str):
        raise InvalidIdentity(f"domain id must be a str, not {type(domain_id).__name__}")
    if not _DOMAIN_ID_RE.fullmatch(domain_id):
        raise InvalidIdentity(
            f"domain id {domain_id!r} is not 1-64 ASCII letters, digits, '.', '_' or '-' "
            "starting with a letter or digit"
        )
    return domain_id


def _check_secret(name: str, value: object, size: int | None = None) -> bytes:
    if not isinstance(value, Secret):
        raise InvalidIdentity(f"{name} must be a Secret, not {type(value).__name__}")
    if size is not None and len(value) != size:
        raise InvalidIdentity(f"{name} must be {size} bytes, got {len(value)}")
    return value.reveal()


def _is_secret(instance: object, attribute: attrs.Attribute[Secret], value: object) -> None:
    """attrs validator. Unlike ``attrs.validators.instance_of``, whose message quotes the
    value, it never puts the (possibly secret) value in the error."""
    if not isinstance(value, Secret):
        raise InvalidIdentity(f"{attribute.name} must be a Secret, not {type(value).__name__}")


def _lp(data: bytes) -> bytes:
    """A field with its 4-byte big-endian length in front."""
    return len(data).to_bytes(4, "big") + data


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract with ``salt``, expand with ``info``."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


# --- the TRE layer ------------------------------------------------------------------------


def device_id_key(uds: Secret) -> Ed25519PrivateKey:
    """The DeviceID key: Ed25519 with seed ``HKDF(ikm=UDS, salt=b"", info=b"tre/v1/device-id")``.

    Depends on the UDS only, not on any code, so it lives as long as the device and the
    factory's DeviceID certificate stays valid across TRE updates (TCG DICE's DeviceID;
    unlike Open DICE, whose first asymmetric key follows CDI_Attest).
    """
    ikm = _check_secret("UDS", uds, UDS_SIZE)
    return Ed25519PrivateKey.from_private_bytes(_hkdf(ikm, b"", _PREFIX + b"device-id"))


@attrs.frozen
class TreCdis:
    """The TRE's Compound Device Identifiers (Open DICE's CDI_Attest and CDI_Seal)."""

    #: Changes whenever the TRE code changes.
    attest: Secret = attrs.field(validator=_is_secret)
    #: Depends on the authority, not the code: survives TRE updates.
    seal: Secret = attrs.field(validator=_is_secret)


def tre_cdis(uds: Secret, tre_measurement: bytes, authority: bytes) -> TreCdis:
    """Derive the TRE's CDIs from the UDS.

    - ``attest = HKDF(ikm=UDS, salt=tre_measurement, info=b"tre/v1/cdi-attest")``
    - ``seal = HKDF(ikm=UDS, salt=authority, info=b"tre/v1/cdi-seal")``

    ``tre_measurement`` is the 32-byte code hash of the TRE (:func:`hash_files`);
    ``authority`` the 32-byte hash of the key allowed to sign TRE code, the manufacturer
    CA (:func:`authority_hash`).
    """
    ikm = _check_secret("UDS", uds, UDS_SIZE)
    measurement = _check_digest("tre_measurement", tre_measurement)
    authority = _check_digest("authority", authority)
    return TreCdis(
        attest=Secret(_hkdf(ikm, measurement, _PREFIX + b"cdi-attest")),
        seal=Secret(_hkdf(ikm, authority, _PREFIX + b"cdi-seal")),
    )


def authority_hash(ca_public_key: bytes) -> bytes:
    """The ``authority`` input of :func:`tre_cdis`: SHA-256 of a tag and a raw 32-byte
    Ed25519 public key (``public_bytes_raw()`` of the manufacturer CA's key)."""
    key = _check_public_key("CA public key", ca_public_key)
    return hashlib.sha256(_lp(_PREFIX + b"authority") + _lp(key)).digest()


# --- measurements -------------------------------------------------------------------------


def measure_domain(
    code_hash: bytes, manifest_hash: bytes, owner_key_hash: bytes, svn: int
) -> bytes:
    """A domain's measurement: SHA-256 of a version tag, the three 32-byte hashes (each
    length-prefixed, in this order) and the svn as 4 bytes big-endian. 32 bytes."""
    fields = (
        _check_digest("code_hash", code_hash),
        _check_digest("manifest_hash", manifest_hash),
        _check_digest("owner_key_hash", owner_key_hash),
    )
    svn = _check_svn(svn)
    data = _lp(_PREFIX + b"domain-measurement") + b"".join(_lp(f) for f in fields)
    return hashlib.sha256(data + svn.to_bytes(4, "big")).digest()


def _check_path(path: object) -> bytes:
    if not isinstance(path, str):
        raise InvalidIdentity(f"file path must be a str, not {type(path).__name__}")
    parts = path.split("/")
    if not path or "\x00" in path or "\\" in path or any(part in ("", ".", "..") for part in parts):
        raise InvalidIdentity(
            f"file path {path!r} is not a normalised relative POSIX path "
            "(no leading or doubled '/', no '.' or '..' parts, no backslash)"
        )
    try:
        return path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidIdentity(f"file path {path!r} is not valid Unicode") from None


def hash_files(files: Iterable[tuple[str, bytes]]) -> bytes:
    """The code hash of a set of files given as ``(relative posix path, content)``.

    SHA-256 of a version tag, the number of files (4 bytes), then for each file in order of
    its path: the UTF-8 path with a 4-byte length, the content with an 8-byte length. The
    order the caller lists files in does not matter; their paths must be normalised
    (``a/b.py``, never ``./a``, ``a//b`` or ``/a``) and unique, else :class:`InvalidIdentity`.
    Pure: the caller reads the files.
    """
    entries: dict[bytes, bytes] = {}
    for item in files:
        if not isinstance(item, tuple) or len(item) != 2:
            raise InvalidIdentity("each file must be a (path, content) tuple")
        path, content = item
        key = _check_path(path)
        if not isinstance(content, bytes | bytearray):
            raise InvalidIdentity(
                f"content of {path!r} must be bytes, not {type(content).__name__}"
            )
        if key in entries:
            raise InvalidIdentity(f"file path {path!r} is listed twice")
        entries[key] = bytes(content)
    h = hashlib.sha256(_lp(_PREFIX + b"files") + len(entries).to_bytes(4, "big"))
    for key in sorted(entries):
        content = entries[key]
        h.update(_lp(key))
        h.update(len(content).to_bytes(8, "big"))
        h.update(content)
    return h.digest()


def _check_public_key(name: str, key: object) -> bytes:
    if not isinstance(key, bytes) or len(key) != 32:
        raise InvalidIdentity(f"{name} must be a raw 32-byte Ed25519 public key")
    return key


def owner_key_hash(owner_public_key: bytes) -> bytes:
    """SHA-256 of a tag and the owner's raw 32-byte Ed25519 public key."""
    key = _check_public_key("owner public key", owner_public_key)
    return hashlib.sha256(_lp(_PREFIX + b"owner-key") + _lp(key)).digest()


# --- the domain layer ---------------------------------------------------------------------


@attrs.frozen
class DomainCdis:
    """A domain's CDIs, derived one-way from the TRE's: the domain cannot go back up."""

    #: Changes with the domain's measurement (code, manifest, owner, svn).
    attest: Secret = attrs.field(validator=_is_secret)
    #: Seals to the exact measurement: another version of the domain cannot unseal.
    seal_measurement: Secret = attrs.field(validator=_is_secret)


def domain_cdis(tre: TreCdis, domain_id: str, measurement: bytes) -> DomainCdis:
    """Derive a domain's CDIs from the TRE's and the domain's measurement.

    - ``attest = HKDF(ikm=tre.attest, salt=measurement, info=b"tre/v1/domain-attest/" + id)``
    - ``seal_measurement = HKDF(ikm=tre.seal, salt=measurement,
      info=b"tre/v1/domain-seal-measurement/" + id)``
    """
    if not isinstance(tre, TreCdis):
        raise InvalidIdentity(f"tre must be TreCdis, not {type(tre).__name__}")
    ident = check_domain_id(domain_id).encode("ascii")
    measurement = _check_digest("measurement", measurement)
    return DomainCdis(
        attest=Secret(_hkdf(tre.attest.reveal(), measurement, _PREFIX + b"domain-attest/" + ident)),
        seal_measurement=Secret(
            _hkdf(tre.seal.reveal(), measurement, _PREFIX + b"domain-seal-measurement/" + ident)
        ),
    )


def owner_seal_key(tre: TreCdis, domain_id: str, owner_hash: bytes, svn: int) -> Secret:
    """The owner-bound sealing key of a domain at one svn (SGX's MRSIGNER policy).

    ``HKDF(ikm=tre.seal, salt=owner_hash, info=b"tre/v1/domain-seal-owner/" + id + b"/" +
    svn as 4 bytes big-endian)``. It depends on neither the domain's code nor the TRE's, so
    it survives updates of both. The runtime must only derive svns <= the domain's own.
    """
    if not isinstance(tre, TreCdis):
        raise InvalidIdentity(f"tre must be TreCdis, not {type(tre).__name__}")
    ident = check_domain_id(domain_id).encode("ascii")
    owner = _check_digest("owner_hash", owner_hash)
    svn_bytes = _check_svn(svn).to_bytes(4, "big")
    info = _PREFIX + b"domain-seal-owner/" + ident + b"/" + svn_bytes
    return Secret(_hkdf(tre.seal.reveal(), owner, info))


def domain_epoch_key(cdi: Secret, epoch: bytes) -> Secret:
    """A domain sealing CDI bound to the domain's *install epoch*:
    ``HKDF(ikm=cdi, salt=epoch, info=b"tre/v1/domain-epoch")``.

    The epoch is a random value the device stores with each installed domain and replaces
    when the domain is removed or changes owner, so everything sealed under the old epoch
    (by either policy) can no longer be opened: a crypto-erase. ``epoch`` is 16..64 bytes."""
    ikm = _check_secret("cdi", cdi)
    if not isinstance(epoch, bytes) or not 16 <= len(epoch) <= 64:
        raise InvalidIdentity("epoch must be 16..64 bytes")
    return Secret(_hkdf(ikm, epoch, _PREFIX + b"domain-epoch"))


def derive_key(cdi: Secret, purpose: str, length: int = 32) -> Secret:
    """A subkey of a CDI for one purpose: ``HKDF(ikm=cdi, salt=b"", info=b"tre/v1/key/" +
    purpose)``. For the runtime's own keys (storage, counter MAC, audit...). ``purpose`` is
    1-128 printable characters; ``length`` 1..8160 bytes (RFC 5869's limit)."""
    ikm = _check_secret("cdi", cdi)
    if not isinstance(purpose, str) or not purpose or len(purpose) > _PURPOSE_MAX:
        raise InvalidIdentity(f"purpose must be a non-empty str of at most {_PURPOSE_MAX} chars")
    if not purpose.isprintable():
        raise InvalidIdentity(f"purpose {purpose!r} must be printable")
    if isinstance(length, bool) or not isinstance(length, int):
        raise InvalidIdentity(f"length must be an int, not {type(length).__name__}")
    if not 1 <= length <= _MAX_HKDF_LENGTH:
        raise InvalidIdentity(f"length must be in 1..{_MAX_HKDF_LENGTH}, got {length}")
    return Secret(_hkdf(ikm, b"", _PREFIX + b"key/" + purpose.encode("utf-8"), length))


def alias_key(domain: DomainCdis) -> Ed25519PrivateKey:
    """A domain's alias (attestation) key: Ed25519 with seed
    ``HKDF(ikm=domain.attest, salt=b"", info=b"tre/v1/alias-key")``, certified by the
    DeviceID key. Like DICE's Alias Key, it changes whenever the domain's measurement does."""
    if not isinstance(domain, DomainCdis):
        raise InvalidIdentity(f"domain must be DomainCdis, not {type(domain).__name__}")
    seed = _hkdf(domain.attest.reveal(), b"", _PREFIX + b"alias-key")
    return Ed25519PrivateKey.from_private_bytes(seed)
