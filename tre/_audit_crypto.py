"""The audit log's formats and keys, without I/O (see tre/_audit.py for the log itself).

An entry is public structure around a private body::

    header    = lp("tre/v1/audit-entry") || seq u64 || time f64 || lp(domain) || lp(kind)
    leaf data = header || lp(nonce) || lp(body)        body = AES-256-GCM(audit key of
                                                       domain, msgpack value, aad=header)
    entry     = leaf data || lp(mac)                   mac = HMAC-SHA256(k_seq, leaf data)
    leaf      = SHA-256(0x00 || entry)                 the RFC 9162 leaf hash

(``lp`` puts a 4-byte big-endian length in front; integers are big-endian.) Anyone can
recompute a leaf from its row and check the tree; only the holder of a domain's audit key
can read the body, and only the holder of the chain's first key can check the MACs.

Keys:

- a domain's audit key: ``derive_key(owner_seal_key(TRE CDIs, domain, owner hash, svn 0),
  "audit-log")``: bound to the domain and its owner's key, not to the code, so a domain
  keeps reading its entries across its updates (and the TRE's); another domain's key is
  a different HKDF output and opens nothing of it (GCM checks the domain in the header).
- TRE-wide entries (domain ``"tre"``): ``derive_key(TRE seal CDI, "audit-log/tre")``.
- the MAC chain: ``k_0 = derive_key(TRE seal CDI, "audit-mac-chain")``; ``k_{i+1} =
  HMAC-SHA256(k_i, "tre/v1/audit-mac-step")``, a one-way step (Schneier and Kelsey's
  forward-secure log, 1999): whoever learns ``k_i`` cannot compute an earlier key, so
  cannot forge an earlier MAC. The current key is kept sealed in the database under
  ``derive_key(TRE seal CDI, "audit-chain-seal")`` with its position as associated data.

Checkpoints are signed by the DeviceID key (Ed25519) over::

    lp("tre/v1/audit-checkpoint") || lp(ueid) || size u64 || root || time f64 || bootcount u64
"""

from __future__ import annotations

import hmac
import json
import os
import struct
from collections.abc import Mapping
from hashlib import sha256
from typing import Any

import attrs
import msgpack
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import attestation
from ipc import TREError

__all__ = [
    "TRE_DOMAIN",
    "AuditError",
    "AuditKeys",
    "AuditUnreadable",
    "Checkpoint",
    "MacChain",
    "entry_leaf",
    "leaf_data",
    "open_chain",
    "seal_chain",
]

#: The domain of TRE-wide entries (reserved: no domain may take this id).
TRE_DOMAIN = "tre"
NONCE = 12
#: Largest body (msgpack bytes, before encryption) one entry carries.
MAX_BODY = 16 * 1024

_ENTRY_TAG = b"tre/v1/audit-entry"
_CHECKPOINT_TAG = b"tre/v1/audit-checkpoint"
_STEP = b"tre/v1/audit-mac-step"
_CHAIN_AAD = b"tre/v1/audit-chain"
_F64 = struct.Struct(">d")
CHECKPOINT_FORMAT = "tre-audit-checkpoint/1"


class AuditError(TREError):
    """The audit log cannot do what was asked (a malformed checkpoint file, a log that
    cannot be continued)."""

    code = "AUDIT"


class AuditUnreadable(AuditError):
    """An entry's body does not open with this key. One error for every reason (another
    domain's entry, an altered row, a wrong key), as Fernet does."""

    code = "AUDIT_UNREADABLE"


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def header(seq: int, time: float, domain: str, kind: str) -> bytes:
    return (
        _lp(_ENTRY_TAG)
        + seq.to_bytes(8, "big")
        + _F64.pack(time)
        + _lp(domain.encode("utf-8"))
        + _lp(kind.encode("utf-8"))
    )


def leaf_data(seq: int, time: float, domain: str, kind: str, nonce: bytes, body: bytes) -> bytes:
    """What the MAC covers: every field of the entry but the MAC."""
    return header(seq, time, domain, kind) + _lp(nonce) + _lp(body)


def entry_leaf(data: bytes, mac: bytes) -> bytes:
    """The RFC 9162 leaf hash of an entry (its leaf data and MAC)."""
    return attestation.leaf_hash(data + _lp(mac))


# --- the forward-secure MAC chain --------------------------------------------------------


class MacChain:
    """``k_position``, the key of the next entry. :meth:`step` replaces it by the next one.

    What "erased" means here: the old key's ``bytes`` object loses its last reference and
    CPython frees it, but does not overwrite freed memory, so until it is reused the old
    value may still be in the process's memory (as may copies inside OpenSSL's HMAC, which
    does cleanse its own buffers). The database keeps only the sealed current key."""

    __slots__ = ("_key", "position")

    def __init__(self, key: bytes, position: int) -> None:
        self._key = key
        self.position = position

    def __repr__(self) -> str:
        return f"MacChain(position={self.position})"

    def mac(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, sha256).digest()

    def step(self) -> None:
        self._key = hmac.new(self._key, _STEP, sha256).digest()
        self.position += 1

    def copy(self) -> MacChain:
        return MacChain(self._key, self.position)

    def same_key(self, other: MacChain) -> bool:
        return self.position == other.position and hmac.compare_digest(self._key, other._key)


def seal_chain(sealer: AESGCM, chain: MacChain) -> bytes:
    nonce = os.urandom(NONCE)
    aad = _CHAIN_AAD + chain.position.to_bytes(8, "big")
    return nonce + sealer.encrypt(nonce, chain._key, aad)


def open_chain(sealer: AESGCM, blob: bytes, position: int) -> MacChain | None:
    """The sealed chain key, if it is the key of ``position``; else None."""
    aad = _CHAIN_AAD + position.to_bytes(8, "big")
    try:
        key = sealer.decrypt(blob[:NONCE], blob[NONCE:], aad)
    except (InvalidTag, ValueError, TypeError):
        return None
    return MacChain(key, position)


# --- body keys ------------------------------------------------------------------------------


class AuditKeys:
    """The body keys: one per domain (by its owner hash) and the TRE's. Kernel-side, or
    the device owner's tool; never handed to a domain."""

    def __init__(self, tre: attestation.TreCdis, owner_hashes: Mapping[str, bytes]) -> None:
        self._tre = tre
        self._owners = dict(owner_hashes)
        self._aeads: dict[str, AESGCM] = {}

    def __repr__(self) -> str:
        return f"AuditKeys({sorted(self._owners)})"

    def chain_start(self) -> MacChain:
        """``k_0``, the MAC key of entry 0."""
        return MacChain(attestation.derive_key(self._tre.seal, "audit-mac-chain").reveal(), 0)

    def chain_sealer(self) -> AESGCM:
        """Seals the current chain key in the database."""
        return AESGCM(attestation.derive_key(self._tre.seal, "audit-chain-seal").reveal())

    def knows(self, domain: str) -> bool:
        return domain == TRE_DOMAIN or domain in self._owners

    def _aead(self, domain: str) -> AESGCM:
        aead = self._aeads.get(domain)
        if aead is None:
            if domain == TRE_DOMAIN:
                key = attestation.derive_key(self._tre.seal, "audit-log/tre")
            else:
                owner_key = attestation.owner_seal_key(self._tre, domain, self._owners[domain], 0)
                key = attestation.derive_key(owner_key, "audit-log")
            aead = self._aeads[domain] = AESGCM(key.reveal())
        return aead

    def encrypt(
        self, seq: int, time: float, domain: str, kind: str, plain: bytes
    ) -> tuple[bytes, bytes]:
        nonce = os.urandom(NONCE)
        return nonce, self._aead(domain).encrypt(nonce, plain, header(seq, time, domain, kind))

    def decrypt(
        self, reader: str, seq: int, time: float, domain: str, kind: str, nonce: bytes, body: bytes
    ) -> Any:
        """Open an entry's body with ``reader``'s key (``"tre"`` or a domain id)."""
        if not self.knows(reader):
            raise AuditUnreadable(f"no audit key for {reader!r}")
        try:
            # The header names the entry's domain: another domain's key fails the tag.
            plain = self._aead(reader).decrypt(nonce, body, header(seq, time, domain, kind))
            return msgpack.unpackb(plain, raw=False, strict_map_key=True)
        except Exception:
            raise AuditUnreadable(f"entry {seq} cannot be opened with this key") from None


def pack_body(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    if len(data) > MAX_BODY:
        raise AuditError(f"an audit entry's body is at most {MAX_BODY} bytes")
    return data


# --- checkpoints ------------------------------------------------------------------------------


@attrs.frozen
class Checkpoint:
    """A signed tree head: the log had ``size`` entries with this root."""

    size: int
    root: bytes
    time: float
    boot_count: int
    signature: bytes = b""

    def message(self, ueid: bytes) -> bytes:
        return (
            _lp(_CHECKPOINT_TAG)
            + _lp(ueid)
            + self.size.to_bytes(8, "big")
            + self.root
            + _F64.pack(self.time)
            + self.boot_count.to_bytes(8, "big")
        )

    def signed(self, key: Ed25519PrivateKey, ueid: bytes) -> Checkpoint:
        return attrs.evolve(self, signature=key.sign(self.message(ueid)))

    def verify(self, public: Ed25519PublicKey, ueid: bytes) -> bool:
        try:
            public.verify(self.signature, self.message(ueid))
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    def to_json(self, ueid: bytes, cert_pem: str) -> str:
        data = {
            "format": CHECKPOINT_FORMAT,
            "ueid": ueid.hex(),
            "size": self.size,
            "root": self.root.hex(),
            "time": self.time,
            "boot_count": self.boot_count,
            "signature": self.signature.hex(),
            "device_cert": cert_pem,
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> tuple[Checkpoint, bytes, str]:
        """(checkpoint, ueid, device certificate PEM) from :meth:`to_json`'s output."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
                raise ValueError("not a checkpoint")
            size, time, boots = data["size"], data["time"], data["boot_count"]
            if type(size) is not int or size < 0 or type(boots) is not int or boots < 0:
                raise ValueError("bad size or boot count")
            if type(time) not in (int, float):
                raise ValueError("bad time")
            root = bytes.fromhex(data["root"])
            if len(root) != attestation.DIGEST_SIZE:
                raise ValueError("bad root")
            checkpoint = cls(size, root, float(time), boots, bytes.fromhex(data["signature"]))
            ueid, cert = bytes.fromhex(data["ueid"]), data["device_cert"]
            if not isinstance(cert, str):
                raise ValueError("bad certificate")
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(f"not an audit checkpoint file ({exc})") from None
        return checkpoint, ueid, cert
