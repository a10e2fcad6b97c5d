"""Trust decisions for signed packages and updates, TUF/Uptane style, sans-I/O.

Bytes, keys and a time in; a verified :class:`Root` or :class:`Package`, or a typed
:class:`UpdateError`, out. Nothing here reads a file or a clock: the caller passes ``now``
(unix seconds) once per decision, the TUF "fixed update start time" (TUF specification
1.0.x section 5.1), and every check below uses that one value.

Wire format
-----------
An *envelope* is one CBOR map in deterministic encoding (RFC 8949 section 4.2.1: shortest
heads, definite lengths, map keys sorted bytewise by their encodings; enforced on receipt
by re-encoding), with no tags, floats, booleans or nulls::

    {"signed": bstr, "signatures": [{"keyid": tstr, "sig": bstr}, ...]}

``signed`` holds the exact bytes that were signed: itself a deterministic CBOR map (the
*metadata*), decoded only after they are in hand, so what is verified is exactly what is
parsed. Each ``sig`` is an Ed25519 signature (RFC 8032) over those bytes, nothing else;
``keyid`` is the lower-case hex SHA-256 of the signer's 32-byte raw public key. Key ids are
hints only: a signature whose key id names no key of the role is ignored, and a threshold
counts the *distinct public keys* whose signatures verify, so the same key signing twice
(or under two ids) counts once (TUF 5.3.4: "each KEY MUST only contribute one SIGNATURE").

Root metadata (the TRE root role, k-of-n, and the per-domain owner roles it delegates)::

    {"type": "root", "version": uint >= 1, "expires": uint,
     "keys": {keyid: raw public key hex}, "threshold": uint,
     "owners": {domain id: {"keys": [raw public key hex, ...], "threshold": uint}}}

Package metadata::

    {"type": "package", "target": "tre" | "domain:<domain id>", "counter": uint,
     "expires": uint, "files": {path: {"sha256": hex, "length": uint}},
     ? "migrate": "none" | "owner"}

Every threshold is 1..number of keys; key lists hold no duplicates; each root key id must
be the hash of its key; domain ids follow :func:`attestation.check_domain_id`; no other
fields are allowed. File paths are POSIX, relative and normalised: no empty, ``.`` or
``..`` component, no leading ``/``, no backslash, no control character, at most 255 bytes.

Decisions, each check in a fixed order (python-tuf ``trusted_metadata_set`` style)
----------------------------------------------------------------------------------
:func:`trusted_root`: the factory's root, trusted by provisioning (TUF 5.2): parse, then
signed by a threshold of its own keys. Its expiry does not matter here (5.2).

:func:`rotate_root` (TUF 5.3): parse; signed by a threshold of the *current* root's keys
and by a threshold of the *new* root's keys (5.3.4, else :class:`BadRootRotation`);
version not lower or equal (5.3.5, else :class:`Rollback`) and exactly N+1 (5.3.5, else
:class:`BadRootRotation`); the new root not expired at ``now`` (5.3.10, else
:class:`Expired`). Rotating one version at a time, a device walks N+1, N+2, ... in order.
Deviation: TUF checks expiry only after the last intermediate root; here each rotation is
a decision of its own, so each new root must be unexpired when it is applied.

:func:`verify_package` (TUF 5.6 for the metadata, 5.7 for the files):

0. the trusted root is not expired at ``now`` (5.3.10, else :class:`Expired`);
1. parse the envelope and the metadata (else :class:`MalformedPackage`);
2. signatures (5.6.3): the role is chosen by the caller's *expected* target, never by the
   package: ``"tre"`` needs the root threshold, ``"domain:<id>"`` the threshold of the
   owner keys root delegated for *that* domain (a domain root delegates nothing to is
   :class:`WrongTarget`). Short of the threshold: :class:`MisScoped` if a key of another
   role (another domain's owner, or an owner for the TRE target) signed, else
   :class:`BelowThreshold`;
3. type is ``"package"`` (else :class:`MalformedPackage`);
4. the package's target equals the expected one (else :class:`WrongTarget`);
5. not expired at ``now``, i.e. ``now < expires`` (5.6.5, else :class:`Expired`);
6. counter higher than ``last_counter`` (rollback, else :class:`Rollback`);
7. file entries well-formed (paths as above, none inside another listed file, 64 hex
   digit digests; else :class:`MalformedPackage`).

:func:`check_files` (TUF 5.7.3): the files in hand are exactly the listed ones, each of
the listed length and SHA-256 (else :class:`FileMismatch`).

A refused input changes nothing: these are pure functions of their arguments.

Errors: :class:`UpdateError` (``"UPDATE"``, an :class:`AttestationError`) and its
subclasses, each with a stable code: :class:`Expired` (``"UPDATE_EXPIRED"``),
:class:`Rollback` (``"UPDATE_ROLLBACK"``), :class:`WrongTarget` (``"UPDATE_WRONG_TARGET"``),
:class:`BelowThreshold` (``"UPDATE_BELOW_THRESHOLD"``), :class:`MisScoped`
(``"UPDATE_MIS_SCOPED"``), :class:`BadRootRotation` (``"UPDATE_BAD_ROOT_ROTATION"``),
:class:`MalformedPackage` (``"UPDATE_MALFORMED"``, any malformed envelope or metadata,
root included) and :class:`FileMismatch` (``"UPDATE_FILE_MISMATCH"``). Builders for tools
and tests: :func:`make_root`, :func:`make_package`, :func:`sign`.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ._dice import check_domain_id
from ._errors import AttestationError, InvalidIdentity

__all__ = [
    "MAX_ENVELOPE_SIZE",
    "TRE_TARGET",
    "BadRootRotation",
    "BelowThreshold",
    "Expired",
    "FileInfo",
    "FileMismatch",
    "MalformedPackage",
    "MisScoped",
    "Package",
    "Role",
    "Rollback",
    "Root",
    "UpdateError",
    "WrongTarget",
    "check_files",
    "domain_target",
    "installed_package",
    "key_id",
    "make_package",
    "make_root",
    "rotate_root",
    "sign",
    "signed_by",
    "trusted_root",
    "verify_package",
]

#: Largest envelope accepted, in bytes.
MAX_ENVELOPE_SIZE = 1 << 20
#: The target naming the TRE's own code.
TRE_TARGET = "tre"
_DOMAIN_PREFIX = "domain:"
_MAX_SIGNATURES = 64
_MAX_KEYS = 64
_MAX_OWNERS = 256
_MAX_FILES = 4096
_MAX_PATH = 255
_MAX_DEPTH = 8
_KEY_SIZE = 32
_SIG_SIZE = 64
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MIGRATE = frozenset({"none", "owner"})


# --- errors -------------------------------------------------------------------------------


class UpdateError(AttestationError):
    """A root or package was refused. Subclasses say why; messages never hold secrets."""

    code = "UPDATE"


class Expired(UpdateError):
    """Metadata (or the trusted root) expired at the reference time: a freeze attack."""

    code = "UPDATE_EXPIRED"


class Rollback(UpdateError):
    """A package counter or root version not higher than the one already trusted."""

    code = "UPDATE_ROLLBACK"


class WrongTarget(UpdateError):
    """The package names another target than expected, or no role signs for the target."""

    code = "UPDATE_WRONG_TARGET"


class BelowThreshold(UpdateError):
    """Fewer distinct keys of the required role signed than its threshold."""

    code = "UPDATE_BELOW_THRESHOLD"


class MisScoped(UpdateError):
    """A role signed outside its scope (a domain owner for another domain or the TRE)."""

    code = "UPDATE_MIS_SCOPED"


class BadRootRotation(UpdateError):
    """A new root skips a version or lacks the old or the new root's threshold."""

    code = "UPDATE_BAD_ROOT_ROTATION"


class MalformedPackage(UpdateError):
    """An envelope or its metadata (package or root) does not parse or breaks a rule."""

    code = "UPDATE_MALFORMED"


class FileMismatch(UpdateError):
    """The files in hand are not exactly those the package lists (set, length, hash)."""

    code = "UPDATE_FILE_MISMATCH"


# --- values -------------------------------------------------------------------------------


@attrs.frozen
class Role:
    """Distinct raw Ed25519 public keys (32 bytes each) and how many must sign."""

    keys: frozenset[bytes]
    threshold: int


@attrs.frozen
class Root:
    """A trusted root: the TRE root role, the owner roles it delegates, and its envelope
    (``envelope``, the exact bytes, for the caller to persist)."""

    version: int
    expires: int
    role: Role
    owners: Mapping[str, Role]
    envelope: bytes = attrs.field(repr=False)


@attrs.frozen
class FileInfo:
    sha256: bytes
    length: int


@attrs.frozen
class Package:
    """A verified package: what to install, where, and at which release counter."""

    target: str
    counter: int
    expires: int
    files: Mapping[str, FileInfo]
    migrate: str | None
    signed: bytes = attrs.field(repr=False)


# --- deterministic CBOR -------------------------------------------------------------------


class _NoTags(Mapping[int, Callable[[Any, bool], Any]]):
    """cbor2 ``semantic_decoders`` refusing every tag (cbor2 consults it first)."""

    def __getitem__(self, tag: int) -> Callable[[Any, bool], Any]:
        def refuse(_value: Any, _immutable: bool) -> Any:
            raise ValueError(f"CBOR tag {tag} is not allowed")

        return refuse

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


_NO_TAGS = _NoTags()


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | bytes | str | Mapping | list):
        raise TypeError(f"{type(value).__name__} is not part of the update CBOR profile")
    if isinstance(value, Mapping):
        items = sorted(((cbor2.dumps(k), k, v) for k, v in value.items()), key=lambda i: i[0])
        return {k: _canonical(v) for _, k, v in items}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _encode(value: Any) -> bytes:
    return bytes(cbor2.dumps(_canonical(value)))


def _check_value(value: Any, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise MalformedPackage("CBOR nested too deeply")
    kind = type(value)
    if kind is int or kind is bytes or kind is str:
        return
    if kind is list:
        for item in value:
            _check_value(item, depth + 1)
        return
    if kind is dict:
        previous = b""
        for key, item in value.items():
            if type(key) is not str:
                raise MalformedPackage("CBOR map keys must be text strings")
            encoded = cbor2.dumps(key)
            if encoded <= previous:
                raise MalformedPackage("CBOR map keys not in deterministic order")
            previous = encoded
            _check_value(item, depth + 1)
        return
    raise MalformedPackage(f"CBOR {kind.__name__} is not part of the update profile")


def _decode(data: object, what: str) -> Any:
    if not isinstance(data, bytes):
        raise MalformedPackage(f"{what} must be bytes, not {type(data).__name__}")
    if len(data) > MAX_ENVELOPE_SIZE:
        raise MalformedPackage(f"{what} is larger than {MAX_ENVELOPE_SIZE} bytes")
    try:
        value = cbor2.loads(
            data,
            semantic_decoders=_NO_TAGS,
            str_errors="strict",
            max_depth=_MAX_DEPTH + 2,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
    except Exception as exc:  # cbor2 raises many kinds on hostile input; all are "malformed"
        raise MalformedPackage(f"{what} is not well-formed CBOR: {type(exc).__name__}") from None
    _check_value(value)
    if cbor2.dumps(value) != data:
        raise MalformedPackage(f"{what} is not deterministic CBOR (RFC 8949 section 4.2.1)")
    return value


# --- field checks -------------------------------------------------------------------------


def _map(value: Any, what: str, required: Iterable[str], optional: Iterable[str] = ()) -> Any:
    if type(value) is not dict:
        raise MalformedPackage(f"{what} must be a map")
    required = frozenset(required)
    missing = required - value.keys()
    extra = value.keys() - required - frozenset(optional)
    if missing or extra:
        raise MalformedPackage(f"{what}: missing {sorted(missing)}, unknown {sorted(extra)}")
    return value


def _uint(value: Any, what: str, minimum: int = 0) -> int:
    if type(value) is not int or value < minimum or value >= 1 << 63:
        raise MalformedPackage(f"{what} must be an int in {minimum}..2**63-1")
    return value


def _text(value: Any, what: str) -> str:
    if type(value) is not str:
        raise MalformedPackage(f"{what} must be a text string")
    return value


def key_id(public_key: bytes) -> str:
    """The informational key id: lower-case hex SHA-256 of the 32-byte raw public key."""
    return hashlib.sha256(public_key).hexdigest()


def _raw(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _pubkey_hex(value: Any, what: str) -> bytes:
    text = _text(value, what)
    if len(text) != 2 * _KEY_SIZE or not re.fullmatch(r"[0-9a-f]+", text):
        raise MalformedPackage(f"{what} must be {_KEY_SIZE} bytes in lower-case hex")
    raw = bytes.fromhex(text)
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise MalformedPackage(f"{what} is not an Ed25519 public key") from None
    return raw


def _role(keys: Sequence[bytes], threshold: Any, what: str) -> Role:
    if not keys or len(keys) > _MAX_KEYS:
        raise MalformedPackage(f"{what} must list 1..{_MAX_KEYS} keys")
    distinct = frozenset(keys)
    if len(distinct) != len(keys):
        raise MalformedPackage(f"{what} lists a key twice")
    threshold = _uint(threshold, f"{what} threshold", 1)
    if threshold > len(distinct):
        raise MalformedPackage(f"{what} threshold {threshold} exceeds its {len(distinct)} keys")
    return Role(distinct, threshold)


def _domain_id(value: Any, what: str) -> str:
    try:
        return check_domain_id(value)
    except InvalidIdentity as exc:
        raise MalformedPackage(f"{what}: {exc.message}") from None


def _check_target(value: Any, what: str) -> str:
    """``"tre"`` or ``"domain:<id>"``; anything else is an unknown target type."""
    target = _text(value, what)
    if target == TRE_TARGET:
        return target
    if target.startswith(_DOMAIN_PREFIX):
        _domain_id(target[len(_DOMAIN_PREFIX) :], what)
        return target
    raise MalformedPackage(f"{what} {target!r} is neither 'tre' nor 'domain:<id>'")


def domain_target(domain_id: str) -> str:
    """The package target naming ``domain_id``."""
    return _DOMAIN_PREFIX + check_domain_id(domain_id)


def _check_path(path: str) -> None:
    if (
        not path
        or len(path.encode()) > _MAX_PATH
        or path.startswith("/")
        or "\\" in path
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path)
        or posixpath.normpath(path) != path
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise MalformedPackage(f"file path {path!r} is not a normalised relative path")


# --- envelopes ----------------------------------------------------------------------------


@attrs.frozen
class _Envelope:
    signed: bytes
    signatures: tuple[tuple[str, bytes], ...]


def _parse_envelope(data: object) -> _Envelope:
    value = _map(_decode(data, "envelope"), "envelope", ("signed", "signatures"))
    signed, signatures = value["signed"], value["signatures"]
    if type(signed) is not bytes:
        raise MalformedPackage("envelope signed must be a byte string")
    if type(signatures) is not list or len(signatures) > _MAX_SIGNATURES:
        raise MalformedPackage(f"envelope signatures must be a list of at most {_MAX_SIGNATURES}")
    entries = []
    for entry in signatures:
        entry = _map(entry, "signature", ("keyid", "sig"))
        keyid = _text(entry["keyid"], "signature keyid")
        if not _HEX64.fullmatch(keyid):
            raise MalformedPackage("signature keyid must be 64 lower-case hex digits")
        if type(entry["sig"]) is not bytes or len(entry["sig"]) != _SIG_SIZE:
            raise MalformedPackage(f"signature sig must be {_SIG_SIZE} bytes")
        entries.append((keyid, entry["sig"]))
    return _Envelope(signed, tuple(entries))


def _verified_keys(envelope: _Envelope, keys: Iterable[bytes]) -> frozenset[bytes]:
    """The distinct keys among ``keys`` with a valid signature; unknown key ids ignored."""
    by_id = {key_id(k): k for k in keys}
    good = set()
    for keyid, sig in envelope.signatures:
        key = by_id.get(keyid)
        if key is None or key in good:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(sig, envelope.signed)
        except InvalidSignature:
            continue
        good.add(key)
    return frozenset(good)


def _meets(envelope: _Envelope, role: Role) -> bool:
    return len(_verified_keys(envelope, role.keys)) >= role.threshold


def _parse_root(envelope: _Envelope, data: bytes) -> Root:
    value = _map(
        _decode(envelope.signed, "root"),
        "root",
        ("type", "version", "expires", "keys", "threshold", "owners"),
    )
    if value["type"] != "root":
        raise MalformedPackage("root metadata type must be 'root'")
    keys = value["keys"]
    if type(keys) is not dict:
        raise MalformedPackage("root keys must be a map")
    raw_keys = []
    for keyid, hexkey in keys.items():
        raw = _pubkey_hex(hexkey, "root key")
        if keyid != key_id(raw):
            raise MalformedPackage("root key id is not the SHA-256 of its key")
        raw_keys.append(raw)
    role = _role(raw_keys, value["threshold"], "root role")
    owners_value = value["owners"]
    if type(owners_value) is not dict or len(owners_value) > _MAX_OWNERS:
        raise MalformedPackage(f"root owners must be a map of at most {_MAX_OWNERS} domains")
    owners = {}
    for domain, spec in owners_value.items():
        _domain_id(domain, "owner domain")
        spec = _map(spec, f"owner {domain}", ("keys", "threshold"))
        if type(spec["keys"]) is not list:
            raise MalformedPackage(f"owner {domain} keys must be a list")
        owner_keys = [_pubkey_hex(k, f"owner {domain} key") for k in spec["keys"]]
        owners[domain] = _role(owner_keys, spec["threshold"], f"owner {domain}")
    return Root(
        version=_uint(value["version"], "root version", 1),
        expires=_uint(value["expires"], "root expires"),
        role=role,
        owners=owners,
        envelope=data,
    )


# --- decisions ----------------------------------------------------------------------------


def trusted_root(initial: bytes) -> Root:
    """The factory's root, trusted by provisioning (TUF 5.2): it must parse and carry a
    threshold of its own keys. Its expiry is not checked here (5.2: "the expiration of
    the trusted root metadata file does not matter")."""
    envelope = _parse_envelope(initial)  # 5.2: load
    root = _parse_root(envelope, initial)
    if not _meets(envelope, root.role):  # self-signed by its own threshold
        raise BelowThreshold("initial root is not signed by a threshold of its own keys")
    return root


def rotate_root(current: Root, new_envelope: bytes, now: int) -> Root:
    """Rotate from ``current`` (version N) to the root in ``new_envelope`` (N+1)."""
    reference = now  # 5.1: the fixed update start time, taken once
    envelope = _parse_envelope(new_envelope)  # 5.3.3: parse, bounded size
    new = _parse_root(envelope, new_envelope)
    # 5.3.4: signed by a threshold of the trusted (N) keys and of the new (N+1) keys,
    # distinct keys each (the same key twice counts once).
    if not _meets(envelope, current.role):
        raise BadRootRotation(f"root v{new.version} lacks a threshold of the old root's keys")
    if not _meets(envelope, new.role):
        raise BadRootRotation(f"root v{new.version} lacks a threshold of its own keys")
    # 5.3.5: rollback: the new version must be higher, and exactly N+1.
    if new.version <= current.version:
        raise Rollback(f"root v{new.version} is not newer than trusted v{current.version}")
    if new.version != current.version + 1:
        raise BadRootRotation(f"root v{new.version} skips from trusted v{current.version}")
    # 5.3.10: freeze: the (new) trusted root must not be expired at the reference time.
    if reference >= new.expires:
        raise Expired(f"root v{new.version} expired at {new.expires}")
    return new


def _role_for(root: Root, target: str) -> Role:
    if target == TRE_TARGET:
        return root.role
    if target.startswith(_DOMAIN_PREFIX):
        owner = root.owners.get(target[len(_DOMAIN_PREFIX) :])
        if owner is not None:
            return owner
        raise WrongTarget(f"root delegates no owner for {target!r}")
    raise WrongTarget(f"no role signs for target {target!r}")


def _other_keys(root: Root, target: str) -> frozenset[bytes]:
    """Keys of roles other than the one for ``target`` that must not sign for it."""
    others: set[bytes] = set()
    for domain, owner in root.owners.items():
        if _DOMAIN_PREFIX + domain != target:
            others |= owner.keys
    return frozenset(others)


def _parse_package(signed: bytes) -> dict[str, Any]:
    value: dict[str, Any] = _map(
        _decode(signed, "package"),
        "package",
        ("type", "target", "counter", "expires", "files"),
        ("migrate",),
    )
    _text(value["type"], "package type")
    _check_target(value["target"], "package target")
    _uint(value["counter"], "package counter")
    _uint(value["expires"], "package expires")
    if "migrate" in value and value["migrate"] not in _MIGRATE:
        raise MalformedPackage(f"package migrate must be one of {sorted(_MIGRATE)}")
    files = value["files"]
    if type(files) is not dict or not files or len(files) > _MAX_FILES:
        raise MalformedPackage(f"package files must be a map of 1..{_MAX_FILES} entries")
    for entry in files.values():
        _map(entry, "file entry", ("sha256", "length"))
    return value


def describe_package(envelope: bytes) -> dict[str, Any]:
    """What a package envelope *says*, parsed strictly but NOT verified (for tools that
    show a package to a person; trust decisions go through :func:`verify_package`)."""
    parsed = _parse_envelope(envelope)
    value = _parse_package(parsed.signed)
    described = {
        "target": value["target"],
        "counter": value["counter"],
        "expires": value["expires"],
        "files": dict(value["files"]),
        "signatures": [keyid for keyid, _ in parsed.signatures],
    }
    if "migrate" in value:
        described["migrate"] = value["migrate"]
    return described


def verify_package(
    root: Root, envelope: bytes, *, target: str, last_counter: int, now: int
) -> Package:
    """Verify a package for ``target`` (``"tre"`` or ``"domain:<id>"``), in the fixed
    order of the module docstring; ``last_counter`` is the highest counter installed."""
    reference = now  # 5.1: the fixed update start time, taken once
    # 0. 5.3.10: freeze: the trusted root itself must not be expired.
    if reference >= root.expires:
        raise Expired(f"trusted root v{root.version} expired at {root.expires}")
    # 1. parse the envelope and the metadata (bounded, deterministic CBOR).
    parsed = _parse_envelope(envelope)
    value = _parse_package(parsed.signed)
    # 2. 5.6.3: arbitrary software: a threshold of the role for the *expected* target.
    role = _role_for(root, target)
    if not _meets(parsed, role):
        if _verified_keys(parsed, _other_keys(root, target) - role.keys):
            raise MisScoped(f"package for {target!r} is signed by another domain's owner")
        raise BelowThreshold(f"package for {target!r} lacks a threshold of its role's keys")
    # 3. type.
    if value["type"] != "package":
        raise MalformedPackage(f"metadata type {value['type']!r} is not 'package'")
    # 4. target: the package names the expected target (mix-and-match across targets).
    if value["target"] != target:
        raise WrongTarget(f"package targets {value['target']!r}, expected {target!r}")
    # 5. 5.6.5: freeze: not expired at the reference time.
    if reference >= value["expires"]:
        raise Expired(f"package expired at {value['expires']}")
    # 6. rollback: the release counter strictly increases.
    if value["counter"] <= last_counter:
        raise Rollback(f"package counter {value['counter']} is not above {last_counter}")
    # 7. files well-formed: safe relative paths, digests and lengths.
    return _package(value, parsed.signed)


def _package(value: dict[str, Any], signed: bytes) -> Package:
    files = {}
    paths = value["files"].keys()
    for path, entry in value["files"].items():
        _check_path(path)
        parts = path.split("/")
        for depth in range(1, len(parts)):  # a file cannot also be a folder of another
            if "/".join(parts[:depth]) in paths:
                raise MalformedPackage(f"file path {path!r} is inside another listed file")
        digest = _text(entry["sha256"], "file sha256")
        if not _HEX64.fullmatch(digest):
            raise MalformedPackage(f"file {path!r} sha256 must be 64 lower-case hex digits")
        files[path] = FileInfo(bytes.fromhex(digest), _uint(entry["length"], "file length"))
    return Package(
        target=value["target"],
        counter=value["counter"],
        expires=value["expires"],
        files=files,
        migrate=value.get("migrate"),
        signed=signed,
    )


def signed_by(envelope: bytes, role: Role) -> bool:
    """True if ``envelope`` carries valid signatures of a threshold of ``role``'s distinct
    keys (used for a second role on top of :func:`verify_package`, e.g. the current owner
    of a domain agreeing to its transfer). Malformed input: :class:`MalformedPackage`."""
    return _meets(_parse_envelope(envelope), role)


def installed_package(envelope: bytes, role: Role, target: str) -> Package:
    """Re-read a package the device installed earlier (its integrity reference): signed by a
    threshold of ``role`` (the owner recorded at install), naming ``target``, files well
    formed. Expiry and counter are *not* checked: they decided whether to install it; an
    installed package stays the reference of the code it installed."""
    if not 1 <= role.threshold <= len(role.keys):  # a stored role is data too: check it
        raise MalformedPackage(f"the owner role recorded for {target!r} is not a valid role")
    parsed = _parse_envelope(envelope)
    value = _parse_package(parsed.signed)
    if not _meets(parsed, role):
        raise BelowThreshold(f"installed package for {target!r} lacks its owner's threshold")
    if value["type"] != "package" or value["target"] != target:
        raise WrongTarget(f"installed package does not target {target!r}")
    return _package(value, parsed.signed)


def check_files(package: Package, files: Mapping[str, bytes]) -> None:
    """5.7.3: the files in hand are exactly the package's, each of its length and hash."""
    if set(files) != set(package.files):
        missing = sorted(set(package.files) - set(files))
        extra = sorted(set(files) - set(package.files))
        raise FileMismatch(f"files differ from the package: missing {missing}, extra {extra}")
    for path in sorted(package.files):
        info, data = package.files[path], files[path]
        if len(data) != info.length:
            raise FileMismatch(f"file {path!r} is {len(data)} bytes, expected {info.length}")
        if hashlib.sha256(data).digest() != info.sha256:
            raise FileMismatch(f"file {path!r} does not match its SHA-256")


# --- builders (tools and tests) -----------------------------------------------------------


def _envelope(signed: bytes, signatures: Sequence[tuple[str, bytes]] = ()) -> bytes:
    return _encode(
        {"signed": signed, "signatures": [{"keyid": k, "sig": s} for k, s in signatures]}
    )


def make_root(
    *,
    version: int,
    expires: int,
    keys: Sequence[Ed25519PublicKey],
    threshold: int,
    owners: Mapping[str, tuple[Sequence[Ed25519PublicKey], int]] | None = None,
    signers: Sequence[Ed25519PrivateKey] = (),
) -> bytes:
    """An envelope holding root metadata, signed by each of ``signers`` in turn. Not
    validated: tests build bad roots with it."""
    metadata = {
        "type": "root",
        "version": version,
        "expires": expires,
        "keys": {key_id(_raw(k)): _raw(k).hex() for k in keys},
        "threshold": threshold,
        "owners": {
            domain: {"keys": [_raw(k).hex() for k in owner_keys], "threshold": t}
            for domain, (owner_keys, t) in (owners or {}).items()
        },
    }
    envelope = _envelope(_encode(metadata))
    for key in signers:
        envelope = sign(envelope, key)
    return envelope


def make_package(
    *,
    target: str,
    counter: int,
    expires: int,
    files: Mapping[str, bytes],
    migrate: str | None = None,
    signers: Sequence[Ed25519PrivateKey] = (),
) -> bytes:
    """An envelope holding a package listing ``files`` (path -> content), signed by each
    of ``signers``. Not validated: tests build bad packages with it."""
    metadata: dict[str, Any] = {
        "type": "package",
        "target": target,
        "counter": counter,
        "expires": expires,
        "files": {
            path: {"sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}
            for path, data in files.items()
        },
    }
    if migrate is not None:
        metadata["migrate"] = migrate
    envelope = _envelope(_encode(metadata))
    for key in signers:
        envelope = sign(envelope, key)
    return envelope


def sign(envelope_or_signed: bytes, key: Ed25519PrivateKey) -> bytes:
    """Append ``key``'s signature to an envelope (or wrap bare signed metadata bytes in a
    new envelope first). Appends even if ``key`` signed already (tests rely on it)."""
    try:
        parsed = _parse_envelope(envelope_or_signed)
    except MalformedPackage:
        _decode(envelope_or_signed, "signed metadata")  # must at least be our CBOR
        parsed = _Envelope(envelope_or_signed, ())
    sig = key.sign(parsed.signed)
    return _envelope(parsed.signed, [*parsed.signatures, (key_id(_raw(key)), sig)])
