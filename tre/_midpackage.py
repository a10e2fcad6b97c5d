"""HPKE-bound MID packages (issue 6, section 3): the format both sides share.

The issuer (the mno domain's owner) makes a package with :func:`make_package`; the device
checks it in the mno domain and opens it kernel-side (:meth:`tre.Keystore.open_mid_package`),
so K and OPc never reach the domain's memory.

A package is msgpack ``{"header", "enc", "ct", "sig"}``:

- ``header``: msgpack ``{"imsi": str, "txid": 16 random bytes, "counter": int,
  "ueid": bytes}``, kept as the exact bytes that were signed and used as associated data;
- ``enc``, ``ct``: RFC 9180 HPKE, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
  AES-128-GCM, to the device's ``mid-hpke`` key, of msgpack ``{"imsi", "k", "opc", "sqn",
  "amf"}``;
- ``sig``: Ed25519 by the issuer over ``SIG_CONTEXT || header || enc || ct``.

The HPKE ``info`` is ``b"tre/v1/mid/" + ueid`` (the package opens only on that device), and
the header is the associated data. cryptography's public ``Suite`` API (50.x) takes no AAD,
so the associated data is bound through the key schedule instead: the info actually used is
``info || b"/aad/" || SHA-256(aad)`` (:func:`bound_info`), which authenticates the header
exactly as an AEAD AAD would (any change to it makes the open fail).
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

__all__ = [
    "ENC_LEN",
    "INFO_PREFIX",
    "SIG_CONTEXT",
    "SUITE",
    "TXID_LEN",
    "bound_info",
    "hpke_open",
    "hpke_seal",
    "mid_info",
    "pack_header",
    "signed_bytes",
    "unpack",
]

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
ENC_LEN = 32  # an X25519 public key (DHKEM(X25519) Nenc)
INFO_PREFIX = b"tre/v1/mid/"
SIG_CONTEXT = b"tre/v1/mid-package\x00"
TXID_LEN = 16


def mid_info(ueid: bytes) -> bytes:
    """The HPKE info binding a package to the device ``ueid``."""
    return INFO_PREFIX + ueid


def bound_info(info: bytes, aad: bytes) -> bytes:
    """``info`` with the associated data folded in (see the module docstring)."""
    return info + b"/aad/" + hashlib.sha256(aad).digest()


def hpke_seal(
    public: X25519PublicKey, plaintext: bytes, info: bytes, aad: bytes
) -> tuple[bytes, bytes]:
    """Single-shot HPKE base-mode seal: ``(enc, ct)``."""
    out = SUITE.encrypt(plaintext, public, info=bound_info(info, aad))
    return out[:ENC_LEN], out[ENC_LEN:]


def hpke_open(private: X25519PrivateKey, enc: bytes, ct: bytes, info: bytes, aad: bytes) -> bytes:
    """Single-shot HPKE base-mode open; raises ``InvalidTag`` (or ``ValueError``)."""
    if len(enc) != ENC_LEN:
        raise ValueError("enc must be 32 bytes")
    return SUITE.decrypt(enc + ct, private, info=bound_info(info, aad))


def pack_header(imsi: str, txid: bytes, counter: int, ueid: bytes) -> bytes:
    header = {"imsi": imsi, "txid": txid, "counter": counter, "ueid": ueid}
    return msgpack.packb(header, use_bin_type=True)  # type: ignore[no-any-return]


def signed_bytes(header: bytes, enc: bytes, ct: bytes) -> bytes:
    """What the issuer signs (``enc`` has a fixed length; ``header`` is self-delimiting)."""
    return SIG_CONTEXT + header + enc + ct


def unpack(data: bytes, what: str) -> dict[str, Any]:
    """A msgpack map, or ``ValueError``."""
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=len(data))
    except Exception as exc:
        raise ValueError(f"the {what} is not valid msgpack") from exc
    if not isinstance(value, dict):
        raise ValueError(f"the {what} is not a map")
    return value
