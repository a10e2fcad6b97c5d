"""Per-domain keystores: handles, never key bytes.

A domain reaches its keys only through ``ctx.keystore``, a :class:`Keystore` bound by the
kernel to that domain: no call takes a domain id, so there is no way to name another
domain's keys. Private and secret key material is unsealed once, when the domain boots,
and held kernel-side behind labels; crypto operations (sign, MAC, encrypt, seal) are
synchronous CPU work on those held keys, and only changes (generate, derive, delete) touch
the database, from a worker thread.

Each stored secret is AEAD-sealed (AES-256-GCM) with (domain, label, version, kind,
policy, svn) as associated data, under a key derived from the domain's sealing CDI:

- ``OWNER`` (the default for stored keys): the key for the svn the row was written at;
  survives the owner's updates (same owner, svn >= the row's svn), refuses a downgrade;
- ``MEASUREMENT``: bound to the exact domain measurement (code, manifest, owner, svn).

:meth:`Keystore.seal` / :meth:`Keystore.unseal` apply the same two policies to data the
domain keeps itself (SGX's MRENCLAVE / MRSIGNER+ISVSVN).

Two kinds of row are not generated:

- ``milenage``: a MID credential, K || OPc (16 + 16 bytes), brought in once with
  :meth:`Keystore.import_milenage` and then only *run* (:meth:`Keystore.aka`: MILENAGE and
  the card side of UMTS AKA, tre/_milenage.py and tre/_aka.py); K and OPc are never given
  back by any call.
- ``record``: a small blob of the domain's own state (:meth:`Keystore.put_record`,
  :meth:`Keystore.record`), sealed and indexed like a key row, and *replaced* in one
  transaction. Because every row is in the authenticated key index (tre/_keyindex.py), an
  older copy of a record spliced back is refused like an older key (the mno domain keeps
  its MID records in one).

Besides rows, a domain has replay-protected **counters** (:meth:`Keystore.advance_counter`,
tre/_counters.py): values that only go up, each raised with one durable write of its own
authenticated record and no transaction. The mno domain keeps each MID's highest accepted
SQN in one, so a rolled-back SQN cannot re-open a replayed AUTN.

A MID arrives in an HPKE-bound package (tre/_midpackage.py): :meth:`Keystore.open_mid_package`
opens it with a held ``x25519`` key and imports K || OPc as a ``milenage`` key in the same
step, so K and OPc never enter the domain's memory.
"""

from __future__ import annotations

import enum
import os
import re
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import msgpack
import trio
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import attestation
from ipc import TREError

from ._aka import Result, authenticate_with
from ._counters import CounterBank, CounterTampered
from ._keyindex import ROW_COLUMNS, KeyIndex
from ._midpackage import hpke_open, unpack
from ._milenage import KEY_LEN, Milenage
from ._store import AsyncStore

if TYPE_CHECKING:
    from ._audit import AuditLog
    from ._integrity import IntegrityMonitor

__all__ = [
    "MAX_COUNTERS",
    "MAX_RECORD",
    "BadMidPackage",
    "DomainKeys",
    "KeyExists",
    "KeyInfo",
    "KeyKind",
    "KeyQuotaExceeded",
    "KeyUnavailable",
    "Keystore",
    "KeystoreError",
    "KeystoreLocked",
    "NoSuchKey",
    "SealPolicy",
    "UnsealError",
    "WrongKeyKind",
    "load_counters",
    "load_keys",
    "verify_ed25519",
]

_SEAL_PACKER = msgpack.Packer(use_bin_type=True, autoreset=True)
LABEL_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
NONCE = 12
_RAW = (Encoding.Raw, PublicFormat.Raw)


class KeyKind(enum.Enum):
    ED25519 = "ed25519"  # sign / verify
    X25519 = "x25519"  # key agreement (derive)
    AEAD = "aead"  # AES-256-GCM encrypt / decrypt
    HMAC = "hmac"  # HMAC-SHA256 mac / verify_mac
    MILENAGE = "milenage"  # a MID's K || OPc: aka (imported, never generated)
    RECORD = "record"  # the domain's own sealed state: put_record / record (not a key)


#: The kinds :meth:`Keystore.generate` makes; the others are imported or written.
GENERATED_KINDS = frozenset({KeyKind.ED25519, KeyKind.X25519, KeyKind.AEAD, KeyKind.HMAC})
#: The largest record :meth:`Keystore.put_record` takes (bytes).
MAX_RECORD = 4096
#: Most replay-protected counters per domain (:meth:`Keystore.advance_counter`).
MAX_COUNTERS = 32


class SealPolicy(enum.Enum):
    MEASUREMENT = "measurement"
    OWNER = "owner"


class KeystoreError(TREError):
    """Base of keystore errors."""

    code = "KEYSTORE"


class NoSuchKey(KeystoreError):
    code = "NO_SUCH_KEY"


class KeyExists(KeystoreError):
    code = "KEY_EXISTS"


class WrongKeyKind(KeystoreError):
    """The key exists but is not of the kind the operation needs."""

    code = "WRONG_KEY_KIND"


class KeyQuotaExceeded(KeystoreError):
    code = "KEY_QUOTA"


class KeyUnavailable(KeystoreError):
    """A stored key cannot be opened: its row was altered, or it is sealed to a measurement
    or svn this domain no longer has. Other keys are not affected."""

    code = "KEY_UNAVAILABLE"


class UnsealError(KeystoreError):
    """Sealed data cannot be opened by this domain. One error for every reason (altered,
    another domain's, another measurement, a higher svn), as Fernet does."""

    code = "UNSEAL"


class BadMidPackage(KeystoreError):
    """A MID package does not open with this key, or what it holds is not a MID. One error
    for every reason (tampered, made for another device, malformed)."""

    code = "BAD_PACKAGE"


class KeystoreLocked(KeystoreError):
    """The domain (or the whole TRE) is locked: its keys cannot be used."""

    code = "LOCKED"


@attrs.frozen
class KeyInfo:
    """What a domain may know about one of its keys (never the secret)."""

    label: str
    kind: KeyKind
    version: int
    policy: SealPolicy
    public: bytes  # raw public key for ed25519/x25519, b"" for symmetric keys
    created: float
    available: bool = True


@attrs.define(eq=False, repr=False)
class _Entry:
    info: KeyInfo
    material: Any  # the cryptography key object, or None when unavailable


def _aad(*parts: object) -> bytes:
    return msgpack.packb(list(parts), use_bin_type=True)  # type: ignore[no-any-return]


def _material(kind: KeyKind, secret: bytes) -> Any:
    if kind is KeyKind.ED25519:
        return Ed25519PrivateKey.from_private_bytes(secret)
    if kind is KeyKind.X25519:
        return X25519PrivateKey.from_private_bytes(secret)
    if kind is KeyKind.AEAD:
        return AESGCM(secret)
    if kind is KeyKind.MILENAGE:
        if len(secret) != 2 * KEY_LEN:
            raise ValueError("a milenage key is K || OPc, 32 bytes")
        return Milenage(secret[:KEY_LEN], secret[KEY_LEN:])  # holds K's AES key schedule
    return secret  # HMAC key bytes or a record, held kernel-side


def _public(kind: KeyKind, material: Any) -> bytes:
    if kind in (KeyKind.ED25519, KeyKind.X25519):
        return material.public_key().public_bytes(*_RAW)  # type: ignore[no-any-return]
    return b""


class DomainKeys:
    """Kernel-side key material of one domain: its storage and sealing keys and the cache
    of unsealed keys. Never handed to the domain (it gets a :class:`Keystore`)."""

    def __init__(
        self,
        domain_id: str,
        tre: attestation.TreCdis,
        measure: Callable[[], bytes],
        owner_hash: bytes,
        svn: int,
        store: AsyncStore,
        index: KeyIndex,
        *,
        max_keys: int,
        max_bytes: int,
        owner_key: bytes = b"",
        ueid: bytes = b"",
        epoch: bytes = b"",
        counters: CounterBank | None = None,
    ) -> None:
        self.domain_id = domain_id
        #: the domain owner's raw Ed25519 public key (b"" when unsigned) and the device's
        #: UEID: public facts about the domain itself (``ctx.owner_key``, ``ctx.ueid``)
        self.owner_key = owner_key
        self.ueid = ueid
        self.index = index
        #: the integrity monitor's freshness gate (None on a throw-away device)
        self.gate: IntegrityMonitor | None = None
        #: the audit log (set at boot; see tre/_audit.py): key changes are recorded in
        #: their own transaction, sealing failures queued
        self.audit: AuditLog | None = None
        self.svn = svn
        self.max_keys = max_keys
        self.max_bytes = max_bytes
        self.store = store
        self.locked = False
        self._tre = tre
        self._owner_hash = owner_hash
        #: the install epoch: every storage and sealing key of the domain depends on it, so
        #: replacing it (remove, transfer) crypto-erases what was sealed before
        self._epoch = epoch
        #: replay-protected counters (tre/_counters.py) and their values, loaded at boot
        self.counters = counters
        self.counter_values: dict[str, int | None] = {}  # None: does not verify
        self.counter_lock = trio.Lock()
        # The measurement (hashing the domain's code) and the CDIs are made on first use:
        # a domain that never touches its keystore costs nothing at boot.
        self._measure = measure
        self._measurement: bytes | None = None
        self._measurement_cdi: attestation.Secret | None = None
        self._report_key: attestation.Secret | None = None
        self._aeads: dict[tuple[str, SealPolicy, int], AESGCM] = {}
        self._sealers: dict[tuple[SealPolicy, int], tuple[AESGCM, bytes]] = {}
        self.entries: dict[str, _Entry] = {}

    @property
    def measurement(self) -> bytes:
        if self._measurement is None:
            self._measurement = self._measure()
        return self._measurement

    def __repr__(self) -> str:
        return f"<DomainKeys {self.domain_id} ({len(self.entries)} keys)>"

    def aead(self, purpose: str, policy: SealPolicy, svn: int) -> AESGCM:
        """The AES-GCM key of ``policy`` for ``purpose`` (rows or seal), at ``svn``."""
        key = (purpose, policy, svn)
        cached = self._aeads.get(key)
        if cached is None:
            if policy is SealPolicy.MEASUREMENT:
                if self._measurement_cdi is None:
                    cdis = attestation.domain_cdis(self._tre, self.domain_id, self.measurement)
                    self._measurement_cdi = cdis.seal_measurement
                cdi = self._measurement_cdi
            else:
                cdi = attestation.owner_seal_key(self._tre, self.domain_id, self._owner_hash, svn)
            if self._epoch:
                cdi = attestation.domain_epoch_key(cdi, self._epoch)
            cached = AESGCM(attestation.derive_key(cdi, purpose).reveal())
            self._aeads[key] = cached
        return cached

    @property
    def owner_hash(self) -> bytes:
        return self._owner_hash

    def report_key(self) -> attestation.Secret:
        """The key that MACs local reports *targeted at* this domain (SGX's report key)."""
        if self._report_key is None:
            cdis = attestation.domain_cdis(self._tre, self.domain_id, self.measurement)
            self._report_key = attestation.report_key(cdis.attest)
        return self._report_key

    def identity(self) -> tuple[Ed25519PrivateKey, bytes, bytes]:
        """The domain's DICE alias key (kernel-side) with its measurement and owner hash."""
        cdis = attestation.domain_cdis(self._tre, self.domain_id, self.measurement)
        return attestation.alias_key(cdis), self.measurement, self._owner_hash

    def sealer(self, policy: SealPolicy, svn: int) -> tuple[AESGCM, bytes]:
        """The AES-GCM key for :meth:`Keystore.seal` and its associated-data prefix (the
        domain, policy and svn the blob is bound to), both made once."""
        key = (policy, svn)
        cached = self._sealers.get(key)
        if cached is None:
            context = _aad("tre/v1/seal", self.domain_id, policy.value, svn)
            cached = (self.aead("seal", policy, svn), context)
            self._sealers[key] = cached
        return cached

    def _row_aad(self, label: str, version: int, kind: str, policy: str, svn: int) -> bytes:
        return _aad("tre/v1/key-row", self.domain_id, label, version, kind, policy, svn)

    def open_row(self, row: tuple[Any, ...], *, indexed: bool = True) -> _Entry:
        """One stored key, unsealed; or marked unavailable (never raising) if its row does
        not open for this domain or does not hold together."""
        label, version, kind_s, policy_s, svn, nonce, sealed, public, created = row
        try:
            kind, policy = KeyKind(kind_s), SealPolicy(policy_s)
        except ValueError:
            kind, policy = KeyKind.HMAC, SealPolicy.OWNER  # placeholders: the row is unusable
            info = KeyInfo(label, kind, version, policy, b"", created, available=False)
            return _Entry(info, None)
        info = KeyInfo(label, kind, version, policy, public, created)
        unavailable = _Entry(attrs.evolve(info, available=False), None)
        if not indexed or (policy is SealPolicy.OWNER and svn > self.svn):
            return unavailable
        try:
            secret = self.aead("keystore-row", policy, svn).decrypt(
                nonce, sealed, self._row_aad(label, version, kind_s, policy_s, svn)
            )
            material = _material(kind, secret)
        except (InvalidTag, ValueError):
            return unavailable
        if _public(kind, material) != public:  # the public column is checked, not trusted
            return unavailable
        return _Entry(info, material)

    def row_secret(self, row: tuple[Any, ...]) -> bytes | None:
        """The secret of a stored row (label, version, kind, policy, svn, nonce, sealed,
        ...) if it opens for this domain, else None. Kernel-side (re-sealing on update)."""
        label, version, kind_s, policy_s, svn, nonce, sealed = row[:7]
        try:
            policy = SealPolicy(policy_s)
            if policy is SealPolicy.OWNER and svn > self.svn:
                return None
            aad = self._row_aad(label, version, kind_s, policy_s, svn)
            return self.aead("keystore-row", policy, svn).decrypt(nonce, sealed, aad)
        except (InvalidTag, ValueError):
            return None

    def seal_row(
        self, label: str, version: int, kind: KeyKind, policy: SealPolicy, secret: bytes
    ) -> tuple[bytes, bytes]:
        nonce = os.urandom(NONCE)
        aad = self._row_aad(label, version, kind.value, policy.value, self.svn)
        return nonce, self.aead("keystore-row", policy, self.svn).encrypt(nonce, secret, aad)

    def load(self, rows: list[tuple[bool, tuple[Any, ...]]]) -> None:
        """Unseal every stored key of the domain once (at boot); see :func:`load_keys`.
        A row that does not match its indexed digest (``False``: altered, or put back from
        an older copy) is unavailable, like any other row that does not hold together."""
        self.entries = {row[0]: self.open_row(row, indexed=ok) for ok, row in rows}

    def lock(self) -> None:
        """Tamper response: forget every unsealed key; every later use raises."""
        self.locked = True
        self.entries.clear()
        self._aeads.clear()
        self._sealers.clear()


async def load_keys(store: AsyncStore, index: KeyIndex, domains: list[DomainKeys]) -> None:
    """Check the key index, then load the stored keys of every domain in one read (boot
    stays one query however many domains there are)."""
    by_id = {keys.domain_id: keys for keys in domains}

    def fetch(
        conn: sqlite3.Connection,
    ) -> tuple[list[tuple[bool, tuple[Any, ...]]], set[tuple[str, str]]]:
        (generation,) = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        digests = index.check(conn, int(generation))
        rows = conn.execute(
            f"SELECT {ROW_COLUMNS}, created FROM keys ORDER BY domain, label"  # noqa: S608
        ).fetchall()
        present = {(row[0], row[1]) for row in rows}
        return [(index.row_ok(row[:-1], digests), row) for row in rows], set(digests) - present

    fetched, missing = await store.read(fetch)
    grouped: dict[str, list[tuple[bool, tuple[Any, ...]]]] = {}
    for ok, row in fetched:
        grouped.setdefault(row[0], []).append((ok, row[1:]))
    for domain_id, rows in grouped.items():
        if domain_id in by_id:
            by_id[domain_id].load(rows)
    # A row the authenticated index lists but the table lacks was deleted behind the
    # keystore's back: that label is unavailable, not absent (absent would let a domain
    # start again from nothing, e.g. mno's MID records and their replay protection).
    for domain_id, label in sorted(missing):
        keys = by_id.get(domain_id)
        if keys is not None:
            info = KeyInfo(label, KeyKind.HMAC, 0, SealPolicy.OWNER, b"", 0.0, available=False)
            keys.entries[label] = _Entry(info, None)


async def load_counters(store: AsyncStore, domains: list[DomainKeys]) -> None:
    """Read every domain's replay-protected counters once (at boot), in one thread hop."""

    def read() -> list[dict[str, int | None]]:
        return [k.counters.load(k.domain_id, k._epoch) if k.counters else {} for k in domains]

    for keys, values in zip(domains, await store.call(read), strict=True):
        keys.counter_values = values


class Keystore:
    """A domain's keystore handle (``ctx.keystore``). See the module docstring."""

    __slots__ = ("__keys",)

    def __init__(self, keys: DomainKeys) -> None:
        self.__keys = keys

    def __repr__(self) -> str:
        return f"<Keystore of {self.__keys.domain_id!r}>"

    # --- lookups -------------------------------------------------------------------------

    def _usable(self) -> DomainKeys:
        keys = self.__keys
        if keys.locked:
            raise KeystoreLocked(f"the keystore of {keys.domain_id!r} is locked")
        gate = keys.gate
        if gate is not None and not gate.fresh:
            gate.require()  # key use relies on integrity: refused while the check is stale
        return keys

    def _entry(self, label: str, kind: KeyKind | None = None) -> _Entry:
        entry = self._usable().entries.get(label)
        if entry is None:
            raise NoSuchKey(f"no key {label!r}")
        if entry.material is None:
            raise KeyUnavailable(f"key {label!r} cannot be opened by this domain")
        if kind is not None and entry.info.kind is not kind:
            raise WrongKeyKind(f"key {label!r} is {entry.info.kind.value}, not {kind.value}")
        return entry

    def list(self) -> list[KeyInfo]:
        """Every key of this domain, available or not, by label."""
        return sorted((e.info for e in self._usable().entries.values()), key=lambda i: i.label)

    def info(self, label: str) -> KeyInfo:
        entry = self._usable().entries.get(label)
        if entry is None:
            raise NoSuchKey(f"no key {label!r}")
        return entry.info

    def public_key(self, label: str) -> bytes:
        """The raw public key of an ed25519 or x25519 key."""
        info = self._entry(label).info
        if not info.public:
            raise WrongKeyKind(f"key {label!r} is symmetric and has no public key")
        return info.public

    # --- operations on held keys -------------------------------------------------------------

    def sign(self, label: str, data: bytes) -> bytes:
        return self._entry(label, KeyKind.ED25519).material.sign(data)  # type: ignore[no-any-return]

    def verify(self, label: str, data: bytes, signature: bytes) -> bool:
        key: Ed25519PrivateKey = self._entry(label, KeyKind.ED25519).material
        return verify_ed25519(key.public_key().public_bytes(*_RAW), data, signature)

    def mac(self, label: str, data: bytes) -> bytes:
        h = hmac.HMAC(self._entry(label, KeyKind.HMAC).material, hashes.SHA256())
        h.update(data)
        return h.finalize()

    def verify_mac(self, label: str, data: bytes, tag: bytes) -> bool:
        h = hmac.HMAC(self._entry(label, KeyKind.HMAC).material, hashes.SHA256())
        h.update(data)
        try:
            h.verify(tag)  # constant-time comparison inside cryptography
        except InvalidSignature:
            return False
        return True

    def encrypt(self, label: str, plaintext: bytes, aad: bytes = b"") -> bytes:
        """AES-256-GCM with a fresh random nonce; returns ``nonce || ciphertext``."""
        nonce = os.urandom(NONCE)
        aead: AESGCM = self._entry(label, KeyKind.AEAD).material
        return nonce + aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, label: str, blob: bytes, aad: bytes = b"") -> bytes:
        aead: AESGCM = self._entry(label, KeyKind.AEAD).material
        try:
            return aead.decrypt(blob[:NONCE], blob[NONCE:], aad)
        except (InvalidTag, ValueError):
            raise UnsealError("the ciphertext cannot be decrypted with this key") from None

    def aka(
        self,
        label: str,
        rand: bytes,
        autn: bytes,
        highest_sqn: int,
        *,
        amf_check: Callable[[bytes], bool] | None = None,
    ) -> Result:
        """Run the card side of UMTS AKA (tre/_aka.py) with the held MILENAGE key
        ``label``: a ``Success`` (RES, CK, IK and the SQN the caller must persist as the new
        highest *before* releasing them) or a ``Resync`` (AUTS). Raises ``MacFailure`` and
        ``AmfRejected`` (tre/_aka.py), ``ValueError``/``TypeError`` for malformed input."""
        m: Milenage = self._entry(label, KeyKind.MILENAGE).material
        return authenticate_with(m, rand, autn, highest_sqn, amf_check=amf_check)

    def record(self, label: str) -> bytes:
        """The data last written with :meth:`put_record` under ``label``."""
        return self._entry(label, KeyKind.RECORD).material  # type: ignore[no-any-return]

    def seal(
        self, data: bytes, policy: SealPolicy | str = SealPolicy.MEASUREMENT, aad: bytes = b""
    ) -> bytes:
        """Encrypt ``data`` so that only this domain can unseal it: with ``MEASUREMENT``
        only the identical domain; with ``OWNER`` the same owner's domain at an svn at least
        this one. The result is opaque bytes the domain may keep anywhere."""
        keys = self._usable()
        if type(policy) is not SealPolicy:
            policy = _policy(policy)
        nonce = os.urandom(NONCE)
        svn = keys.svn
        aead, context = keys.sealer(policy, svn)
        ct = aead.encrypt(nonce, data, context + aad if aad else context)
        # [version, policy, svn, nonce, ciphertext] as msgpack, packed without a Packer per
        # call: the fields are exact built-in types, so the shared packer cannot be re-entered
        return _SEAL_PACKER.pack([1, policy.value, svn, nonce, ct])  # type: ignore[no-any-return]

    def unseal(self, blob: bytes, aad: bytes = b"") -> bytes:
        keys = self._usable()
        try:
            version, policy_s, svn, nonce, ct = msgpack.unpackb(
                blob, raw=False, strict_map_key=True, max_bin_len=len(blob)
            )
            policy = _POLICIES[policy_s]
            if version != 1 or type(svn) is not int or not 0 <= svn <= keys.svn:
                raise ValueError("not for this domain")
            aead, context = keys.sealer(policy, svn)
            return aead.decrypt(nonce, ct, context + aad if aad else context)
        except KeystoreLocked:
            raise
        except Exception:  # malformed, another domain's, another measurement, a higher svn
            if keys.audit is not None:
                keys.audit.note("unseal_failed", keys.domain_id, "sealed data did not open")
            raise UnsealError("the sealed data cannot be opened by this domain") from None

    # --- changes (durable) ----------------------------------------------------------------------

    async def generate(
        self, label: str, kind: KeyKind | str, *, policy: SealPolicy | str = SealPolicy.OWNER
    ) -> KeyInfo:
        """Create a key of ``kind`` under ``label``; durable when this returns."""
        kind, policy = _kind(kind), _policy(policy)
        if kind not in GENERATED_KINDS:
            raise WrongKeyKind(f"a {kind.value} key cannot be generated")
        secret = {
            KeyKind.ED25519: lambda: Ed25519PrivateKey.generate().private_bytes_raw(),
            KeyKind.X25519: lambda: X25519PrivateKey.generate().private_bytes_raw(),
        }.get(kind, lambda: os.urandom(32))()
        return await self._store(label, kind, policy, secret)

    async def derive(
        self,
        label: str,
        source: str,
        *,
        kind: KeyKind | str = KeyKind.AEAD,
        peer_public: bytes | None = None,
        context: bytes = b"",
        policy: SealPolicy | str = SealPolicy.OWNER,
    ) -> KeyInfo:
        """Create a symmetric key (``aead`` or ``hmac``) under ``label`` by HKDF-SHA256 from
        the key ``source``: an x25519 key with ``peer_public`` (key agreement), or an aead
        or hmac key (key derivation). ``context`` is HKDF's info. Nothing is returned but
        the new key's info."""
        kind, policy = _kind(kind), _policy(policy)
        if kind not in (KeyKind.AEAD, KeyKind.HMAC):
            raise WrongKeyKind("derived keys are aead or hmac")
        entry = self._entry(source)
        src_kind = entry.info.kind
        if src_kind is KeyKind.X25519:
            if peer_public is None or len(peer_public) != 32:
                raise WrongKeyKind("an x25519 source needs a 32-byte peer_public")
            try:
                ikm = entry.material.exchange(X25519PublicKey.from_public_bytes(peer_public))
            except ValueError:
                raise WrongKeyKind("the peer public key is not usable") from None
        elif src_kind is KeyKind.HMAC:
            ikm = entry.material
        elif src_kind is KeyKind.AEAD:
            raise WrongKeyKind("derive from an aead key is not supported; use an hmac key")
        else:
            raise WrongKeyKind(f"cannot derive from a {src_kind.value} key")
        info = b"tre/v1/derive/" + kind.value.encode() + b"/" + context
        secret = HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(ikm)
        return await self._store(label, kind, policy, secret)

    async def import_milenage(
        self, label: str, k: bytes, opc: bytes, *, policy: SealPolicy | str = SealPolicy.OWNER
    ) -> KeyInfo:
        """Store a MID credential (K and OPc, 16 bytes each) under ``label``; durable when
        this returns, and never readable back (only :meth:`aka` uses it).

        K and OPc pass through the calling domain's memory once, here; the mno domain does
        not use this: its MIDs arrive only as HPKE-bound packages, which
        :meth:`open_mid_package` opens kernel-side, so that the domain never sees them."""
        policy = _policy(policy)
        for name, value in (("K", k), ("OPc", opc)):
            if not isinstance(value, bytes | bytearray) or len(value) != KEY_LEN:
                raise KeystoreError(f"{name} must be {KEY_LEN} bytes")
        return await self._store(label, KeyKind.MILENAGE, policy, bytes(k) + bytes(opc))

    async def open_mid_package(
        self,
        hpke_label: str,
        enc: bytes,
        ct: bytes,
        info: bytes,
        aad: bytes,
        *,
        policy: SealPolicy | str = SealPolicy.OWNER,
    ) -> tuple[str, int, bytes]:
        """Open an HPKE-bound MID package (tre/_midpackage.py) with the held x25519 key
        ``hpke_label`` and store its K || OPc as the milenage key ``mid.<IMSI>``; durable
        when this returns. Returns ``(imsi, sqn, amf)``: K and OPc are never returned.
        Raises :class:`BadMidPackage` when it does not open or is not a MID."""
        policy = _policy(policy)
        key: X25519PrivateKey = self._entry(hpke_label, KeyKind.X25519).material
        try:
            fields = unpack(hpke_open(key, bytes(enc), bytes(ct), bytes(info), bytes(aad)), "MID")
            imsi, k, opc = fields["imsi"], fields["k"], fields["opc"]
            sqn, amf = fields["sqn"], fields["amf"]
            if not isinstance(imsi, str) or not _IMSI_RE.fullmatch(imsi):
                raise ValueError("imsi")
            if not all(isinstance(v, bytes) and len(v) == KEY_LEN for v in (k, opc)):
                raise ValueError("K and OPc")
            if type(sqn) is not int or not 0 <= sqn < 1 << 48:
                raise ValueError("sqn")
            if not isinstance(amf, bytes) or len(amf) != 2:
                raise ValueError("amf")
        except (InvalidTag, ValueError, KeyError, TypeError):
            raise BadMidPackage("the MID package does not open on this device") from None
        await self._store(_MID_PREFIX + imsi, KeyKind.MILENAGE, policy, k + opc)
        return imsi, sqn, amf

    # --- replay-protected counters (tre/_counters.py) ----------------------------------------

    def counter(self, label: str) -> int:
        """The value of the replay-protected counter ``label`` (0 if never advanced).
        :class:`KeyUnavailable` if its record does not verify (altered or copied)."""
        value = self._usable().counter_values.get(label, 0)
        if value is None:
            raise KeyUnavailable(f"counter {label!r} does not verify")
        return value

    def counters(self) -> dict[str, int | None]:
        """Every counter of the domain: label -> value (None: its record does not verify)."""
        return dict(self._usable().counter_values)

    async def advance_counter(self, label: str, value: int) -> int:
        """Raise the counter ``label`` to ``value``, durably (one in-place write and fsync
        of an authenticated record, no database transaction): when this returns, the
        counter can never be seen below ``value`` again. A lower or equal value changes
        nothing. Returns the counter's value. At most :data:`MAX_COUNTERS` per domain."""
        keys = self._usable()
        if not isinstance(label, str) or not LABEL_RE.fullmatch(label):
            raise KeystoreError(f"a counter label must match {LABEL_RE.pattern}")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
            raise KeystoreError("a counter value is an int in 0..2**63-1")
        # One change of the domain's counters at a time: the check of the current value
        # and the quota, and the update after the write, must not interleave with another.
        async with keys.counter_lock:
            if label in keys.counter_values and keys.counter_values[label] is None:
                raise KeyUnavailable(f"counter {label!r} does not verify: delete it first")
            current = keys.counter_values.get(label)
            if current is None and len(keys.counter_values) >= MAX_COUNTERS:
                raise KeyQuotaExceeded(
                    f"{keys.domain_id!r} may hold at most {MAX_COUNTERS} counters"
                )
            if current is not None and value <= current:
                return current
            bank = keys.counters
            if bank is not None:
                try:
                    await keys.store.call(bank.advance, keys.domain_id, keys._epoch, label, value)
                except CounterTampered:  # its record was altered while the TRE ran
                    keys.counter_values[label] = None
                    raise KeyUnavailable(f"counter {label!r} does not verify") from None
            if keys.locked:  # locked while the write was finishing
                raise KeystoreLocked(f"the keystore of {keys.domain_id!r} is locked")
            value = max(current or 0, value)
            keys.counter_values[label] = value
            return value

    async def delete_counter(self, label: str) -> None:
        """Forget the counter ``label`` for good: it starts again from 0. (The domain's own
        decision, e.g. mno deleting a MID; nothing outside the domain can do it.)"""
        keys = self._usable()
        async with keys.counter_lock:
            if label not in keys.counter_values:
                raise NoSuchKey(f"no counter {label!r}")
            bank = keys.counters
            if bank is not None:
                await keys.store.call(bank.delete, keys.domain_id, label)
            keys.counter_values.pop(label, None)

    async def put_record(
        self, label: str, data: bytes, *, policy: SealPolicy | str = SealPolicy.OWNER
    ) -> KeyInfo:
        """Write (create, or replace in one transaction) the record ``label``: at most
        :data:`MAX_RECORD` bytes of the domain's own state, sealed and indexed like a key
        row. Durable when this returns; a crash leaves the old record or the new one."""
        policy = _policy(policy)
        if not isinstance(data, bytes | bytearray) or len(data) > MAX_RECORD:
            raise KeystoreError(f"a record is at most {MAX_RECORD} bytes")
        return await self._store(label, KeyKind.RECORD, policy, bytes(data), replace=True)

    async def _store(
        self,
        label: str,
        kind: KeyKind,
        policy: SealPolicy,
        secret: bytes,
        *,
        replace: bool = False,
    ) -> KeyInfo:
        keys = self._usable()
        if not isinstance(label, str) or not LABEL_RE.fullmatch(label):
            raise KeystoreError(f"a key label must match {LABEL_RE.pattern}")
        material = _material(kind, secret)
        public = _public(kind, material)
        domain_id, svn = keys.domain_id, keys.svn
        created = time.time()

        def insert(conn: sqlite3.Connection) -> int:
            if keys.locked:  # locked while this write waited: nothing is stored
                raise KeystoreLocked(f"the keystore of {domain_id!r} is locked")
            existing, count, size, last = conn.execute(
                "SELECT (SELECT kind FROM keys WHERE domain = ?1 AND label = ?2), "
                "(SELECT count(*) FROM keys WHERE domain = ?1 AND label != ?2), "
                "(SELECT coalesce(sum(length(sealed) + length(public)), 0) "
                "   FROM keys WHERE domain = ?1 AND label != ?2), "
                "(SELECT version FROM key_digests WHERE domain = ?1 AND label = ?2)",
                (domain_id, label),
            ).fetchone()
            if existing is not None and not (replace and existing == kind.value):
                raise KeyExists(f"key {label!r} already exists")
            if count + 1 > keys.max_keys:
                raise KeyQuotaExceeded(f"{domain_id!r} may hold at most {keys.max_keys} keys")
            version = 1 if last is None else last + 1
            nonce, sealed = keys.seal_row(label, version, kind, policy, secret)
            if size + len(sealed) + len(public) > keys.max_bytes:
                raise KeyQuotaExceeded(f"{domain_id!r} may hold at most {keys.max_bytes} key bytes")
            row = (domain_id, label, version, kind.value, policy.value, svn, nonce, sealed, public)
            if existing is not None:  # a record replaced: the old row and digest go first
                conn.execute("DELETE FROM keys WHERE domain = ? AND label = ?", (domain_id, label))
                keys.index.update(conn, remove=[(domain_id, label)])
            conn.execute("INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row, created))
            keys.index.update(conn, add=[row])
            if keys.audit is not None and existing is None:  # recorded in the same transaction
                detail = f"{label}: {kind.value}, {policy.value}, version {version}"
                keys.audit.in_transaction(conn, "key_created", domain_id, detail)
            return int(version)

        version = await keys.store.write(insert)
        if keys.audit is not None:
            keys.audit.committed()
        info = KeyInfo(label, kind, version, policy, public, created)
        if keys.locked:  # locked while the write was finishing: keep nothing in memory
            raise KeystoreLocked(f"the keystore of {domain_id!r} is locked")
        keys.entries[label] = _Entry(info, material)
        return info

    async def delete(self, label: str) -> None:
        """Delete a key for good (the row is overwritten: SQLite secure_delete)."""
        keys = self._usable()
        if label not in keys.entries:
            raise NoSuchKey(f"no key {label!r}")
        domain_id = keys.domain_id

        def remove(conn: sqlite3.Connection) -> None:
            rows = conn.execute(
                "DELETE FROM keys WHERE domain = ? AND label = ? RETURNING label",
                (domain_id, label),
            ).fetchall()
            keys.index.update(conn, remove=[(domain_id, label)] if rows else [])
            if rows and keys.audit is not None:  # recorded in the same transaction
                keys.audit.in_transaction(conn, "key_deleted", domain_id, label)

        await keys.store.write(remove)
        if keys.audit is not None:
            keys.audit.committed()
        keys.entries.pop(label, None)


_POLICIES = {p.value: p for p in SealPolicy}
_IMSI_RE = re.compile(r"[0-9]{6,15}")
_MID_PREFIX = "mid."


def _kind(kind: KeyKind | str) -> KeyKind:
    try:
        return KeyKind(kind)
    except ValueError:
        raise WrongKeyKind(
            f"{kind!r} is not a key kind ({', '.join(k.value for k in KeyKind)})"
        ) from None


def _policy(policy: SealPolicy | str) -> SealPolicy:
    try:
        return SealPolicy(policy)
    except ValueError:
        raise KeystoreError(f"{policy!r} is not a sealing policy (measurement, owner)") from None


def verify_ed25519(public: bytes, data: bytes, signature: bytes) -> bool:
    """Check an Ed25519 signature against a raw public key (e.g. a peer's ``public``)."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True
