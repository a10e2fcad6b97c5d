"""The verifier (attestation/_verify.py): a realistic world of devices, and its appraisals.

The world (built once): a manufacturer CA; device A with two domains, ``meter`` and
``oem``, each with an alias certificate carrying its DiceTcbInfo and a nested token; device
B from the same CA with the same two domains; reference values that accept A's domains.
test_attacks.py reuses it for the attack table.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

import attestation
from attestation import (
    Appraisal,
    AttestationError,
    DomainReference,
    Reference,
    _verify,
    verify_evidence,
)
from attestation._cose import encode

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NONCE = bytes(range(100, 132))
BOOTCOUNT = 7
TRE_MEASUREMENT = hashlib.sha256(b"tre code v1").digest()
POLICY_HASH = hashlib.sha256(b"compiled policy v1").digest()
IAT = 1_772_366_400


@attrs.frozen
class Domain:
    id: str
    key: Ed25519PrivateKey
    cert: x509.Certificate
    measurement: bytes
    owner_hash: bytes
    svn: int
    token: bytes


@attrs.frozen
class Device:
    key: Ed25519PrivateKey
    cert: x509.Certificate
    ueid: bytes
    domains: Mapping[str, Domain]

    def tokens(self) -> dict[str, bytes]:
        return {name: domain.token for name, domain in self.domains.items()}


@attrs.frozen
class World:
    ca_key: Ed25519PrivateKey
    ca: x509.Certificate
    a: Device
    b: Device
    reference: Reference


DOMAINS = {"meter": 3, "oem": 2}


def make_domain(
    device_key: Ed25519PrivateKey,
    device_cert: x509.Certificate,
    tre: attestation.TreCdis,
    ueid: bytes,
    name: str,
    svn: int,
    *,
    state: str = "active",
    now: datetime = NOW,
) -> Domain:
    owner = attestation.owner_key_hash(hashlib.sha256(b"owner of " + name.encode()).digest())
    code = hashlib.sha256(b"code of " + name.encode()).digest()
    manifest = hashlib.sha256(b"manifest of " + name.encode()).digest()
    measurement = attestation.measure_domain(code, manifest, owner, svn)
    key = attestation.alias_key(attestation.domain_cdis(tre, name, measurement))
    cert = attestation.issue_alias_cert(
        device_key, device_cert, key.public_key(), name, measurement, owner, svn, now
    )
    token = attestation.domain_token(
        key,
        cert,
        ueid=ueid,
        domain_id=name,
        measurement=measurement,
        owner_hash=owner,
        svn=svn,
        state=state,
        iat=IAT,
    )
    return Domain(name, key, cert, measurement, owner, svn, token)


def make_device(ca_key: Ed25519PrivateKey, ca: x509.Certificate, seed: bytes, imei: str) -> Device:
    uds = attestation.Secret(hashlib.sha256(seed).digest())
    key = attestation.device_id_key(uds)
    ueid = attestation.ueid_from_imei(imei)
    cert = attestation.issue_device_cert(ca_key, ca, key.public_key(), ueid, NOW, imei=imei)
    tre = attestation.tre_cdis(uds, TRE_MEASUREMENT, hashlib.sha256(b"authority").digest())
    domains = {name: make_domain(key, cert, tre, ueid, name, svn) for name, svn in DOMAINS.items()}
    return Device(key, cert, ueid, domains)


def imei(prefix14: str) -> str:
    return prefix14 + attestation.luhn_check_digit(prefix14)


@functools.cache
def world() -> World:
    ca_key, ca = attestation.make_ca("TRE Test Manufacturer CA", NOW)
    a = make_device(ca_key, ca, b"device A", imei("35209900176148"))
    b = make_device(ca_key, ca, b"device B", imei("35209900176149"))
    reference = Reference(
        domains={
            name: DomainReference(
                measurements=frozenset({d.measurement}), owner_hash=d.owner_hash, min_svn=d.svn
            )
            for name, d in a.domains.items()
        },
        require_all=True,
        tre_measurements=frozenset({TRE_MEASUREMENT}),
        policy_hashes=frozenset({POLICY_HASH}),
    )
    return World(ca_key, ca, a, b, reference)


def evidence(device: Device | None = None, **over: Any) -> bytes:
    """Evidence as the runtime makes it (attestation.tre_token), with overrides."""
    device = device or world().a
    kwargs: dict[str, Any] = {
        "nonce": NONCE,
        "ueid": device.ueid,
        "bootcount": BOOTCOUNT,
        "tre_measurement": TRE_MEASUREMENT,
        "policy_hash": POLICY_HASH,
        "lifecycle": "secured",
        "submods": device.tokens(),
        "iat": IAT + 60,
    }
    return attestation.tre_token(device.key, device.cert, **{**kwargs, **over})


def verify(data: bytes, **over: Any) -> Appraisal:
    kwargs: dict[str, Any] = {
        "ca": world().ca,
        "nonce": NONCE,
        "now": NOW,
        "reference": world().reference,
    }
    return verify_evidence(data, **{**kwargs, **over})


# --- forging helpers (used by test_attacks.py) --------------------------------------------


def der(cert: x509.Certificate) -> bytes:
    return bytes(cert.public_bytes(Encoding.DER))


def parts(token: bytes) -> list[Any]:
    """[protected bytes, unprotected, payload, signature] of a tagged COSE_Sign1."""
    return list(cbor2.loads(token).value)


def claims_of(token: bytes) -> dict[Any, Any]:
    return dict(cbor2.loads(parts(token)[2]))


def forge(
    payload: bytes | Mapping[Any, Any],
    key: Ed25519PrivateKey,
    *,
    x5chain: Sequence[x509.Certificate] = (),
    protected: Mapping[Any, Any] | None = None,
    unprotected: Mapping[Any, Any] | None = None,
) -> bytes:
    """A COSE_Sign1 built by hand (any protected header), correctly signed by ``key``."""
    if not isinstance(payload, bytes):
        payload = encode(payload)
    if protected is None:
        protected = {1: -8}
        if x5chain:
            protected[33] = der(x5chain[0]) if len(x5chain) == 1 else [der(c) for c in x5chain]
    protected_bytes = encode(protected) if protected else b""
    signature = key.sign(cbor2.dumps(["Signature1", protected_bytes, b"", payload]))
    return encode(cbor2.CBORTag(18, [protected_bytes, dict(unprotected or {}), payload, signature]))


def outer_claims(device: Device | None = None) -> dict[Any, Any]:
    """The claims of good evidence from ``device``, to change and re-sign."""
    return claims_of(evidence(device))


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


# --- the good case ------------------------------------------------------------------------

AFFIRMED = {
    "instance-identity": "affirming",
    "configuration": "affirming",
    "executables": "affirming",
    "file-system": "none",
    "hardware": "affirming",
    "runtime-opaque": "none",
    "storage-opaque": "none",
    "sourced-data": "none",
}


def test_good_evidence_is_affirming() -> None:
    w = world()
    result = verify(evidence())
    assert result.status == "affirming"
    assert result.problems == () and result.details == ()
    assert dict(result.vector) == AFFIRMED
    assert dict(result.codes) == {
        "instance-identity": 2,
        "configuration": 2,
        "executables": 3,
        "file-system": 0,
        "hardware": 2,
        "runtime-opaque": 0,
        "storage-opaque": 0,
        "sourced-data": 0,
    }
    assert result.ueid == w.a.ueid and result.bootcount == BOOTCOUNT
    assert set(result.domains) == {"meter", "oem"}
    meter = result.domains["meter"]
    assert meter == {
        "measurement": w.a.domains["meter"].measurement.hex(),
        "owner_hash": w.a.domains["meter"].owner_hash.hex(),
        "svn": 3,
        "state": "active",
        "verdict": "affirming",
        "reason": None,
        "reasons": [],
    }


def test_without_reference_values_identity_and_hardware_only() -> None:
    result = verify(evidence(), reference=None)
    assert result.status == "affirming"
    assert result.vector["instance-identity"] == "affirming"
    assert result.vector["hardware"] == "affirming"
    assert result.vector["executables"] == "none" and result.vector["configuration"] == "none"
    assert {d["verdict"] for d in result.domains.values()} == {"none"}


def test_device_b_is_affirming_with_its_own_reference() -> None:
    w = world()
    result = verify(evidence(w.b), reference=None)
    assert result.status == "affirming" and result.ueid == w.b.ueid


def test_to_dict_is_json() -> None:
    result = verify(evidence(), nonce=bytes(16))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["status"] == "contraindicated"
    assert data["problems"] == ["nonce-mismatch"]
    assert data["details"] == ["nonce-mismatch: the evidence was not made for this nonce"]
    assert data["ueid"] == world().a.ueid.hex() and data["bootcount"] == BOOTCOUNT
    assert data["codes"]["instance-identity"] == 99
    assert data["domains"]["oem"]["verdict"] == "affirming"


def test_pure_and_repeatable() -> None:
    data = evidence()
    assert verify(data) == verify(data)


def test_no_evidence_domains_and_an_empty_reference() -> None:
    result = verify(evidence(submods={}), reference=Reference(domains={}))
    assert result.status == "affirming" and result.domains == {}
    assert result.vector["executables"] == "none"


# --- order of the checks ------------------------------------------------------------------


def test_a_step_1_to_4_failure_stops_the_appraisal() -> None:
    data = flip(evidence(nonce=bytes(16)), -1)  # bad signature AND the wrong nonce
    result = verify(data)
    assert result.problems == ("bad-signature",)
    assert result.status == "contraindicated"
    assert result.ueid is None and result.bootcount is None and result.domains == {}
    assert {result.vector[c] for c in ("instance-identity", "executables", "hardware")} == {
        "contraindicated"
    }


def test_later_failures_accumulate_in_step_order() -> None:
    w = world()
    reference = attrs.evolve(
        w.reference,
        domains={
            **w.reference.domains,
            "oem": DomainReference(measurements=frozenset({bytes(32)})),
        },
    )
    result = verify(
        evidence(lifecycle="locked"),
        nonce=bytes(16),
        last_bootcount=BOOTCOUNT + 1,
        reference=reference,
    )
    assert result.problems == (
        "nonce-mismatch",
        "bootcount-rollback",
        "tre-not-secured",
        "unknown-measurement",
    )
    assert result.vector["instance-identity"] == "contraindicated"
    assert result.vector["hardware"] == "contraindicated"
    assert result.vector["executables"] == "warning"
    assert result.domains["oem"]["verdict"] == "warning"
    assert result.domains["meter"]["verdict"] == "affirming"
    assert result.status == "contraindicated"


def test_bootcount_equal_or_higher_is_fine() -> None:
    assert verify(evidence(), last_bootcount=BOOTCOUNT).status == "affirming"
    assert verify(evidence(), last_bootcount=0).status == "affirming"


def test_now_is_the_reference_time() -> None:
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    assert verify(evidence(), now=paris).status == "affirming"
    before = verify(evidence(), now=NOW - timedelta(days=1))
    assert before.problems == ("untrusted-chain",)
    assert "not valid yet" in before.details[0]


def test_require_all_false_ignores_unknown_domains() -> None:
    w = world()
    reference = attrs.evolve(
        w.reference, domains={"meter": w.reference.domains["meter"]}, require_all=False
    )
    result = verify(evidence(), reference=reference)
    assert result.status == "affirming" and result.problems == ()
    assert result.domains["oem"]["verdict"] == "none"
    assert result.domains["meter"]["verdict"] == "affirming"
    assert result.vector["executables"] == "affirming"


def test_tre_level_reference_values_are_optional() -> None:
    w = world()
    reference = attrs.evolve(w.reference, tre_measurements=frozenset(), policy_hashes=frozenset())
    result = verify(evidence(), reference=reference)
    assert result.status == "affirming" and result.vector["configuration"] == "none"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"evidence": "text"}, TypeError),
        ({"ca": b"pem"}, TypeError),
        ({"nonce": NONCE.hex()}, TypeError),
        ({"now": "2026-03-01"}, TypeError),
        ({"now": datetime(2026, 3, 1)}, ValueError),
        ({"reference": {"domains": {}}}, TypeError),
        ({"last_bootcount": -1}, TypeError),
        ({"last_bootcount": True}, TypeError),
    ],
)
def test_programmer_errors_raise(kwargs: dict[str, Any], error: type[Exception]) -> None:
    data = kwargs.pop("evidence", evidence())
    with pytest.raises(error):
        verify(data, **kwargs)


def test_a_verifier_bug_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(cert: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(_verify, "read_tcb_info", broken)
    result = verify(evidence())
    assert "verifier-error" in result.problems
    assert result.status != "affirming"
    assert "RuntimeError: boom" in result.details[-1]


# --- internals ----------------------------------------------------------------------------


def test_verify_alias_agrees_with_verify_chain() -> None:
    w = world()
    issuers = [w.a.cert, w.ca]
    for cert, now in [
        (w.a.domains["meter"].cert, NOW),
        (w.b.domains["meter"].cert, NOW),  # another device's alias
        (w.a.domains["meter"].cert, NOW + timedelta(days=400)),  # expired alias
        (w.a.cert, NOW),  # not issued by the DeviceID
    ]:
        try:
            attestation.verify_chain(cert, [w.a.cert], w.ca, now)
            expected = None
        except AttestationError as exc:
            expected = exc.message
        try:
            _verify._verify_alias(cert, issuers, now)
            got = None
        except AttestationError as exc:
            got = exc.message
        assert got == expected


@pytest.mark.parametrize(
    ("value", "tier"),
    [
        (0, "none"),
        (1, "none"),
        (-1, "none"),
        (2, "affirming"),
        (31, "affirming"),
        (-2, "affirming"),
        (-32, "affirming"),
        (32, "warning"),
        (95, "warning"),
        (-33, "warning"),
        (-96, "warning"),
        (96, "contraindicated"),
        (127, "contraindicated"),
        (-97, "contraindicated"),
        (-128, "contraindicated"),
    ],
)
def test_ar4si_tiers(value: int, tier: str) -> None:
    assert _verify.tier(value) == tier


def test_problem_table_is_documented_and_consistent() -> None:
    doc = _verify.__doc__ or ""
    for code, (step, claim, value) in attestation.PROBLEMS.items():
        assert f" {code} " in doc, code
        assert claim == "*" or claim in attestation.TRUST_CLAIMS
        assert -128 <= value <= 127 and 0 <= step <= 9
    assert tuple(AFFIRMED) == attestation.TRUST_CLAIMS
