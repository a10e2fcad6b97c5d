"""The verifier's caches are safe: they hold parsing, never a verification result.

:func:`attestation.verify_evidence` keeps two bounded caches, both keyed by exact bytes:
parsed certificates by their DER (``attestation._cose``) and decoded DiceTcbInfo values by
the extension's DER (``attestation._certs``). These tests show that a certificate from
the cache is still checked at ``now`` and for its signature on every appraisal, that bytes
differing in one bit are parsed afresh, that the caches are bounded, and that the whole
attack table appraises the same with cold, warm and no caches. Also: the CA's
self-signature is not re-checked per appraisal (RFC 5280 section 6.1, the CA is the trust
anchor) while :func:`attestation.verify_chain` keeps checking it, and the issuers' CA
rules are checked once per appraisal, not once per domain.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import attestation
from attestation import AttestationError, _certs, _cose, _verify
from attestation._der import decode_tcb_info, encode_tcb_info
from tests.attestation.test_attacks import ATTACKS
from tests.attestation.test_certs import replaced, resign
from tests.attestation.test_verify import (
    NONCE,
    NOW,
    claims_of,
    der,
    evidence,
    flip,
    forge,
    outer_claims,
    verify,
    world,
)


def clear_caches() -> None:
    _cose._read_cached.cache_clear()
    _certs._decode_tcb_info_cached.cache_clear()


@pytest.fixture(autouse=True)
def cold() -> Iterator[None]:
    clear_caches()
    yield
    clear_caches()


def hits() -> int:
    return _cose._read_cached.cache_info().hits


def misses() -> int:
    return _cose._read_cached.cache_info().misses


def with_device_der(device_der: bytes) -> bytes:
    """Device A's claims, signed by its key, with ``device_der`` as the x5chain."""
    w = world()
    return forge(outer_claims(w.a), w.a.key, protected={1: -8, 33: device_der})


def with_alias_der(name: str, alias_der: bytes) -> bytes:
    """Good evidence from device A, ``name``'s token carrying ``alias_der`` as its x5chain
    (signed by its alias key, the outer token re-signed by the device)."""
    w = world()
    domain = w.a.domains[name]
    token = forge(claims_of(domain.token), domain.key, protected={1: -8, 33: alias_der})
    return evidence(w.a, submods={**w.a.tokens(), name: token})


# --- validity and signatures are checked on every call --------------------------------------


def test_a_cached_certificate_that_has_since_expired_is_refused() -> None:
    w = world()
    data = evidence()
    assert verify(data).status == "affirming"
    loaded = misses()
    assert loaded >= 3  # the DeviceID and the two alias certificates

    before = hits()
    expired = verify(data, now=w.a.cert.not_valid_after_utc + timedelta(seconds=1))
    assert hits() > before and misses() == loaded  # the certificates came from the cache
    assert expired.problems == ("untrusted-chain",)
    assert expired.status == "contraindicated"
    assert "has expired" in expired.details[0] and "TRE DeviceID" in expired.details[0]

    early = verify(data, now=w.a.cert.not_valid_before_utc - timedelta(seconds=1))
    assert early.problems == ("untrusted-chain",) and "not valid yet" in early.details[0]

    aliases = verify(data, now=w.a.domains["meter"].cert.not_valid_after_utc + timedelta(1))
    assert aliases.problems == ("submod-untrusted-chain",)
    assert {name for name, entry in aliases.domains.items() if entry["reasons"]} == {
        "meter",
        "oem",
    }
    assert all("has expired" in d for d in aliases.details)

    assert misses() == loaded  # nothing was parsed again...
    assert verify(data).status == "affirming"  # ...and no refusal was remembered either


def test_a_signature_is_checked_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cached certificates, and still one link check per certificate per appraisal."""
    links: list[tuple[str, str]] = []
    check_signed = _certs._check_signed

    def counting(child: x509.Certificate, issuer: x509.Certificate) -> None:
        links.append((child.subject.rfc4514_string(), issuer.subject.rfc4514_string()))
        check_signed(child, issuer)

    monkeypatch.setattr(_certs, "_check_signed", counting)
    data = evidence()
    for _ in range(3):
        links.clear()
        assert verify(data).status == "affirming"
        assert len(links) == 3  # DeviceID <- CA, and each alias <- DeviceID
    assert hits() > 0


def test_one_bit_of_another_device_certificate_is_parsed_afresh_and_refused() -> None:
    w = world()
    good = der(w.a.cert)
    assert verify(with_device_der(good)).status == "affirming"
    cached = _cose._load_certificate(good)
    assert _cose._load_certificate(good) is cached

    # One bit of the signature: still a well-formed certificate, so it parses; a new one.
    bad = flip(good, len(good) - 1)
    before = misses()
    result = verify(with_device_der(bad))
    assert misses() == before + 1
    assert result.problems == ("untrusted-chain",)
    assert "signature does not verify" in result.details[0]
    fresh = _cose._load_certificate(bad)
    assert fresh is not cached and fresh.signature != cached.signature
    assert der(fresh) == bad

    # The good one is still what it was, and still affirming.
    assert _cose._load_certificate(good) is cached
    assert verify(with_device_der(good)).status == "affirming"


def test_one_bit_of_an_alias_tcb_info_is_decoded_afresh_and_refused() -> None:
    w = world()
    meter = w.a.domains["meter"]
    good = der(meter.cert)
    assert verify(with_alias_der("meter", good)).status == "affirming"
    assert attestation.read_tcb_info(meter.cert)["measurement"] == meter.measurement

    tcb = encode_tcb_info("meter", meter.measurement, meter.owner_hash, meter.svn)
    at = good.index(tcb) + tcb.index(meter.measurement) + 5  # inside the measurement
    bad = flip(good, at)
    changed = _cose._load_certificate(bad)  # one bit of a signed field: parses, a new one
    assert attestation.read_tcb_info(changed)["measurement"] == flip(meter.measurement, 5)
    assert attestation.read_tcb_info(meter.cert)["measurement"] == meter.measurement

    result = verify(with_alias_der("meter", bad))
    assert result.problems == ("submod-untrusted-chain",)
    assert result.domains["meter"]["verdict"] == "contraindicated"
    assert result.domains["oem"]["verdict"] == "affirming"
    assert "signature does not verify" in result.details[0]


def test_read_tcb_info_returns_a_new_dict_each_time() -> None:
    alias = world().a.domains["meter"].cert
    first = attestation.read_tcb_info(alias)
    first["svn"] = 99
    first["domain_id"] = "evil"
    again = attestation.read_tcb_info(alias)
    assert again["svn"] == 3 and again["domain_id"] == "meter"
    assert _certs._decode_tcb_info_cached.cache_info().hits >= 1


def test_refused_bytes_are_never_cached() -> None:
    good = der(world().a.cert)
    broken = good[:-1]  # truncated: not a certificate
    for _ in range(2):
        with pytest.raises(attestation.EvidenceError, match=r"not a DER X\.509 certificate"):
            _cose._parse_x5chain(broken)
    assert _cose._read_cached.cache_info().currsize == 0
    with pytest.raises(attestation.InvalidIdentity, match="malformed TcbInfo"):
        _certs._decode_tcb_info_cached(b"\x30\x00")
    assert _certs._decode_tcb_info_cached.cache_info().currsize == 0


# --- the caches are bounded -----------------------------------------------------------------


def test_the_caches_are_bounded() -> None:
    w = world()
    size = _cose._CERT_CACHE_SIZE
    assert _cose._read_cached.cache_info().maxsize == size == 64
    assert _certs._decode_tcb_info_cached.cache_info().maxsize == _certs._TCB_INFO_CACHE_SIZE
    key = Ed25519PrivateKey.generate()
    certs = [
        attestation.issue_alias_cert(
            w.a.key, w.a.cert, key.public_key(), "meter", bytes(32), bytes(32), svn, NOW
        )
        for svn in range(size + 10)
    ]
    for cert in certs:
        _cose._load_certificate(der(cert))
        assert attestation.read_tcb_info(cert)["svn"] == certs.index(cert)
    assert _cose._read_cached.cache_info().currsize == size
    assert _certs._decode_tcb_info_cached.cache_info().currsize == _certs._TCB_INFO_CACHE_SIZE
    # The oldest were evicted: parsed again, and equal.
    before = misses()
    assert _cose._load_certificate(der(certs[0])) == certs[0]
    assert misses() == before + 1
    assert _cose._read_cached.cache_info().currsize == size


def test_a_large_certificate_is_never_cached() -> None:
    w = world()
    meter = w.a.domains["meter"]
    padding = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), bytes(17000))
    extensions = [(e.value, e.critical) for e in meter.cert.extensions]
    big = resign(meter.cert, w.a.key, extensions=[*extensions, (padding, False)])
    data = der(big)
    assert len(data) > _cose._CERT_CACHE_MAX_DER
    first = _cose._load_certificate(data)
    assert _cose._load_certificate(data) is not first
    assert first == big
    assert _cose._read_cached.cache_info().currsize == 0
    # And it still appraises: the chain holds, the alias signature over it verifies.
    assert verify(with_alias_der("meter", data)).status == "affirming"


# --- the attack table, with cold, warm and no caches ----------------------------------------


def appraise(data: bytes, over: dict[str, Any]) -> dict[str, Any]:
    w = world()
    kwargs = {"ca": w.ca, "nonce": NONCE, "now": NOW, "reference": w.reference, **over}
    return attestation.verify_evidence(data, **kwargs).to_dict()


def test_the_attack_table_appraises_the_same_with_cold_warm_and_no_caches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = [(attack.name, *attack.build(world())) for attack in ATTACKS]
    cold = {}
    for name, data, over in cases:
        clear_caches()
        cold[name] = appraise(data, over)
    clear_caches()
    warm = {name: appraise(data, over) for name, data, over in cases}  # filling up
    warmer = {name: appraise(data, over) for name, data, over in reversed(cases)}
    assert hits() > 0
    monkeypatch.setattr(_cose, "_read_cached", _cose._read_certificate)
    monkeypatch.setattr(_certs, "_decode_tcb_info_cached", decode_tcb_info)
    uncached = {name: appraise(data, over) for name, data, over in cases}
    for name, _data, _over in cases:
        assert cold[name] == warm[name] == warmer[name] == uncached[name], name
    statuses = {attack.name: attack.status for attack in ATTACKS}
    assert {name: result["status"] for name, result in warm.items()} == statuses


# --- the trust anchor's self-signature ------------------------------------------------------


def test_the_ca_self_signature_is_not_rechecked_per_appraisal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RFC 5280 section 6.1: the CA given to verify_evidence is the trust anchor, trusted
    because the caller got it by a trusted path; its self-signature proves nothing more.
    verify_chain, how a CA certificate is accepted as an anchor, still checks it."""
    w = world()
    # Same name and key as the CA, signed by another key: its self-signature is broken.
    broken = resign(w.ca, Ed25519PrivateKey.generate())
    with pytest.raises(AttestationError, match="does not verify"):
        attestation.verify_chain(broken, [], broken, NOW)
    with pytest.raises(AttestationError, match="does not verify"):
        attestation.verify_chain(w.a.cert, [], broken, NOW)
    attestation.verify_chain(w.a.cert, [], w.ca, NOW)

    links: list[tuple[x509.Certificate, x509.Certificate]] = []
    check_signed = _certs._check_signed

    def counting(child: x509.Certificate, issuer: x509.Certificate) -> None:
        links.append((child, issuer))
        check_signed(child, issuer)

    monkeypatch.setattr(_certs, "_check_signed", counting)
    assert verify(evidence()).status == "affirming"
    assert (w.ca, w.ca) not in links
    assert links[0] == (w.a.cert, w.ca)
    assert len(links) == 1 + len(w.a.domains)
    # The anchor's key and name are what count: the DeviceID still chains to it...
    assert verify(evidence(), ca=broken).status == "affirming"
    # ...and a CA with another key is still refused.
    _, other = attestation.make_ca(w.ca.subject.rfc4514_string(), NOW)
    assert verify(evidence(), ca=other).problems == ("untrusted-chain",)


# --- the issuers' CA rules, once per appraisal ----------------------------------------------


def test_the_issuers_ca_rules_are_checked_once_per_appraisal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = world()
    calls: list[tuple[str, int]] = []
    check_ca = _certs._check_ca

    def counting(cert: x509.Certificate, below: int) -> None:
        calls.append((cert.subject.rfc4514_string(), below))
        check_ca(cert, below)

    monkeypatch.setattr(_certs, "_check_ca", counting)
    assert len(w.a.domains) == 2
    for _ in range(2):
        calls.clear()
        assert verify(evidence()).status == "affirming"
        ca, device = w.ca.subject.rfc4514_string(), w.a.cert.subject.rfc4514_string()
        # Step 3: the CA above the DeviceID; step 8, once: the DeviceID and the CA above
        # an alias certificate.
        assert calls == [(ca, 0), (device, 0), (ca, 1)]


def test_a_deviceid_that_may_not_certify_fails_every_domain_alike() -> None:
    """A DeviceID certificate without keyCertSign passes step 3 (it signs the evidence)
    but may not have issued the alias certificates: every domain says so, with the same
    words as the per-domain check (_verify_alias without a shared outcome)."""
    w = world()
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    device = resign(w.a.cert, w.ca_key, extensions=replaced(w.a.cert, usage, True))
    result = verify(with_device_der(der(device)))
    assert result.problems == ("submod-untrusted-chain",)
    assert result.status == "contraindicated"
    expected = []
    for name in sorted(w.a.domains):
        with pytest.raises(AttestationError) as info:
            _verify._verify_alias(w.a.domains[name].cert, [device, w.ca], NOW)
        assert "no keyCertSign" in info.value.message
        expected.append(f"submod-untrusted-chain: {name}: {info.value.message}")
    assert list(result.details) == expected
    for name in w.a.domains:
        assert result.domains[name]["reasons"] == ["submod-untrusted-chain"]
