"""Entity Attestation Tokens (attestation/_eat.py) and reference values (_reference.py)."""

from __future__ import annotations

import hashlib
import json
import tomllib
from datetime import UTC, datetime
from typing import Any

import attrs
import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import attestation
from attestation import (
    DomainClaims,
    DomainReference,
    EvidenceError,
    InvalidIdentity,
    InvalidReference,
    Reference,
    TreClaims,
    parse_claims,
    parse_reference,
    parse_sign1,
    reference_to_dict,
)
from attestation._cose import encode, sign1

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IMEI = "352099001761481"
UEID = attestation.ueid_from_imei(IMEI)
UDS = attestation.Secret(bytes(range(32)))
OWNER = attestation.owner_key_hash(bytes(range(32, 64)))
MEASUREMENT = hashlib.sha256(b"meter v3").digest()
NONCE = bytes(range(16))


@attrs.frozen
class Pki:
    device_key: Ed25519PrivateKey
    device: Any
    alias_key: Ed25519PrivateKey
    alias: Any


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca_key, ca = attestation.make_ca("EAT Test CA", NOW)
    device_key = attestation.device_id_key(UDS)
    device = attestation.issue_device_cert(ca_key, ca, device_key.public_key(), UEID, NOW)
    tre = attestation.tre_cdis(UDS, bytes(32), bytes(32))
    alias_key = attestation.alias_key(attestation.domain_cdis(tre, "meter", MEASUREMENT))
    alias = attestation.issue_alias_cert(
        device_key, device, alias_key.public_key(), "meter", MEASUREMENT, OWNER, 3, NOW
    )
    return Pki(device_key, device, alias_key, alias)


def domain_kwargs(**over: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "ueid": UEID,
        "domain_id": "meter",
        "measurement": MEASUREMENT,
        "owner_hash": OWNER,
        "svn": 3,
        "state": "active",
        "iat": 1_772_366_400,
    }
    return {**kwargs, **over}


def make_domain_token(pki: Pki, **over: Any) -> bytes:
    return attestation.domain_token(pki.alias_key, pki.alias, **domain_kwargs(**over))


def tre_kwargs(pki: Pki, **over: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "nonce": NONCE,
        "ueid": UEID,
        "bootcount": 7,
        "tre_measurement": bytes(range(32)),
        "policy_hash": bytes(range(1, 33)),
        "lifecycle": "secured",
        "submods": {"meter": make_domain_token(pki)},
        "iat": 1_772_366_401,
    }
    return {**kwargs, **over}


def make_tre_token(pki: Pki, **over: Any) -> bytes:
    return attestation.tre_token(pki.device_key, pki.device, **tre_kwargs(pki, **over))


# --- round trips --------------------------------------------------------------------------


def test_domain_token_round_trip(pki: Pki) -> None:
    token = make_domain_token(pki)
    msg = parse_sign1(token)
    assert msg.x5chain == (pki.alias,)
    attestation.verify_sign1(msg, pki.alias_key.public_key())
    claims = parse_claims(msg.payload)
    assert claims == DomainClaims(
        ueid=UEID,
        iat=1_772_366_400,
        domain_id="meter",
        measurement=MEASUREMENT,
        owner_hash=OWNER,
        svn=3,
        state="active",
    )
    assert DomainClaims.from_wire(msg.payload) == claims
    assert claims.to_wire() == msg.payload


def test_tre_token_round_trip(pki: Pki) -> None:
    nested = make_domain_token(pki)
    token = make_tre_token(pki)
    msg = parse_sign1(token)
    assert msg.x5chain == (pki.device,)
    attestation.verify_sign1(msg, pki.device_key.public_key())
    claims = parse_claims(msg.payload)
    assert isinstance(claims, TreClaims)
    assert (claims.nonce, claims.ueid, claims.bootcount, claims.iat) == (
        NONCE,
        UEID,
        7,
        1_772_366_401,
    )
    assert claims.tre_measurement == bytes(range(32))
    assert claims.policy_hash == bytes(range(1, 33))
    assert claims.lifecycle == "secured"
    assert claims.submods == {"meter": b"\xd8\x3d" + nested}
    assert attestation.unwrap_nested(claims.submods["meter"]) == nested
    assert claims.to_wire() == msg.payload


def test_claim_keys_as_a_generic_decoder_sees_them(pki: Pki) -> None:
    outer = cbor2.loads(cbor2.loads(make_tre_token(pki)).value[2])
    assert set(outer) == {6, 10, 256, 265, 266, 267, -75001, -75002, -75003}
    assert outer[265] == "tag:tre.example,2026:eat/v1" == attestation.PROFILE
    nested = cbor2.loads(outer[266]["meter"])  # bstr .cbor 61(18([...]))
    assert isinstance(nested, cbor2.CBORTag) and nested.tag == 61
    assert isinstance(nested.value, cbor2.CBORTag) and nested.value.tag == 18
    inner = cbor2.loads(nested.value.value[2])
    assert set(inner) == {6, 256, 265, -75010, -75011, -75012, -75013, -75014}
    assert inner[-75010] == "meter" and inner[-75013] == 3 and inner[-75014] == "active"


def test_claim_key_constants() -> None:
    assert (attestation.IAT, attestation.NONCE, attestation.UEID) == (6, 10, 256)
    assert (attestation.EAT_PROFILE, attestation.SUBMODS, attestation.BOOTCOUNT) == (265, 266, 267)
    private = [
        attestation.TRE_MEASUREMENT,
        attestation.POLICY_HASH,
        attestation.LIFECYCLE,
        attestation.DOMAIN_ID,
        attestation.MEASUREMENT,
        attestation.OWNER_HASH,
        attestation.SVN,
        attestation.DOMAIN_STATE,
    ]
    assert private == [-75001, -75002, -75003, -75010, -75011, -75012, -75013, -75014]
    assert all(key < -65536 for key in private)  # RFC 8392 section 9.1: private use
    assert attestation.CWT_TAG == 61


# --- deterministic encoding ---------------------------------------------------------------


def test_tokens_are_deterministic(pki: Pki) -> None:
    assert make_domain_token(pki) == make_domain_token(pki)
    assert make_tre_token(pki) == make_tre_token(pki)


def test_fast_encoding_agrees_with_the_generic_encoder(pki: Pki) -> None:
    claims = parse_claims(parse_sign1(make_tre_token(pki)).payload)
    assert isinstance(claims, TreClaims)
    many = attrs.evolve(
        claims,
        submods={name: b"\xd8\x3d\xd2" for name in ("b", "a", "zz", "a" * 30, "A", "m-1", "0")},
    )
    values = {
        6: many.iat,
        10: many.nonce,
        256: many.ueid,
        265: attestation.PROFILE,
        266: many.submods,
        267: many.bootcount,
        -75001: many.tre_measurement,
        -75002: many.policy_hash,
        -75003: many.lifecycle,
    }
    assert many.to_wire() == encode(values)


def test_claims_keys_in_bytewise_order(pki: Pki) -> None:
    payload = parse_sign1(make_tre_token(pki)).payload
    keys = list(cbor2.loads(payload))
    assert keys == sorted(keys, key=cbor2.dumps)
    assert keys == [6, 10, 256, 265, 266, 267, -75001, -75002, -75003]


# --- input checks -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [8, 9, 32, 63, 64])
def test_nonce_sizes_accepted(pki: Pki, size: int) -> None:
    token = make_tre_token(pki, nonce=bytes(size))
    claims = parse_claims(parse_sign1(token).payload)
    assert isinstance(claims, TreClaims) and claims.nonce == bytes(size)


@pytest.mark.parametrize("nonce", [b"", bytes(7), bytes(65), bytes(1000), "00" * 16, None])
def test_nonce_refused(pki: Pki, nonce: Any) -> None:
    with pytest.raises(InvalidIdentity, match="nonce"):
        make_tre_token(pki, nonce=nonce)


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"ueid": b"\x03" + bytes(13)}, "ueid"),
        ({"ueid": "not bytes"}, "ueid"),
        ({"bootcount": -1}, "bootcount"),
        ({"bootcount": True}, "bootcount"),
        ({"bootcount": 2**64}, "bootcount"),
        ({"tre_measurement": bytes(31)}, "tre_measurement"),
        ({"policy_hash": "00" * 32}, "policy_hash"),
        ({"lifecycle": "Secured"}, "lifecycle"),
        ({"lifecycle": ""}, "lifecycle"),
        ({"iat": 1.5}, "iat"),
        ({"submods": {"bad id!": b"\xd2"}}, "domain id"),
        ({"submods": {"meter": b"\xa0"}}, "not a tagged COSE_Sign1"),
        ({"submods": {"meter": "token"}}, "not a tagged COSE_Sign1"),
        ({"submods": [("meter", b"\xd2")]}, "mapping"),
        ({"submods": {f"d{i}": b"\xd2" for i in range(129)}}, "at most 128"),
    ],
)
def test_tre_token_refuses(pki: Pki, over: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidIdentity, match=match):
        make_tre_token(pki, **over)


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"svn": 4}, "TcbInfo"),
        ({"domain_id": "oem"}, "TcbInfo"),
        ({"measurement": bytes(32)}, "TcbInfo"),
        ({"owner_hash": bytes(32)}, "TcbInfo"),
        ({"svn": -1}, "svn"),
        ({"state": "LOCKED"}, "state"),
        ({"state": "a" * 33}, "state"),
        ({"domain_id": "../x"}, "domain id"),
        ({"measurement": b"short"}, "measurement"),
    ],
)
def test_domain_token_refuses(pki: Pki, over: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidIdentity, match=match):
        make_domain_token(pki, **over)


def test_signers_must_match_their_certificates(pki: Pki) -> None:
    with pytest.raises(InvalidIdentity, match="does not match"):
        attestation.domain_token(pki.device_key, pki.alias, **domain_kwargs())
    with pytest.raises(InvalidIdentity, match="does not match"):
        attestation.tre_token(pki.alias_key, pki.device, **tre_kwargs(pki))
    with pytest.raises(InvalidIdentity, match="Ed25519PrivateKey"):
        attestation.tre_token(pki.device_key.public_key(), pki.device, **tre_kwargs(pki))  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentity, match=r"x509\.Certificate"):
        attestation.tre_token(pki.device_key, b"cert", **tre_kwargs(pki))  # type: ignore[arg-type]


# --- strict claim parsing -----------------------------------------------------------------


def outer_claims(pki: Pki) -> dict[int, Any]:
    return dict(cbor2.loads(parse_sign1(make_tre_token(pki)).payload))


def nested_claims(pki: Pki) -> dict[int, Any]:
    return dict(cbor2.loads(parse_sign1(make_domain_token(pki)).payload))


def changed(claims: dict[int, Any], key: int, value: Any) -> bytes:
    out = dict(claims)
    if value is _DROP:
        del out[key]
    else:
        out[key] = value
    # Deterministic key order by hand: encode() refuses the off-profile values tested here.
    return cbor2.dumps({k: out[k] for k in sorted(out, key=cbor2.dumps)})


_DROP = object()


@pytest.mark.parametrize(
    ("key", "value", "reason", "match"),
    [
        (265, "tag:other.example,2026:eat/v1", "unknown-profile", "eat_profile"),
        (265, _DROP, "malformed-claims", "eat_profile"),
        (10, _DROP, "malformed-claims", "lacks the claim"),
        (10, bytes(7), "nonce-length", "8 to 64"),
        (10, bytes(65), "nonce-length", "8 to 64"),
        (10, [bytes(16)], "nonce-length", "must be bytes"),
        (256, b"\x09" + bytes(16), "malformed-claims", "ueid"),
        (267, -1, "malformed-claims", "bootcount"),
        (267, "7", "malformed-claims", "bootcount"),
        (6, _DROP, "malformed-claims", "iat"),
        (-75001, bytes(33), "malformed-claims", "tre-measurement"),
        (-75002, None, "malformed-claims", "not allowed"),
        (-75003, "SECURED", "malformed-claims", "lifecycle"),
        (266, [], "malformed-claims", "submods must be a map"),
        (266, {"meter": {1: 2}}, "malformed-claims", "not a bstr"),
        (266, {"me ter": b""}, "malformed-claims", "domain id"),
        (266, {f"d{i}": b"" for i in range(129)}, "malformed-claims", "at most 128"),
        (-75010, "meter", "malformed-claims", "does not define"),
        (-99999, 1, "malformed-claims", "does not define"),
        (2, "subject", "malformed-claims", "does not define"),
    ],
)
def test_outer_claims_strict(pki: Pki, key: int, value: Any, reason: str, match: str) -> None:
    payload = changed(outer_claims(pki), key, value)
    with pytest.raises(EvidenceError, match=match) as info:
        TreClaims.from_wire(payload)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        (-75010, "Meter!", "domain id"),
        (-75011, bytes(31), "measurement"),
        (-75012, _DROP, "owner-hash"),
        (-75013, 2**31, "svn"),
        (-75013, False, "bool"),
        (-75014, "Active", "domain-state"),
        (10, bytes(16), "does not define"),  # nested tokens carry no nonce
    ],
)
def test_nested_claims_strict(pki: Pki, key: int, value: Any, match: str) -> None:
    payload = changed(nested_claims(pki), key, value)
    with pytest.raises(EvidenceError, match=match) as info:
        DomainClaims.from_wire(payload)
    assert info.value.reason == "malformed-claims"


def test_claims_must_be_a_deterministic_map() -> None:
    with pytest.raises(EvidenceError, match="not a map"):
        parse_claims(cbor2.dumps([1, 2]))
    with pytest.raises(EvidenceError, match="deterministic"):
        parse_claims(cbor2.dumps({267: 1, 10: b"x"}))  # keys out of order


def test_parse_claims_dispatches(pki: Pki) -> None:
    assert isinstance(parse_claims(encode(nested_claims(pki))), DomainClaims)
    assert isinstance(parse_claims(encode(outer_claims(pki))), TreClaims)


def test_nested_token_wrapping() -> None:
    token = sign1(b"x", Ed25519PrivateKey.generate())
    assert attestation.wrap_nested(token) == b"\xd8\x3d" + token
    assert attestation.unwrap_nested(b"\xd8\x3d" + token) == token
    for bad in (token, b"\xd9\x00\x3d" + token, b"\xd8\x3d\xd1" + token[1:], b"", "text"):
        with pytest.raises(EvidenceError, match="61"):
            attestation.unwrap_nested(bad)  # type: ignore[arg-type]


# --- reference values ---------------------------------------------------------------------

M1, M2, O1 = (hashlib.sha256(s).digest() for s in (b"m1", b"m2", b"o1"))

REFERENCE = {
    "domains": {
        "oem": {"measurements": [M1.hex(), M2.hex()], "owner_hash": O1.hex(), "min_svn": 2},
        "meter": {"measurements": [M2.hex()]},
    },
    "require_all": False,
    "tre_measurements": [M1.hex()],
    "policy_hashes": [M2.hex()],
}


def test_reference_round_trip() -> None:
    ref = parse_reference(REFERENCE)
    assert ref == Reference(
        domains={
            "oem": DomainReference(measurements=frozenset({M1, M2}), owner_hash=O1, min_svn=2),
            "meter": DomainReference(measurements=frozenset({M2}), owner_hash=None, min_svn=0),
        },
        require_all=False,
        tre_measurements=frozenset({M1}),
        policy_hashes=frozenset({M2}),
    )
    data = reference_to_dict(ref)
    assert parse_reference(data) == ref
    assert parse_reference(json.loads(json.dumps(data))) == ref
    assert data["domains"]["meter"] == {"measurements": [M2.hex()], "min_svn": 0}


def test_reference_from_toml() -> None:
    text = f"""
require_all = true

[domains.oem]
measurements = ["{M1.hex().upper()}"]
owner_hash = "{O1.hex()}"
min_svn = 1
"""
    ref = parse_reference(tomllib.loads(text))
    assert ref.require_all and ref.domains["oem"].measurements == frozenset({M1})
    assert ref.tre_measurements == frozenset() and ref.policy_hashes == frozenset()
    minimal = reference_to_dict(Reference(domains={}))
    assert minimal == {"domains": {}, "require_all": True}


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(REFERENCE))
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is _DROP:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("domains",), _DROP, "domains is required"),
        (("domains",), [], "domains: expected a table"),
        (("extra",), 1, "unknown key.*extra"),
        (("require_all",), "yes", "require_all"),
        (("domains", "bad id!"), {"measurements": [M1.hex()]}, "domains.bad id!"),
        (("domains", "oem"), [], "domains.oem: expected a table"),
        (("domains", "oem", "colour"), "red", r"domains\.oem\.colour"),
        (("domains", "oem", "measurements"), _DROP, r"domains\.oem\.measurements is required"),
        (("domains", "oem", "measurements"), [], r"domains\.oem\.measurements: must list"),
        (
            ("domains", "oem", "measurements"),
            M1.hex(),
            r"domains\.oem\.measurements: expected a list",
        ),
        (("domains", "oem", "measurements"), [M1.hex()[:-2]], r"measurements\[0\]"),
        (("domains", "oem", "measurements"), [M1.hex(), "zz" * 32], r"measurements\[1\]"),
        (("domains", "oem", "measurements"), [" " + M1.hex()[1:]], r"measurements\[0\]"),
        (("domains", "oem", "owner_hash"), 5, r"domains\.oem\.owner_hash"),
        (("domains", "oem", "min_svn"), -1, r"domains\.oem\.min_svn"),
        (("domains", "oem", "min_svn"), True, r"domains\.oem\.min_svn"),
        (("domains", "oem", "min_svn"), "2", r"domains\.oem\.min_svn"),
        (("tre_measurements",), [1], r"tre_measurements\[0\]"),
        (("policy_hashes",), "x", "policy_hashes: expected a list"),
    ],
)
def test_reference_strict(path: tuple[str, ...], value: Any, match: str) -> None:
    with pytest.raises(InvalidReference, match=match) as info:
        parse_reference(_with(path, value))
    assert info.value.code == "INVALID_REFERENCE"


def test_reference_objects_validate() -> None:
    with pytest.raises(InvalidReference, match="at least one"):
        DomainReference(measurements=frozenset())
    with pytest.raises(InvalidReference, match="measurements"):
        DomainReference(measurements={M1})  # type: ignore[arg-type]
    with pytest.raises(InvalidReference, match="owner_hash"):
        DomainReference(measurements=frozenset({M1}), owner_hash=b"short")
    with pytest.raises(InvalidReference, match="min_svn"):
        DomainReference(measurements=frozenset({M1}), min_svn=-1)
    with pytest.raises(InvalidReference, match="domain id"):
        Reference(domains={"bad id!": DomainReference(measurements=frozenset({M1}))})
    with pytest.raises(InvalidReference, match="DomainReference"):
        Reference(domains={"oem": {"measurements": [M1]}})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        reference_to_dict(REFERENCE)  # type: ignore[arg-type]
    with pytest.raises(InvalidReference, match="expected a table"):
        parse_reference([])  # type: ignore[arg-type]
