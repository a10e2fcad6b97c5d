"""The DER writer and reader for the TCG DiceTcbInfo extension."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import attestation
from attestation import InvalidIdentity, TcbInfo, _der

M = hashlib.sha256(b"measurement").digest()
OWN = hashlib.sha256(b"owner").digest()
SHA256_DER = bytes.fromhex("0609608648016503040201")


def fwid(digest: bytes, oid: bytes = SHA256_DER) -> bytes:
    body = oid + b"\x04" + bytes([len(digest)]) + digest
    return b"\x30" + bytes([len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = (
        bytes([n])
        if n < 128
        else bytes([0x81, n])
        if n < 256
        else bytes([0x82]) + n.to_bytes(2, "big")
    )
    return bytes([tag]) + length + content


def tcb(model: bytes = b"meter", svn: bytes = b"\x02", fwids: bytes | None = None) -> bytes:
    fwids = fwid(M) + fwid(OWN) if fwids is None else fwids
    return tlv(0x30, tlv(0x81, model) + tlv(0x83, svn) + tlv(0xA6, fwids))


def test_exact_encoding() -> None:
    """Byte for byte, written out by hand from the ASN.1 in the module docstring."""
    expected = (
        b"\x30\x6a"  # SEQUENCE, 106 bytes
        + b"\x81\x05meter"  # model [1] IMPLICIT UTF8String
        + b"\x83\x01\x02"  # svn [3] IMPLICIT INTEGER 2
        + b"\xa6\x5e"  # fwids [6] IMPLICIT SEQUENCE OF, 94 bytes
        + b"\x30\x2d"  # FWID, 45 bytes
        + SHA256_DER
        + b"\x04\x20"
        + M
        + b"\x30\x2d"
        + SHA256_DER
        + b"\x04\x20"
        + OWN
    )
    assert attestation.encode_tcb_info("meter", M, OWN, 2) == expected == tcb()


def test_round_trip() -> None:
    der = attestation.encode_tcb_info("meter", M, OWN, 2)
    assert attestation.decode_tcb_info(der) == TcbInfo(
        domain_id="meter", svn=2, measurement=M, owner_hash=OWN
    )


@given(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True),
    st.integers(0, attestation.MAX_SVN),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
)
def test_round_trip_property(domain_id: str, svn: int, m: bytes, o: bytes) -> None:
    der = attestation.encode_tcb_info(domain_id, m, o, svn)
    assert attestation.decode_tcb_info(der) == {
        "domain_id": domain_id,
        "svn": svn,
        "measurement": m,
        "owner_hash": o,
    }


@pytest.mark.parametrize(
    ("svn", "content"),
    [
        (0, "00"),
        (127, "7f"),
        (128, "0080"),
        (255, "00ff"),
        (256, "0100"),
        (32767, "7fff"),
        (32768, "008000"),
        (2**31 - 1, "7fffffff"),
    ],
)
def test_minimal_integers(svn: int, content: str) -> None:
    der = attestation.encode_tcb_info("a", M, OWN, svn)
    c = bytes.fromhex(content)
    assert b"\x83" + bytes([len(c)]) + c in der
    assert attestation.decode_tcb_info(der)["svn"] == svn


def test_long_lengths_round_trip() -> None:
    der = attestation.encode_tcb_info("x" * 64, M, OWN, 1)
    assert der[:3] == b"\x30\x81\xa5"  # 165 > 127: long form, one length byte
    assert attestation.decode_tcb_info(der)["domain_id"] == "x" * 64


@pytest.mark.parametrize(
    ("dotted", "der"),
    [
        ("2.16.840.1.101.3.4.2.1", "0609608648016503040201"),
        ("2.23.133.5.4.1", "0606678105050401"),
        ("1.2.840.113549", "06062a864886f70d"),
        ("2.999.3", "0603883703"),
    ],
)
def test_oids(dotted: str, der: str) -> None:
    assert _der.encode_oid(dotted).hex() == der
    assert _der.decode_oid(bytes.fromhex(der)[2:]) == dotted


@pytest.mark.parametrize("dotted", ["", "1", "3.1", "1.40", "a.b", "1.-2"])
def test_bad_oids_are_not_written(dotted: str) -> None:
    with pytest.raises(InvalidIdentity):
        _der.encode_oid(dotted)


@pytest.mark.parametrize("content", ["", "2a86", "2a8048"])
def test_bad_oids_are_not_read(content: str) -> None:
    with pytest.raises(InvalidIdentity):
        _der.decode_oid(bytes.fromhex(content))


MD5_DER = bytes.fromhex("06082a864886f70d0205")
BODY = tcb()[2:]  # the content of the outer SEQUENCE (its length, 106, is short form)
FWIDS = fwid(M) + fwid(OWN)
MALFORMED: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "got nothing"),
    "not a sequence": (b"\x31\x6a" + BODY, "expected tags 0x30"),
    "trailing byte": (tcb() + b"\x00", "truncated"),
    "trailing element": (tcb() + b"\x05\x00", "expected tags 0x30, got 0x30, 0x05"),
    "truncated": (tcb()[:-1], "past the end"),
    "indefinite length": (b"\x30\x80" + BODY + b"\x00\x00", "indefinite"),
    "long form for a short length": (b"\x30\x81\x6a" + BODY, "long-form length"),
    "length with a leading zero": (b"\x30\x82\x00\x6a" + BODY, "leading zero"),
    "length of 5 bytes": (b"\x30\x85\x00\x00\x00\x00\x6a" + BODY, "too long"),
    "multi-byte tag": (b"\x1f\x01\x00", "multi-byte"),
    "missing svn": (tlv(0x30, tlv(0x81, b"meter") + tlv(0xA6, FWIDS)), "fields"),
    "fields out of order": (
        tlv(0x30, tlv(0x83, b"\x02") + tlv(0x81, b"meter") + tlv(0xA6, FWIDS)),
        "fields",
    ),
    "extra vendor field": (
        tlv(0x30, tlv(0x80, b"v") + tlv(0x81, b"m") + tlv(0x83, b"\x02") + tlv(0xA6, FWIDS)),
        "fields",
    ),
    "explicit tag for model": (
        tlv(0x30, tlv(0xA1, tlv(0x0C, b"meter")) + tlv(0x83, b"\x02") + tlv(0xA6, FWIDS)),
        "fields",
    ),
    "negative svn": (tcb(svn=b"\xff"), "negative"),
    "non-minimal svn": (tcb(svn=b"\x00\x02"), "redundant leading zero"),
    "empty svn": (tcb(svn=b""), "empty integer"),
    "svn too large": (tcb(svn=b"\x00\x80\x00\x00\x00"), "above"),
    "model not utf-8": (tcb(model=b"\xff"), "not UTF-8"),
    "model not a domain id": (tcb(model=b"a/b"), "model"),
    "no fwids": (tcb(fwids=b""), "fwids"),
    "one fwid": (tcb(fwids=fwid(M)), "fwids"),
    "three fwids": (tcb(fwids=FWIDS + fwid(M)), "fwids"),
    "short digest": (tcb(fwids=fwid(M[:31]) + fwid(OWN)), "31 bytes"),
    "md5 fwid": (tcb(fwids=fwid(M, MD5_DER) + fwid(OWN)), "not SHA-256"),
    "fwid not a sequence": (tcb(fwids=b"\x31" + fwid(M)[1:] + fwid(OWN)), "fwids"),
    "fwid fields swapped": (
        tcb(fwids=tlv(0x30, tlv(0x04, M) + SHA256_DER) + fwid(OWN)),
        "FWID",
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_tcb_info_is_refused(name: str) -> None:
    data, reason = MALFORMED[name]
    with pytest.raises(InvalidIdentity, match="malformed TcbInfo") as info:
        attestation.decode_tcb_info(data)
    assert reason in info.value.message


def test_decode_needs_bytes() -> None:
    with pytest.raises(InvalidIdentity):
        attestation.decode_tcb_info(bytearray(tcb()))  # type: ignore[arg-type]


@given(st.binary(max_size=200))
def test_garbage_only_ever_raises_invalid_identity(data: bytes) -> None:
    with contextlib.suppress(InvalidIdentity):
        attestation.decode_tcb_info(data)


@given(st.integers(0, 99), st.integers(0, 255))
def test_single_byte_corruptions_never_crash(pos: int, value: int) -> None:
    der = bytearray(tcb())
    der[pos] = value
    try:
        info = attestation.decode_tcb_info(bytes(der))
    except InvalidIdentity:
        return
    assert set(info) == {"domain_id", "svn", "measurement", "owner_hash"}


@pytest.mark.parametrize(
    "args",
    [
        ("a/b", M, OWN, 1),
        ("meter", M[:31], OWN, 1),
        ("meter", M, OWN + b"\x00", 1),
        ("meter", M, OWN, -1),
        ("meter", M, OWN, 2**31),
    ],
)
def test_encode_refuses_bad_inputs(args: tuple[Any, ...]) -> None:
    with pytest.raises(InvalidIdentity):
        attestation.encode_tcb_info(*args)
