"""COSE_Sign1 (attestation/_cose.py): signing, the strict parser, verification, encoding."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import cbor2
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

import attestation
from attestation import EvidenceError, InvalidIdentity, Sign1, parse_sign1, sign1, verify_sign1
from attestation._cose import MAX_DEPTH, MAX_SIGN1_SIZE, decode, encode, sig_structure

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"cose test key").digest())
PAYLOAD = cbor2.dumps({10: b"n" * 16, 256: b"\x01" + bytes(32)})


@pytest.fixture(scope="module")
def certs() -> tuple[Any, Any]:
    ca_key, ca = attestation.make_ca("COSE Test CA", NOW, key=KEY)
    ueid = attestation.ueid_from_imei("352099001761481")
    device = attestation.issue_device_cert(ca_key, ca, KEY.public_key(), ueid, NOW)
    return ca, device


def der(cert: Any) -> bytes:
    return bytes(cert.public_bytes(Encoding.DER))


# --- signing ------------------------------------------------------------------------------


def test_round_trip(certs: tuple[Any, Any]) -> None:
    _, device = certs
    token = sign1(PAYLOAD, KEY, x5chain=[device])
    msg = parse_sign1(token)
    assert msg.protected == {1: -8, 33: der(device)}
    assert msg.unprotected == {}
    assert msg.payload == PAYLOAD
    assert len(msg.signature) == 64
    assert msg.x5chain == (device,)
    verify_sign1(msg, KEY.public_key())


def test_generic_cbor_decoder_sees_tag_18_and_four_items(certs: tuple[Any, Any]) -> None:
    _, device = certs
    token = sign1(PAYLOAD, KEY, x5chain=[device])
    decoded = cbor2.loads(token)
    assert isinstance(decoded, cbor2.CBORTag) and decoded.tag == 18
    protected, unprotected, payload, signature = decoded.value
    assert cbor2.loads(protected) == {1: -8, 33: der(device)}
    assert unprotected == {} and payload == PAYLOAD and isinstance(signature, bytes)


def test_sig_structure_recomputed_by_hand(certs: tuple[Any, Any]) -> None:
    """RFC 9052 section 4.4, independently of the library: the signature is Ed25519 over
    the CBOR array ["Signature1", protected, h'', payload]."""
    _, device = certs
    token = sign1(PAYLOAD, KEY, x5chain=[device])
    protected, _, payload, signature = cbor2.loads(token).value
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    assert to_be_signed[:1] == b"\x84"  # an array of four
    KEY.public_key().verify(signature, to_be_signed)
    assert sig_structure(protected, payload) == to_be_signed
    with pytest.raises(InvalidSignature):  # the context string matters
        KEY.public_key().verify(signature, cbor2.dumps(["Signature", protected, b"", payload]))


def test_exact_bytes_without_x5chain() -> None:
    """The whole encoding, byte by byte, for the smallest message."""
    token = sign1(b"hi", KEY)
    protected = bytes.fromhex("a10127")  # {1: -8}
    signature = KEY.sign(bytes.fromhex("846a5369676e61747572653143a101274042") + b"hi")
    expected = (
        bytes.fromhex("d284")  # tag 18, array of 4
        + bytes.fromhex("43")
        + protected  # bstr of 3
        + bytes.fromhex("a0")  # empty map
        + bytes.fromhex("42")
        + b"hi"
        + bytes.fromhex("5840")
        + signature
    )
    assert token == expected


def test_x5chain_one_cert_is_a_bstr_several_an_array(certs: tuple[Any, Any]) -> None:
    ca, device = certs
    one = cbor2.loads(cbor2.loads(sign1(PAYLOAD, KEY, x5chain=[device])).value[0])
    assert one[33] == der(device)
    two_token = sign1(PAYLOAD, KEY, x5chain=[device, ca])
    two = cbor2.loads(cbor2.loads(two_token).value[0])
    assert two[33] == [der(device), der(ca)]
    assert parse_sign1(two_token).x5chain == (device, ca)
    none = cbor2.loads(cbor2.loads(sign1(PAYLOAD, KEY)).value[0])
    assert 33 not in none


def test_deterministic(certs: tuple[Any, Any]) -> None:
    _, device = certs
    assert sign1(PAYLOAD, KEY, x5chain=[device]) == sign1(PAYLOAD, KEY, x5chain=[device])


def test_unprotected_header_is_encoded_deterministically() -> None:
    token = sign1(b"x", KEY, unprotected={256: 1, -1: 2, 4: b"kid"})
    unprotected = cbor2.loads(token).value[1]
    assert list(unprotected) == [4, 256, -1]  # bytewise: 04, 19 0100, 20


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"payload": "text"}, "payload must be bytes"),
        ({"key": KEY.public_key()}, "Ed25519PrivateKey"),
        ({"x5chain": [b"not a cert"]}, "x509.Certificate"),
    ],
)
def test_sign1_refuses_bad_inputs(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"payload": b"x", "key": KEY, **kwargs}
    with pytest.raises(InvalidIdentity, match=match):
        sign1(args.pop("payload"), args.pop("key"), **args)


def test_sign1_refuses_long_x5chain(certs: tuple[Any, Any]) -> None:
    with pytest.raises(InvalidIdentity, match="at most 4"):
        sign1(b"x", KEY, x5chain=[certs[1]] * 5)


# --- deterministic encoding ---------------------------------------------------------------


def test_encode_sorts_map_keys_bytewise_not_length_first() -> None:
    """RFC 8949 section 4.2.1 (core deterministic); cbor2's canonical=True is the
    length-first order of RFC 8949 section 4.2.3 and differs."""
    value = {"a": 1, -75001: 2, -1: 3, 256: 4, 10: 5}
    ours = encode(value)
    keys = list(cbor2.loads(ours))
    assert keys == sorted(value, key=cbor2.dumps)
    assert keys == [10, 256, -1, -75001, "a"]
    assert list(cbor2.loads(cbor2.dumps(value, canonical=True))) == [10, -1, "a", 256, -75001]


def test_encode_refuses_types_outside_the_profile() -> None:
    for value in (1.5, True, None, {1: {2: 0.5}}):
        with pytest.raises(TypeError):
            encode(value)


# --- strict parsing -----------------------------------------------------------------------


def good_parts() -> list[Any]:
    protected = cbor2.dumps({1: -8})
    return [protected, {}, PAYLOAD, KEY.sign(sig_structure(protected, PAYLOAD))]


def tagged(parts: Any, tag: int = 18) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(tag, parts))


def with_part(index: int, value: Any) -> Callable[[], bytes]:
    def build() -> bytes:
        parts = good_parts()
        parts[index] = value
        return tagged(parts)

    return build


def protected_map(value: Any) -> Callable[[], bytes]:
    return with_part(0, cbor2.dumps(value))


def raw_protected(data: bytes) -> Callable[[], bytes]:
    return with_part(0, data)


def with_header_value(value_hex: str) -> Callable[[], bytes]:
    """An unprotected header {5: <raw CBOR>}, spliced in as bytes."""

    def build() -> bytes:
        protected, _, payload, signature = good_parts()
        return (
            bytes.fromhex("d284")
            + cbor2.dumps(protected)
            + bytes.fromhex("a105")
            + bytes.fromhex(value_hex)
            + cbor2.dumps(payload)
            + cbor2.dumps(signature)
        )

    return build


STRICT_TABLE: list[tuple[str, Callable[[], bytes], str, str]] = [
    ("empty input", lambda: b"", "malformed-evidence", "not well-formed"),
    ("garbage", lambda: b"\xff\x00", "malformed-evidence", "not well-formed"),
    ("untagged", lambda: cbor2.dumps(good_parts()), "malformed-evidence", "tag 18"),
    ("COSE_Mac0 tag 17", lambda: tagged(good_parts(), 17), "malformed-evidence", "not allowed"),
    (
        "CWT tag 61 around it",
        lambda: tagged(cbor2.CBORTag(18, good_parts()), 61),
        "malformed-evidence",
        "not allowed",
    ),
    ("three items", lambda: tagged(good_parts()[:3]), "malformed-evidence", "exactly 4"),
    ("five items", lambda: tagged([*good_parts(), b""]), "malformed-evidence", "exactly 4"),
    ("a map, not an array", lambda: tagged({1: 2}), "malformed-evidence", "exactly 4"),
    ("protected is a map", with_part(0, {1: -8}), "malformed-evidence", "not a bstr"),
    (
        "protected is an empty map in a bstr",
        raw_protected(b"\xa0"),
        "malformed-evidence",
        "zero-length",
    ),
    ("protected is an array in a bstr", protected_map([1, -8]), "malformed-evidence", "not a map"),
    (
        "protected has trailing bytes",
        raw_protected(cbor2.dumps({1: -8}) + b"\x00"),
        "malformed-evidence",
        "deterministic",
    ),
    (
        "protected int not shortest",
        raw_protected(bytes.fromhex("a1180127")),
        "malformed-evidence",
        "deterministic",
    ),
    (
        "protected keys unsorted",
        raw_protected(bytes.fromhex("a21821400127")),
        "malformed-evidence",
        "deterministic",
    ),
    (
        "protected duplicate key",
        raw_protected(bytes.fromhex("a201270126")),
        "malformed-evidence",
        "not well-formed",
    ),
    (
        "protected indefinite map",
        raw_protected(bytes.fromhex("bf0127ff")),
        "malformed-evidence",
        "not well-formed",
    ),
    ("unprotected is an array", with_part(1, []), "malformed-evidence", "not a map"),
    ("payload is nil (detached)", with_part(2, None), "malformed-evidence", "not allowed"),
    ("payload is text", with_part(2, "claims"), "malformed-evidence", "not a bstr"),
    ("signature is text", with_part(3, "sig"), "malformed-evidence", "not a bstr"),
    ("float in unprotected", with_header_value("f93c00"), "malformed-evidence", "float"),
    ("bool in unprotected", with_header_value("f5"), "malformed-evidence", "bool"),
    ("null in unprotected", with_header_value("f6"), "malformed-evidence", "NoneType"),
    (
        "date tag 1 in unprotected",
        with_header_value("c11a514b67b0"),
        "malformed-evidence",
        "not allowed",
    ),
    (
        "MIME tag 36 in unprotected",
        with_header_value("d8246474657374"),
        "malformed-evidence",
        "not allowed",
    ),
    (
        "bignum tag 2 in unprotected",
        with_header_value("c24101"),
        "malformed-evidence",
        "not allowed",
    ),
    (
        "COSE tag nested in unprotected",
        with_header_value("d28440a04040"),
        "malformed-evidence",
        "nested",
    ),
    ("invalid UTF-8 text", with_header_value("62c328"), "malformed-evidence", "not well-formed"),
    (
        "too deep",
        with_header_value("81" * MAX_DEPTH + "00"),
        "malformed-evidence",
        "not well-formed",
    ),
    (
        "indefinite-length bstr",
        with_header_value("5f4101ff"),
        "malformed-evidence",
        "not well-formed",
    ),
    (
        "int not shortest in unprotected",
        with_header_value("1801"),
        "malformed-evidence",
        "deterministic",
    ),
    (
        "trailing byte",
        lambda: tagged(good_parts()) + b"\x00",
        "malformed-evidence",
        "deterministic",
    ),
    ("array key", with_header_value("a1810100"), "malformed-evidence", "not an int or text"),
    (
        "too large",
        lambda: tagged(good_parts()) + bytes(MAX_SIGN1_SIZE),
        "malformed-evidence",
        "more than",
    ),
    ("crit", protected_map({1: -8, 2: [33]}), "malformed-evidence", "crit"),
    (
        "label in both buckets",
        lambda: sign1(PAYLOAD, KEY, unprotected={1: -8}),
        "unprotected-header",
        "both",
    ),
    (
        "x5chain of one in an array",
        protected_map({1: -8, 33: [b"\x30\x00"]}),
        "malformed-evidence",
        "2 to 4",
    ),
    (
        "x5chain too long",
        protected_map({1: -8, 33: [b"\x30\x00"] * 5}),
        "malformed-evidence",
        "2 to 4",
    ),
    ("x5chain not DER", protected_map({1: -8, 33: b"\x30\x00"}), "malformed-evidence", "DER X.509"),
    ("x5chain an int", protected_map({1: -8, 33: 7}), "malformed-evidence", "not a bstr"),
    (
        "x5chain item an int",
        protected_map({1: -8, 33: [7, b"\x30\x00"]}),
        "malformed-evidence",
        "not a bstr",
    ),
]


@pytest.mark.parametrize(
    ("build", "reason", "match"),
    [pytest.param(b, r, m, id=name) for name, b, r, m in STRICT_TABLE],
)
def test_strict_parsing(build: Callable[[], bytes], reason: str, match: str) -> None:
    with pytest.raises(EvidenceError, match=match) as info:
        parse_sign1(build())
    assert info.value.reason == reason
    assert info.value.code == "EVIDENCE"


def test_parse_accepts_what_the_table_mutates() -> None:
    msg = parse_sign1(tagged(good_parts()))
    verify_sign1(msg, KEY.public_key())


def test_decode_refuses_non_bytes() -> None:
    with pytest.raises(EvidenceError, match="must be bytes"):
        decode(bytearray(b"\xa0"), "x")  # type: ignore[arg-type]


# --- verification -------------------------------------------------------------------------


def parsed(protected: dict[Any, Any], unprotected: dict[Any, Any] | None = None) -> Sign1:
    protected_bytes = cbor2.dumps(protected) if protected else b""
    signature = KEY.sign(sig_structure(protected_bytes, PAYLOAD))
    return parse_sign1(tagged([protected_bytes, unprotected or {}, PAYLOAD, signature]))


@pytest.mark.parametrize(
    ("protected", "unprotected", "reason"),
    [
        ({}, {1: -8}, "unprotected-header"),
        ({4: b"kid"}, {1: -8}, "unprotected-header"),
        ({4: b"kid"}, None, "alg-not-allowed"),
        ({1: -7}, None, "alg-not-allowed"),
        ({1: 0}, None, "alg-not-allowed"),
        ({1: "EdDSA"}, None, "alg-not-allowed"),
        ({1: -19}, None, "alg-not-allowed"),  # Ed25519 (RFC 9864): not on our list
    ],
)
def test_verify_algorithm_rules(
    protected: dict[Any, Any], unprotected: dict[Any, Any] | None, reason: str
) -> None:
    msg = parsed(protected, unprotected)
    with pytest.raises(EvidenceError) as info:
        verify_sign1(msg, KEY.public_key())
    assert info.value.reason == reason


def test_verify_refuses_another_key_and_tampering() -> None:
    msg = parsed({1: -8})
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(EvidenceError) as info:
        verify_sign1(msg, other)
    assert info.value.reason == "bad-signature"
    for tampered in (
        Sign1(
            msg.protected,
            msg.unprotected,
            msg.payload + b"x",
            msg.signature,
            msg.protected_bytes,
            msg.x5chain,
        ),
        Sign1(
            msg.protected,
            msg.unprotected,
            msg.payload,
            msg.signature[:63],
            msg.protected_bytes,
            msg.x5chain,
        ),
        Sign1(
            msg.protected, msg.unprotected, msg.payload, bytes(64), msg.protected_bytes, msg.x5chain
        ),
        Sign1(
            msg.protected,
            msg.unprotected,
            msg.payload,
            msg.signature,
            cbor2.dumps({1: -8, 4: b""}),
            msg.x5chain,
        ),
    ):
        with pytest.raises(EvidenceError) as info:
            verify_sign1(tampered, KEY.public_key())
        assert info.value.reason == "bad-signature"


def test_verify_programmer_errors() -> None:
    msg = parsed({1: -8})
    with pytest.raises(ValueError, match="only EdDSA"):
        verify_sign1(msg, KEY.public_key(), allowed_algs=frozenset({-7}))
    with pytest.raises(TypeError):
        verify_sign1(msg, KEY)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        verify_sign1(b"bytes", KEY.public_key())  # type: ignore[arg-type]
    verify_sign1(msg, KEY.public_key(), allowed_algs=frozenset({-8}))
    with pytest.raises(EvidenceError):  # an empty allow-list allows nothing
        verify_sign1(msg, KEY.public_key(), allowed_algs=frozenset())
