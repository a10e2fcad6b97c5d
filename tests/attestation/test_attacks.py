"""Attacks on remote attestation evidence, as a table: each row names what it expects.

Every row builds evidence from the realistic world of test_verify.py (a manufacturer CA,
devices A and B, domains ``meter`` and ``oem`` with alias certificates and nested tokens),
changes one thing the way an attacker could, and names the problem code and the status
:func:`attestation.verify_evidence` must report. ``only`` rows must report nothing else.
Then hypothesis: random bit flips, byte changes and truncations of good evidence never
raise and are never affirming.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs
import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

import attestation
from attestation._cose import encode
from tests.attestation.test_verify import (
    BOOTCOUNT,
    IAT,
    NONCE,
    NOW,
    World,
    claims_of,
    der,
    evidence,
    flip,
    forge,
    imei,
    make_device,
    outer_claims,
    parts,
    verify,
    world,
)

Built = tuple[bytes, dict[str, Any]]


@attrs.frozen
class Attack:
    name: str
    build: Callable[[World], Built]
    problem: str | None  # None: the evidence is good
    status: str
    only: bool = True


def plain(data: bytes, **over: Any) -> Built:
    return data, over


# --- builders -----------------------------------------------------------------------------


def device_signed(w: World, changes: dict[int, Any]) -> bytes:
    """The outer claims with changes, properly signed by device A (a compromised TRE)."""
    return forge({**outer_claims(w.a), **changes}, w.a.key, x5chain=[w.a.cert])


def flipped_part(data: bytes, part: int, offset: int, bit: int = 0) -> bytes:
    """``data`` with one bit flipped at ``offset`` into item ``part`` of its COSE_Sign1."""
    return flip(data, data.index(parts(data)[part]) + offset, bit)


def with_protected(w: World, protected: dict[Any, Any]) -> bytes:
    return forge(outer_claims(w.a), w.a.key, protected=protected)


def with_unprotected(w: World, unprotected: dict[Any, Any]) -> bytes:
    return forge(outer_claims(w.a), w.a.key, x5chain=[w.a.cert], unprotected=unprotected)


def flipped_in(data: bytes, needle: bytes, offset: int = 0, bit: int = 0) -> bytes:
    index = data.index(needle)
    assert data.count(needle) == 1
    return flip(data, index + offset, bit)


def with_nested(w: World, name: str, token: bytes, **over: Any) -> bytes:
    """Evidence re-signed by device A around a changed nested token."""
    return evidence(w.a, submods={**w.a.tokens(), name: token}, **over)


def nested_flip(w: World, part: int, offset: int) -> bytes:
    return with_nested(w, "meter", flipped_part(w.a.domains["meter"].token, part, offset))


def self_made_chain(w: World) -> bytes:
    evil_key, evil_ca = attestation.make_ca("TRE Test Manufacturer CA", NOW)
    key = Ed25519PrivateKey.generate()
    cert = attestation.issue_device_cert(evil_key, evil_ca, key.public_key(), w.a.ueid, NOW)
    return forge(outer_claims(w.a), key, x5chain=[cert, evil_ca])


def domain_signed_outer(w: World) -> bytes:
    meter = w.a.domains["meter"]
    return forge(outer_claims(w.a), meter.key, x5chain=[meter.cert, w.a.cert])


def ca_signed_outer(w: World) -> bytes:
    return forge(outer_claims(w.a), w.ca_key, x5chain=[w.ca])


def lifted(w: World) -> bytes:
    return with_nested(w, "oem", w.b.domains["oem"].token)


def cross_signed(w: World, *, own_cert: bool) -> bytes:
    """oem's claims signed with meter's alias key."""
    oem, meter = w.a.domains["oem"], w.a.domains["meter"]
    claims = claims_of(oem.token)
    token = forge(claims, meter.key, x5chain=[oem.cert if own_cert else meter.cert])
    return with_nested(w, "oem", token)


def nested_other_ueid(w: World) -> bytes:
    """meter's token, signed by meter's alias key, but naming device B."""
    meter = w.a.domains["meter"]
    claims = {**claims_of(meter.token), 256: w.b.ueid}
    return with_nested(w, "meter", forge(claims, meter.key, x5chain=[meter.cert]))


def usage(*, sign: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def odd_alias(w: World, *, ca: bool, sign: bool) -> bytes:
    """meter's token under an alias certificate the DeviceID issued with other
    constraints (a compromised TRE can issue anything under its DeviceID)."""
    meter = w.a.domains["meter"]
    builder = (
        x509.CertificateBuilder()
        .subject_name(meter.cert.subject)
        .issuer_name(w.a.cert.subject)
        .public_key(meter.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(meter.cert.not_valid_before_utc)
        .not_valid_after(meter.cert.not_valid_after_utc)
    )
    for ext in meter.cert.extensions:
        value: x509.ExtensionType = ext.value
        if isinstance(value, x509.BasicConstraints):
            value = x509.BasicConstraints(ca=ca, path_length=None)
        elif isinstance(value, x509.KeyUsage):
            value = usage(sign=sign, cert_sign=ca)
        builder = builder.add_extension(value, ext.critical)
    cert = builder.sign(w.a.key, None)
    return with_nested(w, "meter", forge(claims_of(meter.token), meter.key, x5chain=[cert]))


def nested_forged(w: World, name: str, **kw: Any) -> bytes:
    domain = w.a.domains[name]
    kw.setdefault("x5chain", [domain.cert])
    return with_nested(w, name, forge(claims_of(domain.token), domain.key, **kw))


def reference_with(w: World, name: str, **changes: Any) -> dict[str, Any]:
    domains = dict(w.reference.domains)
    domains[name] = attrs.evolve(domains[name], **changes)
    return {"reference": attrs.evolve(w.reference, domains=domains)}


def locked_domain(w: World) -> bytes:
    meter = w.a.domains["meter"]
    token = attestation.domain_token(
        meter.key,
        meter.cert,
        ueid=w.a.ueid,
        domain_id="meter",
        measurement=meter.measurement,
        owner_hash=meter.owner_hash,
        svn=meter.svn,
        state="locked",
        iat=IAT,
    )
    return with_nested(w, "meter", token)


def unwrapped_submod(w: World) -> bytes:
    submods = dict(w.a.tokens())  # no CWT tag 61 around the nested COSE_Sign1
    return device_signed(w, {266: submods})


def reencoded_signature_length(w: World) -> bytes:
    data = evidence(w.a)
    assert data[-66:-64] == b"\x58\x40"
    return data[:-66] + b"\x59\x00\x40" + data[-64:]  # same bstr, non-shortest length


def other_device_claiming_a(w: World) -> bytes:
    return forge({**outer_claims(w.b), 256: w.a.ueid}, w.b.key, x5chain=[w.b.cert])


# --- the table ----------------------------------------------------------------------------

NONCE2 = bytes(range(200, 232))

ATTACKS = [
    Attack("correct evidence", lambda w: plain(evidence(w.a)), None, "affirming"),
    # Freshness.
    Attack(
        "replayed under another nonce",
        lambda w: plain(evidence(w.a), nonce=NONCE2),
        "nonce-mismatch",
        "contraindicated",
    ),
    Attack(
        "nonce of 7 bytes in the evidence",
        lambda w: plain(device_signed(w, {10: bytes(7)})),
        "nonce-length",
        "contraindicated",
    ),
    Attack(
        "nonce of 65 bytes in the evidence",
        lambda w: plain(device_signed(w, {10: bytes(65)})),
        "nonce-length",
        "contraindicated",
    ),
    Attack(
        "verifier's nonce of 7 bytes",
        lambda w: plain(evidence(w.a), nonce=NONCE[:7]),
        "nonce-length",
        "contraindicated",
    ),
    Attack(
        "verifier's nonce of 65 bytes",
        lambda w: plain(evidence(w.a), nonce=bytes(65)),
        "nonce-length",
        "contraindicated",
    ),
    Attack(
        "lower bootcount than last seen",
        lambda w: plain(evidence(w.a), last_bootcount=BOOTCOUNT + 1),
        "bootcount-rollback",
        "contraindicated",
    ),
    # One bit flipped in the outer token.
    Attack(
        "bit flipped in the payload (nonce)",
        lambda w: plain(flipped_in(evidence(w.a), NONCE, 5)),
        "bad-signature",
        "contraindicated",
    ),
    Attack(
        "bit flipped in the payload (a nested token)",
        lambda w: plain(flipped_in(evidence(w.a), w.a.domains["oem"].token, 40)),
        "bad-signature",
        "contraindicated",
    ),
    Attack(
        "bit flipped in the protected header (alg -8 -> -7)",
        lambda w: plain(flipped_part(evidence(w.a), 0, 2)),
        "alg-not-allowed",
        "contraindicated",
    ),
    Attack(
        "bit flipped in the protected header (certificate)",
        lambda w: plain(flipped_in(evidence(w.a), der(w.a.cert), len(der(w.a.cert)) - 1)),
        "untrusted-chain",
        "contraindicated",
    ),
    Attack(
        "bit flipped in the signature",
        lambda w: plain(flip(evidence(w.a), -1, 7)),
        "bad-signature",
        "contraindicated",
    ),
    # One bit flipped in a nested token, the outer one re-signed by the device.
    Attack(
        "nested token: bit flipped in the payload",
        lambda w: plain(nested_flip(w, 2, 20)),
        "submod-bad-signature",
        "contraindicated",
    ),
    Attack(
        "nested token: bit flipped in the protected header (certificate)",
        lambda w: plain(nested_flip(w, 0, 400)),
        "submod-untrusted-chain",
        "contraindicated",
    ),
    Attack(
        "nested token: bit flipped in the protected header (alg)",
        lambda w: plain(nested_flip(w, 0, 2)),
        "submod-alg-not-allowed",
        "contraindicated",
    ),
    Attack(
        "nested token: bit flipped in the signature",
        lambda w: plain(nested_flip(w, 3, 63)),
        "submod-bad-signature",
        "contraindicated",
    ),
    # Algorithm swaps.
    Attack(
        "alg swapped to -7 (ES256)",
        lambda w: plain(with_protected(w, {1: -7, 33: der(w.a.cert)})),
        "alg-not-allowed",
        "contraindicated",
    ),
    Attack(
        "alg swapped to 0",
        lambda w: plain(with_protected(w, {1: 0, 33: der(w.a.cert)})),
        "alg-not-allowed",
        "contraindicated",
    ),
    Attack(
        "alg missing ('none')",
        lambda w: plain(with_protected(w, {33: der(w.a.cert)})),
        "alg-not-allowed",
        "contraindicated",
    ),
    Attack(
        "alg as text 'EdDSA'",
        lambda w: plain(with_protected(w, {1: "EdDSA", 33: der(w.a.cert)})),
        "alg-not-allowed",
        "contraindicated",
    ),
    Attack(
        "nested token: alg swapped to -7",
        lambda w: plain(
            nested_forged(w, "meter", protected={1: -7, 33: der(w.a.domains["meter"].cert)})
        ),
        "submod-alg-not-allowed",
        "contraindicated",
    ),
    Attack(
        "unknown protected header parameter (kid)",
        lambda w: plain(with_protected(w, {1: -8, 4: b"kid", 33: der(w.a.cert)})),
        "unknown-header",
        "contraindicated",
    ),
    # Injection into the unprotected header.
    Attack(
        "alg -8 injected into the unprotected header",
        lambda w: plain(with_unprotected(w, {1: -8})),
        "unprotected-header",
        "contraindicated",
    ),
    Attack(
        "alg only in the unprotected header",
        lambda w: plain(
            forge(outer_claims(w.a), w.a.key, protected={33: der(w.a.cert)}, unprotected={1: -8})
        ),
        "alg-not-allowed",
        "contraindicated",
        only=False,
    ),
    Attack(
        "nonce claim injected into the unprotected header",
        lambda w: plain(with_unprotected(w, {10: NONCE2}), nonce=NONCE2),
        "unprotected-header",
        "contraindicated",
    ),
    Attack(
        "ueid claim injected into the unprotected header",
        lambda w: plain(with_unprotected(w, {256: w.b.ueid})),
        "unprotected-header",
        "contraindicated",
    ),
    Attack(
        "x5chain injected into the unprotected header",
        lambda w: plain(with_unprotected(w, {33: der(w.b.cert)})),
        "unprotected-header",
        "contraindicated",
    ),
    Attack(
        "x5chain only in the unprotected header",
        lambda w: plain(
            forge(outer_claims(w.a), w.a.key, protected={1: -8}, unprotected={33: der(w.a.cert)})
        ),
        "unprotected-header",
        "contraindicated",
    ),
    Attack(
        "nested token: claims injected into the unprotected header",
        lambda w: plain(nested_forged(w, "meter", unprotected={-75013: 99})),
        "submod-unprotected-header",
        "contraindicated",
    ),
    # Who signed.
    Attack(
        "re-signed by a self-made key under a self-made CA",
        lambda w: plain(self_made_chain(w)),
        "untrusted-chain",
        "contraindicated",
    ),
    Attack(
        "re-signed by a self-made key with the real DeviceID certificate",
        lambda w: plain(forge(outer_claims(w.a), Ed25519PrivateKey.generate(), x5chain=[w.a.cert])),
        "bad-signature",
        "contraindicated",
    ),
    Attack(
        "signed by a domain's alias key, chained through the DeviceID",
        lambda w: plain(domain_signed_outer(w)),
        "not-device-cert",
        "contraindicated",
    ),
    Attack(
        "signed by the CA key itself",
        lambda w: plain(ca_signed_outer(w)),
        "not-device-cert",
        "contraindicated",
    ),
    Attack(
        "no x5chain",
        lambda w: plain(with_protected(w, {1: -8})),
        "missing-x5chain",
        "contraindicated",
    ),
    Attack(
        "device B signs, claiming device A's ueid",
        lambda w: plain(other_device_claiming_a(w)),
        "ueid-mismatch",
        "contraindicated",
        only=False,
    ),  # B's own domain tokens then name another UEID too
    # Submodules.
    Attack(
        "submodule lifted from another device's evidence",
        lambda w: plain(lifted(w)),
        "submod-foreign-device",
        "contraindicated",
    ),
    Attack(
        "domain token signed with another domain's key (own certificate)",
        lambda w: plain(cross_signed(w, own_cert=True)),
        "submod-bad-signature",
        "contraindicated",
    ),
    Attack(
        "domain token signed with another domain's key and certificate",
        lambda w: plain(cross_signed(w, own_cert=False)),
        "submod-tcb-mismatch",
        "contraindicated",
    ),
    Attack(
        "a genuine domain token filed under another domain's name",
        lambda w: plain(with_nested(w, "oem", w.a.domains["meter"].token)),
        "submod-domain-mismatch",
        "contraindicated",
    ),
    Attack(
        "nested token's x5chain with the DeviceID appended",
        lambda w: plain(nested_forged(w, "meter", x5chain=[w.a.domains["meter"].cert, w.a.cert])),
        "submod-untrusted-chain",
        "contraindicated",
    ),
    Attack(
        "nested token under a CA certificate the DeviceID issued",
        lambda w: plain(odd_alias(w, ca=True, sign=True)),
        "submod-untrusted-chain",
        "contraindicated",
    ),
    Attack(
        "nested token under an alias certificate without digitalSignature",
        lambda w: plain(odd_alias(w, ca=False, sign=False)),
        "submod-untrusted-chain",
        "contraindicated",
    ),
    Attack(
        "nested token not wrapped in the CWT tag 61",
        lambda w: plain(unwrapped_submod(w)),
        "submod-malformed",
        "contraindicated",
        only=False,
    ),
    Attack(
        "nested token naming another ueid",
        lambda w: plain(nested_other_ueid(w)),
        "submod-foreign-device",
        "contraindicated",
    ),
    Attack(
        "a domain reports itself locked",
        lambda w: plain(locked_domain(w)),
        "domain-locked",
        "contraindicated",
    ),
    # Reference values.
    Attack(
        "measurement not in the reference values",
        lambda w: plain(
            evidence(w.a), **reference_with(w, "meter", measurements=frozenset({bytes(32)}))
        ),
        "unknown-measurement",
        "warning",
    ),
    Attack(
        "svn below the minimum",
        lambda w: plain(evidence(w.a), **reference_with(w, "oem", min_svn=3)),
        "svn-too-low",
        "warning",
    ),
    Attack(
        "owner hash mismatch",
        lambda w: plain(evidence(w.a), **reference_with(w, "oem", owner_hash=bytes(32))),
        "owner-mismatch",
        "contraindicated",
    ),
    Attack(
        "domain missing from the reference (require_all)",
        lambda w: plain(
            evidence(w.a),
            reference=attrs.evolve(w.reference, domains={"meter": w.reference.domains["meter"]}),
        ),
        "unknown-domain",
        "contraindicated",
    ),
    Attack(
        "domain missing from the evidence",
        lambda w: plain(evidence(w.a, submods={"meter": w.a.domains["meter"].token})),
        "missing-domain",
        "warning",
    ),
    Attack(
        "TRE measurement not in the reference values",
        lambda w: plain(evidence(w.a, tre_measurement=bytes(32))),
        "unknown-tre-measurement",
        "contraindicated",
    ),
    Attack(
        "policy hash not in the reference values",
        lambda w: plain(evidence(w.a, policy_hash=bytes(32))),
        "unknown-policy",
        "contraindicated",
    ),
    Attack(
        "TRE locked",
        lambda w: plain(evidence(w.a, lifecycle="locked")),
        "tre-not-secured",
        "contraindicated",
    ),
    Attack(
        "TRE in an unknown lifecycle state",
        lambda w: plain(evidence(w.a, lifecycle="debug")),
        "unknown-lifecycle",
        "contraindicated",
    ),
    # Certificates and time.
    Attack(
        "expired DeviceID certificate",
        lambda w: plain(evidence(w.a), now=w.a.cert.not_valid_after_utc + timedelta(days=1)),
        "untrusted-chain",
        "contraindicated",
    ),
    Attack(
        "DeviceID certificate not valid yet",
        lambda w: plain(evidence(w.a), now=w.a.cert.not_valid_before_utc - timedelta(days=1)),
        "untrusted-chain",
        "contraindicated",
    ),
    Attack(
        "expired alias certificates",
        lambda w: plain(evidence(w.a), now=NOW + timedelta(days=400)),
        "submod-untrusted-chain",
        "contraindicated",
    ),
    Attack(
        "evidence checked against another CA",
        lambda w: plain(evidence(w.a), ca=attestation.make_ca("Other CA", NOW)[1]),
        "untrusted-chain",
        "contraindicated",
    ),
    # Profile and encoding.
    Attack(
        "another EAT profile",
        lambda w: plain(device_signed(w, {265: "tag:x.example,2026:p"})),
        "unknown-profile",
        "none",
    ),
    Attack(
        "an extra claim",
        lambda w: plain(device_signed(w, {2: "subject"})),
        "malformed-claims",
        "contraindicated",
    ),
    Attack(
        "untagged COSE_Sign1",
        lambda w: plain(cbor2.dumps(parts(evidence(w.a)))),
        "malformed-evidence",
        "contraindicated",
    ),
    Attack(
        "trailing byte",
        lambda w: plain(evidence(w.a) + b"\x00"),
        "malformed-evidence",
        "contraindicated",
    ),
    Attack(
        "truncated", lambda w: plain(evidence(w.a)[:-1]), "malformed-evidence", "contraindicated"
    ),
    Attack(
        "non-shortest length re-encoding",
        lambda w: plain(reencoded_signature_length(w)),
        "malformed-evidence",
        "contraindicated",
    ),
    Attack(
        "wrapped in the CWT tag 61",
        lambda w: plain(cbor2.dumps(cbor2.CBORTag(61, cbor2.loads(evidence(w.a))))),
        "malformed-evidence",
        "contraindicated",
    ),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack(attack: Attack) -> None:
    data, over = attack.build(world())
    result = attestation.verify_evidence(
        data,
        **{"ca": world().ca, "nonce": NONCE, "now": NOW, "reference": world().reference, **over},
    )
    assert result.status == attack.status, result.details
    if attack.problem is None:
        assert result.problems == ()
    elif attack.only:
        assert result.problems == (attack.problem,), result.details
    else:
        assert attack.problem in result.problems, result.details
    assert "verifier-error" not in result.problems
    assert set(result.problems) <= set(attestation.PROBLEMS)


def test_every_problem_code_has_an_attack() -> None:
    covered = {a.problem for a in ATTACKS}
    untested = set(attestation.PROBLEMS) - covered
    # Reached only through other codes' rows, or only by a bug:
    assert untested <= {"unknown-domain-state", "verifier-error"}


def test_unknown_domain_state() -> None:
    w = world()
    meter = w.a.domains["meter"]
    token = attestation.domain_token(
        meter.key,
        meter.cert,
        ueid=w.a.ueid,
        domain_id="meter",
        measurement=meter.measurement,
        owner_hash=meter.owner_hash,
        svn=meter.svn,
        state="hibernating",
        iat=IAT,
    )
    result = verify(evidence(w.a, submods={**w.a.tokens(), "meter": token}))
    assert result.problems == ("unknown-domain-state",) and result.status == "warning"


def test_lifted_submodule_from_a_device_of_another_manufacturer() -> None:
    w = world()
    ca_key, ca = attestation.make_ca("Other manufacturer", NOW)
    c = make_device(ca_key, ca, b"device C", imei("35209900176150"))
    result = verify(evidence(w.a, submods={**w.a.tokens(), "oem": c.domains["oem"].token}))
    assert result.problems == ("submod-foreign-device",)


# --- random damage ------------------------------------------------------------------------

GOOD = evidence()


def appraise(data: bytes) -> attestation.Appraisal:
    result = verify(data)
    assert "verifier-error" not in result.problems, result.details
    return result


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(GOOD) - 1), bit=st.integers(0, 7))
def test_any_bit_flip_is_caught(index: int, bit: int) -> None:
    result = appraise(flip(GOOD, index, bit))
    assert result.status != "affirming"
    assert result.problems


@settings(max_examples=150, deadline=None)
@given(index=st.integers(0, len(GOOD) - 1), value=st.integers(0, 255))
def test_any_byte_change_is_caught(index: int, value: int) -> None:
    data = GOOD[:index] + bytes([value]) + GOOD[index + 1 :]
    result = appraise(data)
    assert (data == GOOD) == (result.status == "affirming")


@settings(max_examples=100, deadline=None)
@given(length=st.integers(0, len(GOOD) - 1))
def test_any_truncation_is_caught(length: int) -> None:
    result = appraise(GOOD[:length])
    assert result.problems == ("malformed-evidence",)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=512))
def test_garbage_never_raises(data: bytes) -> None:
    assert appraise(data).status == "contraindicated"


@settings(max_examples=100, deadline=None)
@given(index=st.integers(0, len(GOOD)), junk=st.binary(min_size=1, max_size=16))
def test_any_insertion_is_caught(index: int, junk: bytes) -> None:
    assert appraise(GOOD[:index] + junk + GOOD[index:]).status != "affirming"


def test_reencoding_the_payload_is_caught() -> None:
    """Claims re-encoded out of deterministic order by the device itself: refused."""
    w = world()
    claims = outer_claims(w.a)
    payload = cbor2.dumps(dict(sorted(claims.items(), key=lambda kv: -kv[0])))
    assert payload != encode(claims)
    result = verify(forge(payload, w.a.key, x5chain=[w.a.cert]))
    assert result.problems == ("malformed-claims",) and result.status == "contraindicated"


NESTED = world().a.domains["meter"].token


@settings(max_examples=100, deadline=None)
@given(index=st.integers(1, len(NESTED) - 1), bit=st.integers(0, 7))
def test_any_bit_flip_in_a_nested_token_is_caught(index: int, bit: int) -> None:
    """A compromised TRE (it holds the DeviceID key) alters a domain's token and signs."""
    w = world()
    data = evidence(w.a, submods={**w.a.tokens(), "meter": flip(NESTED, index, bit)})
    result = appraise(data)
    assert result.status == "contraindicated"
    assert result.domains["meter"]["verdict"] == "contraindicated"
    assert result.domains["oem"]["verdict"] == "affirming"
