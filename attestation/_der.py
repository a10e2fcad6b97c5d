"""A tiny DER (ITU-T X.690) writer and reader for the TCG DICE TcbInfo extension.

Only what the alias certificates carry is supported. From the TCG DICE Attestation
Architecture (the DiceTcbInfo extension), OID ``tcg-dice-TcbInfo`` = 2.23.133.5.4.1::

    DiceTcbInfo ::= SEQUENCE {
        vendor   [0] IMPLICIT UTF8String OPTIONAL,
        model    [1] IMPLICIT UTF8String OPTIONAL,
        version  [2] IMPLICIT UTF8String OPTIONAL,
        svn      [3] IMPLICIT INTEGER OPTIONAL,
        layer    [4] IMPLICIT INTEGER OPTIONAL,
        index    [5] IMPLICIT INTEGER OPTIONAL,
        fwids    [6] IMPLICIT FWIDLIST OPTIONAL,
        ... }
    FWIDLIST ::= SEQUENCE SIZE (1..MAX) OF FWID
    FWID ::= SEQUENCE { hashAlg OBJECT IDENTIFIER, digest OCTET STRING }

We write exactly ``model`` = the domain id, ``svn`` = the domain's svn and ``fwids`` = two
SHA-256 (2.16.840.1.101.3.4.2.1) FWIDs, in this order:

    fwids[0]  the domain measurement (:func:`attestation.measure_domain`)
    fwids[1]  the owner key hash (:func:`attestation.owner_key_hash`)

The reader accepts exactly that shape, in strict DER (definite minimal lengths, minimal
integers, no trailing bytes), and raises :class:`InvalidIdentity` for anything else.
"""

from __future__ import annotations

from typing import TypedDict

from ._dice import DIGEST_SIZE, MAX_SVN, _check_digest, _check_svn, check_domain_id
from ._errors import InvalidIdentity

__all__ = [
    "SHA256_OID",
    "TCB_INFO_OID",
    "TcbInfo",
    "decode_oid",
    "decode_tcb_info",
    "encode_oid",
    "encode_tcb_info",
]

#: tcg-dice-TcbInfo (TCG DICE Attestation Architecture).
TCB_INFO_OID = "2.23.133.5.4.1"
#: id-sha256 (NIST, RFC 5754).
SHA256_OID = "2.16.840.1.101.3.4.2.1"

# Universal tags.
_INTEGER = 0x02
_OCTET_STRING = 0x04
_OID = 0x06
_SEQUENCE = 0x30
# Context-specific tags of DiceTcbInfo (IMPLICIT: primitive 0x80|n, constructed 0xA0|n).
_MODEL = 0x81
_SVN = 0x83
_FWIDS = 0xA6


class TcbInfo(TypedDict):
    """What :func:`decode_tcb_info` and :func:`attestation.read_tcb_info` return."""

    domain_id: str
    svn: int
    measurement: bytes
    owner_hash: bytes


# --- writer -------------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def _integer(tag: int, value: int) -> bytes:
    if value < 0:
        raise InvalidIdentity("only non-negative integers are written")
    # Minimal two's complement: one extra byte when the top bit would be set.
    return _tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def encode_oid(dotted: str) -> bytes:
    """DER of an OBJECT IDENTIFIER given in dotted form (tag, length, base-128 arcs)."""
    try:
        arcs = [int(part) for part in dotted.split(".")]
    except ValueError:
        raise InvalidIdentity(f"not a dotted OID: {dotted!r}") from None
    if len(arcs) < 2 or arcs[0] > 2 or any(a < 0 for a in arcs) or (arcs[0] < 2 and arcs[1] > 39):
        raise InvalidIdentity(f"not a valid OID: {dotted!r}")
    content = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        content += bytes(reversed(chunk))
    return _tlv(_OID, bytes(content))


def encode_tcb_info(domain_id: str, measurement: bytes, owner_hash: bytes, svn: int) -> bytes:
    """The DER DiceTcbInfo for a domain: model, svn, fwids = [measurement, owner_hash]."""
    model = check_domain_id(domain_id).encode("utf-8")
    digests = (_check_digest("measurement", measurement), _check_digest("owner_hash", owner_hash))
    sha256 = encode_oid(SHA256_OID)
    fwids = b"".join(_tlv(_SEQUENCE, sha256 + _tlv(_OCTET_STRING, d)) for d in digests)
    body = _tlv(_MODEL, model) + _integer(_SVN, _check_svn(svn)) + _tlv(_FWIDS, fwids)
    return _tlv(_SEQUENCE, body)


# --- reader -------------------------------------------------------------------------------


def _bad(why: str) -> InvalidIdentity:
    return InvalidIdentity(f"malformed TcbInfo: {why}")


def _read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """One TLV at ``pos``: (tag, content, position after it). Strict DER lengths."""
    if pos + 2 > len(data):
        raise _bad("truncated element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise _bad("multi-byte tags are not used")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0:
            raise _bad("indefinite length is not DER")
        if count > 4 or pos + count > len(data):
            raise _bad("length too long or truncated")
        raw = data[pos : pos + count]
        pos += count
        if raw[0] == 0:
            raise _bad("length has a leading zero byte (not DER)")
        length = int.from_bytes(raw, "big")
        if length < 0x80:
            raise _bad("long-form length for a short length (not DER)")
    end = pos + length
    if end > len(data):
        raise _bad("element runs past the end of its container")
    return tag, data[pos:end], end


def _items(data: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        tag, content, pos = _read(data, pos)
        out.append((tag, content))
    return out


def _expect(items: list[tuple[int, bytes]], tags: tuple[int, ...], what: str) -> list[bytes]:
    got = tuple(tag for tag, _ in items)
    if got != tags:
        shown = ", ".join(f"0x{t:02x}" for t in got) or "nothing"
        raise _bad(f"{what}: expected tags {', '.join(f'0x{t:02x}' for t in tags)}, got {shown}")
    return [content for _, content in items]


def decode_oid(content: bytes) -> str:
    """Dotted form of the *content* octets of a DER OBJECT IDENTIFIER (minimal arcs only)."""
    if not content or content[-1] & 0x80:
        raise _bad("object identifier is empty or truncated")
    arcs: list[int] = []
    value = 0
    start = True
    for byte in content:
        if start and byte == 0x80:
            raise _bad("object identifier arc has a leading 0x80 (not DER)")
        value = (value << 7) | (byte & 0x7F)
        start = not byte & 0x80
        if start:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [first // 40, first % 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def _decode_uint(content: bytes) -> int:
    if not content:
        raise _bad("empty integer")
    if content[0] & 0x80:
        raise _bad("negative integer")
    if len(content) > 1 and content[0] == 0 and not content[1] & 0x80:
        raise _bad("integer has a redundant leading zero (not DER)")
    return int.from_bytes(content, "big")


def decode_tcb_info(data: bytes) -> TcbInfo:
    """Parse the DER written by :func:`encode_tcb_info`; :class:`InvalidIdentity` otherwise."""
    if not isinstance(data, bytes):
        raise _bad(f"expected bytes, not {type(data).__name__}")
    (outer,) = _expect(_items(data), (_SEQUENCE,), "DiceTcbInfo")
    model, svn_raw, fwids_raw = _expect(_items(outer), (_MODEL, _SVN, _FWIDS), "fields")
    try:
        domain_id = check_domain_id(model.decode("utf-8"))
    except UnicodeDecodeError:
        raise _bad("model is not UTF-8") from None
    except InvalidIdentity as exc:
        raise _bad(f"model: {exc.message}") from None
    svn = _decode_uint(svn_raw)
    if svn > MAX_SVN:
        raise _bad(f"svn {svn} is above {MAX_SVN}")
    digests: list[bytes] = []
    for fwid in _expect(_items(fwids_raw), (_SEQUENCE, _SEQUENCE), "fwids"):
        oid, digest = _expect(_items(fwid), (_OID, _OCTET_STRING), "FWID")
        if decode_oid(oid) != SHA256_OID:
            raise _bad(f"FWID hash algorithm {decode_oid(oid)} is not SHA-256")
        if len(digest) != DIGEST_SIZE:
            raise _bad(f"FWID digest is {len(digest)} bytes, not {DIGEST_SIZE}")
        digests.append(digest)
    return TcbInfo(domain_id=domain_id, svn=svn, measurement=digests[0], owner_hash=digests[1])
