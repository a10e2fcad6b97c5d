"""The certificate chain: manufacturer CA -> DeviceID -> alias, and verify_chain."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtensionOID, NameOID

import attestation
from attestation import AttestationError, InvalidIdentity

NOW = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
IMEI = "352099001761481"
UEID = attestation.ueid_from_imei(IMEI)
MEASUREMENT = hashlib.sha256(b"meter v1").digest()
OWNER = attestation.owner_key_hash(bytes(range(32)))
UDS = attestation.Secret(bytes(range(32)))


@attrs.frozen
class Pki:
    ca_key: Ed25519PrivateKey
    ca: x509.Certificate
    device_key: Ed25519PrivateKey
    device: x509.Certificate
    alias_key: Ed25519PrivateKey
    alias: x509.Certificate


def make_pki(now: datetime = NOW) -> Pki:
    ca_key, ca = attestation.make_ca("TRE Test CA", now)
    device_key = attestation.device_id_key(UDS)
    device = attestation.issue_device_cert(
        ca_key, ca, device_key.public_key(), UEID, now, imei=IMEI
    )
    tre = attestation.tre_cdis(UDS, bytes(32), bytes(32))
    alias_key = attestation.alias_key(attestation.domain_cdis(tre, "meter", MEASUREMENT))
    alias = attestation.issue_alias_cert(
        device_key, device, alias_key.public_key(), "meter", MEASUREMENT, OWNER, 3, now
    )
    return Pki(ca_key, ca, device_key, device, alias_key, alias)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def ext(cert: x509.Certificate, cls: type[Any]) -> x509.Extension[Any]:
    return cert.extensions.get_extension_for_class(cls)


def resign(
    cert: x509.Certificate,
    signer: Any,
    *,
    subject: x509.Name | None = None,
    issuer: x509.Name | None = None,
    public: Any = None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] | None = None,
) -> x509.Certificate:
    """A copy of ``cert`` with some fields changed, signed by ``signer``: forgeries."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or cert.subject)
        .issuer_name(issuer or cert.issuer)
        .public_key(public or cert.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    if extensions is None:
        extensions = [(e.value, e.critical) for e in cert.extensions]
    for value, critical in extensions:
        builder = builder.add_extension(value, critical)
    algorithm = None if isinstance(signer, Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm)


def replaced(
    cert: x509.Certificate, value: x509.ExtensionType | None, critical: bool, *, oid: Any = None
) -> list[tuple[x509.ExtensionType, bool]]:
    """``cert``'s extensions with the one of ``value``'s OID (or ``oid``) swapped or dropped."""
    target = oid if value is None else value.oid
    out = [(e.value, e.critical) for e in cert.extensions if e.oid != target]
    return out if value is None else [*out, (value, critical)]


# --- the CA -------------------------------------------------------------------------------


def test_ca(pki: Pki) -> None:
    ca = pki.ca
    assert ca.subject == ca.issuer
    assert ca.subject.rfc4514_string() == "CN=TRE Test CA,O=TRE Manufacturer"
    bc = ext(ca, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 2
    ku = ext(ca, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert ku.value.digital_signature and not ku.value.key_encipherment
    ski = ext(ca, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(pki.ca_key.public_key())
    assert 0 < ca.serial_number < 2**159
    assert ca.not_valid_before_utc == datetime(2026, 3, 1, 12, 29, 15, tzinfo=UTC)
    assert ca.not_valid_after_utc == datetime(2046, 3, 1, 12, 30, 15, tzinfo=UTC)
    ca.verify_directly_issued_by(ca)


def test_ca_options() -> None:
    key = Ed25519PrivateKey.generate()
    now = datetime(2024, 2, 29, tzinfo=UTC)
    got_key, ca = attestation.make_ca(
        "X", now, years=1, serial=42, organization="ACME Devices", key=key
    )
    assert got_key is key and ca.serial_number == 42
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "ACME Devices"
    assert ca.not_valid_after_utc == datetime(2025, 2, 28, tzinfo=UTC)  # 29 Feb + 1 year


def test_ca_accepts_any_timezone() -> None:
    paris = datetime(2026, 3, 1, 13, 30, 15, tzinfo=timezone(timedelta(hours=1)))
    _, ca = attestation.make_ca("X", paris, years=1)
    assert ca.not_valid_before_utc == datetime(2026, 3, 1, 12, 29, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"common_name": ""},
        {"common_name": "x" * 65},
        {"now": datetime(2026, 1, 1)},  # naive
        {"years": 0},
        {"years": True},
        {"serial": 0},
        {"serial": 2**159},
        {"organization": ""},
        {"key": ec.generate_private_key(ec.SECP256R1())},
    ],
)
def test_ca_refuses_bad_inputs(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"common_name": "X", "now": NOW, **kwargs}
    with pytest.raises(InvalidIdentity):
        attestation.make_ca(**args)


# --- the DeviceID certificate -------------------------------------------------------------


def test_device_cert(pki: Pki) -> None:
    dev = pki.device
    assert dev.issuer == pki.ca.subject
    assert dev.subject.rfc4514_string() == (
        f"2.5.4.5={UEID.hex()},CN=TRE DeviceID,O=TRE Manufacturer"
    )
    assert dev.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == UEID.hex()
    san = ext(dev, x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:dev:ueid:030305020009090000010706010408",
        "urn:gsma:imei:35209900-176148-0",
    ]
    bc = ext(dev, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(dev, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_cert_sign
    assert not ku.value.crl_sign
    aki = ext(dev, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(pki.ca, x509.SubjectKeyIdentifier).value.digest
    assert ext(dev, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        pki.device_key.public_key()
    )
    assert dev.not_valid_before_utc == NOW.replace(microsecond=0) - timedelta(minutes=1)
    assert dev.not_valid_after_utc == pki.ca.not_valid_after_utc  # never outlives its CA
    assert attestation.device_ueid(dev) == UEID


def test_device_cert_with_a_random_ueid_and_no_imei(pki: Pki) -> None:
    ueid = attestation.random_ueid(bytes(range(32)))
    dev = attestation.issue_device_cert(
        pki.ca_key, pki.ca, pki.device_key.public_key(), ueid, NOW, years=5
    )
    uris = ext(dev, x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    assert uris == [f"urn:dev:ueid:{ueid.hex()}"]
    assert attestation.device_ueid(dev) == ueid
    assert dev.not_valid_after_utc == datetime(2031, 3, 1, 12, 30, 15, tzinfo=UTC)
    attestation.verify_chain(dev, [], pki.ca, NOW)


def test_random_ueid_with_an_imei_names_both(pki: Pki) -> None:
    ueid = attestation.random_ueid(bytes(32))
    dev = attestation.issue_device_cert(
        pki.ca_key, pki.ca, pki.device_key.public_key(), ueid, NOW, imei=IMEI
    )
    assert attestation.device_ueid(dev) == ueid


def test_device_cert_refuses_bad_inputs(pki: Pki) -> None:
    public = pki.device_key.public_key()
    other_key, other_ca = attestation.make_ca("Other", NOW)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"ueid": b"\x05abc"}, "UEID type"),
        ({"imei": "352099001761482"}, "Luhn"),
        ({"imei": "490154203237518"}, "does not match"),
        ({"ca_key": other_key}, "does not match the CA certificate"),
        ({"ca_cert": pki.alias, "ca_key": pki.alias_key}, "not a CA"),
        ({"device_public": pki.device_key}, "Ed25519PublicKey"),
        ({"now": NOW - timedelta(days=1)}, "not valid at"),
        ({"now": NOW.replace(tzinfo=None)}, "timezone-aware"),
        ({"years": 101}, "years"),
    ]
    for change, message in cases:
        args: dict[str, Any] = {
            "ca_key": pki.ca_key,
            "ca_cert": pki.ca,
            "device_public": public,
            "ueid": UEID,
            "now": NOW,
            "imei": IMEI,
            **change,
        }
        with pytest.raises(InvalidIdentity, match=message):
            attestation.issue_device_cert(**args)
    assert other_ca is not None


def test_device_ueid_refuses_certs_without_one(pki: Pki) -> None:
    with pytest.raises(InvalidIdentity, match="subjectAltName"):
        attestation.device_ueid(pki.ca)
    two = x509.SubjectAlternativeName(
        [x509.UniformResourceIdentifier(attestation.ueid_urn(UEID))] * 2
    )
    cert = resign(pki.device, pki.ca_key, extensions=replaced(pki.device, two, False))
    with pytest.raises(InvalidIdentity, match="exactly one UEID"):
        attestation.device_ueid(cert)
    for uri in ("urn:dev:ueid:zz", "urn:dev:ueid:0A" + "00" * 32, "urn:dev:ueid:09"):
        san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)])
        cert = resign(pki.device, pki.ca_key, extensions=replaced(pki.device, san, False))
        with pytest.raises(InvalidIdentity):
            attestation.device_ueid(cert)


# --- the alias certificate ----------------------------------------------------------------


def test_alias_cert(pki: Pki) -> None:
    alias = pki.alias
    assert alias.issuer == pki.device.subject
    assert alias.subject.rfc4514_string() == (f"2.5.4.5={MEASUREMENT.hex()},CN=meter,O=TRE domain")
    bc = ext(alias, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext(alias, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    aki = ext(alias, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(pki.device, x509.SubjectKeyIdentifier).value.digest
    tcb = alias.extensions.get_extension_for_oid(x509.ObjectIdentifier("2.23.133.5.4.1"))
    assert not tcb.critical
    assert isinstance(tcb.value, x509.UnrecognizedExtension)
    assert tcb.value.value == attestation.encode_tcb_info("meter", MEASUREMENT, OWNER, 3)
    assert attestation.read_tcb_info(alias) == {
        "domain_id": "meter",
        "svn": 3,
        "measurement": MEASUREMENT,
        "owner_hash": OWNER,
    }
    assert alias.not_valid_after_utc == NOW.replace(microsecond=0) + timedelta(days=365)


def test_alias_never_outlives_the_device_cert(pki: Pki) -> None:
    alias = attestation.issue_alias_cert(
        pki.device_key, pki.device, pki.alias_key.public_key(), "meter", MEASUREMENT, OWNER, 3,
        NOW, days=36500,
    )  # fmt: skip
    assert alias.not_valid_after_utc == pki.device.not_valid_after_utc


def test_alias_cert_refuses_bad_inputs(pki: Pki) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"domain_id": "a/b"}, "domain id"),
        ({"measurement": MEASUREMENT[:-1]}, "measurement"),
        ({"owner_hash": b""}, "owner_hash"),
        ({"svn": -1}, "svn"),
        ({"days": 0}, "days"),
        ({"device_key": pki.ca_key}, "does not match"),
        ({"device_cert": pki.alias, "device_key": pki.alias_key}, "not a CA"),
        ({"alias_public": b"\x00" * 32}, "Ed25519PublicKey"),
        ({"now": NOW + timedelta(days=365 * 21)}, "not valid at"),
    ]
    for change, message in cases:
        args: dict[str, Any] = {
            "device_key": pki.device_key,
            "device_cert": pki.device,
            "alias_public": pki.alias_key.public_key(),
            "domain_id": "meter",
            "measurement": MEASUREMENT,
            "owner_hash": OWNER,
            "svn": 3,
            "now": NOW,
            **change,
        }
        with pytest.raises(InvalidIdentity, match=message):
            attestation.issue_alias_cert(**args)


def test_read_tcb_info_refuses_certs_without_or_with_a_bad_one(pki: Pki) -> None:
    with pytest.raises(InvalidIdentity, match="no TCG DiceTcbInfo"):
        attestation.read_tcb_info(pki.device)
    bad = x509.UnrecognizedExtension(x509.ObjectIdentifier("2.23.133.5.4.1"), b"\x30\x00")
    cert = resign(pki.alias, pki.device_key, extensions=replaced(pki.alias, bad, False))
    with pytest.raises(InvalidIdentity, match="malformed TcbInfo"):
        attestation.read_tcb_info(cert)


# --- verify_chain -------------------------------------------------------------------------


def test_chains_verify(pki: Pki) -> None:
    attestation.verify_chain(pki.device, [], pki.ca, NOW)
    attestation.verify_chain(pki.alias, [pki.device], pki.ca, NOW)
    attestation.verify_chain(pki.alias, (pki.device, pki.ca), pki.ca, NOW)  # root copy ignored
    attestation.verify_chain(pki.ca, [], pki.ca, NOW)
    attestation.verify_chain(pki.alias, [pki.device], pki.ca, NOW + timedelta(days=364))


def chain_error(leaf: Any, chain: Any, root: Any, now: datetime = NOW) -> str:
    with pytest.raises(AttestationError) as info:
        attestation.verify_chain(leaf, chain, root, now)
    assert info.value.code in {"ATTESTATION", "INVALID_IDENTITY"}
    return info.value.message


def test_wrong_root(pki: Pki) -> None:
    _, other = attestation.make_ca("Other CA", NOW)
    assert "names issuer" in chain_error(pki.alias, [pki.device], other)
    _, impostor = attestation.make_ca("TRE Test CA", NOW)  # same name, another key
    assert "does not verify" in chain_error(pki.alias, [pki.device], impostor)
    assert "does not verify" in chain_error(pki.device, [], impostor)


def test_missing_intermediate(pki: Pki) -> None:
    assert "names issuer" in chain_error(pki.alias, [], pki.ca)


def test_an_intermediate_is_no_trust_anchor(pki: Pki) -> None:
    assert "names issuer" in chain_error(pki.alias, [], pki.device)


def test_expired(pki: Pki) -> None:
    later = NOW + timedelta(days=366)
    message = chain_error(pki.alias, [pki.device], pki.ca, later)
    assert "has expired" in message and "CN=meter" in message
    attestation.verify_chain(pki.device, [], pki.ca, later)
    much_later = NOW + timedelta(days=365 * 20 + 6)
    assert "has expired" in chain_error(pki.device, [], pki.ca, much_later)


def test_not_yet_valid(pki: Pki) -> None:
    earlier = NOW - timedelta(minutes=2)
    assert "not valid yet" in chain_error(pki.alias, [pki.device], pki.ca, earlier)
    attestation.verify_chain(pki.alias, [pki.device], pki.ca, NOW - timedelta(seconds=59))


def test_leaf_signed_by_another_key(pki: Pki) -> None:
    forged = resign(pki.alias, Ed25519PrivateKey.generate())
    message = chain_error(forged, [pki.device], pki.ca)
    assert "signature does not verify" in message and "CN=meter" in message


def test_device_signed_by_another_key(pki: Pki) -> None:
    forged = resign(pki.device, Ed25519PrivateKey.generate())
    assert "does not verify" in chain_error(pki.alias, [forged], pki.ca)


def test_device_cert_that_is_not_a_ca(pki: Pki) -> None:
    not_ca = x509.BasicConstraints(ca=False, path_length=None)
    device = resign(pki.device, pki.ca_key, extensions=replaced(pki.device, not_ca, True))
    attestation.verify_chain(device, [], pki.ca, NOW)  # fine as a leaf
    assert "is not a CA" in chain_error(pki.alias, [device], pki.ca)
    no_bc = replaced(pki.device, None, True, oid=ExtensionOID.BASIC_CONSTRAINTS)
    device = resign(pki.device, pki.ca_key, extensions=no_bc)
    assert "is not a CA" in chain_error(pki.alias, [device], pki.ca)


def test_issuer_without_key_cert_sign(pki: Pki) -> None:
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    device = resign(pki.device, pki.ca_key, extensions=replaced(pki.device, usage, True))
    assert "no keyCertSign" in chain_error(pki.alias, [device], pki.ca)
    no_ku = replaced(pki.device, None, True, oid=ExtensionOID.KEY_USAGE)
    device = resign(pki.device, pki.ca_key, extensions=no_ku)
    assert "without keyUsage" in chain_error(pki.alias, [device], pki.ca)


def test_path_length(pki: Pki) -> None:
    """The DeviceID (pathLen 0) may not certify a CA that certifies something else."""
    sub_key = Ed25519PrivateKey.generate()
    sub_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sub")])
    sub = resign(
        pki.device, pki.device_key, subject=sub_name, issuer=pki.device.subject,
        public=sub_key.public_key(),
    )  # fmt: skip
    leaf = resign(pki.alias, sub_key, issuer=sub_name)
    message = chain_error(leaf, [sub, pki.device], pki.ca)
    assert "allows 0 CA certificate(s) below it, the chain has 1" in message
    # The CA's own pathLen 2 allows two intermediates under it.
    attestation.verify_chain(sub, [pki.device], pki.ca, NOW)


def test_unknown_critical_extension(pki: Pki) -> None:
    tcb = pki.alias.extensions.get_extension_for_oid(x509.ObjectIdentifier("2.23.133.5.4.1"))
    alias = resign(pki.alias, pki.device_key, extensions=replaced(pki.alias, tcb.value, True))
    assert "unknown critical extension" in chain_error(alias, [pki.device], pki.ca)


def test_only_ed25519(pki: Pki) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    alias = resign(pki.alias, ec_key)
    assert "not signed with Ed25519" in chain_error(alias, [pki.device], pki.ca)


def test_naive_now_and_wrong_types(pki: Pki) -> None:
    with pytest.raises(InvalidIdentity, match="timezone-aware"):
        attestation.verify_chain(pki.device, [], pki.ca, datetime(2026, 3, 1))
    assert "x509.Certificate" in chain_error(b"pem", [], pki.ca)


# --- PEM ----------------------------------------------------------------------------------


def test_cert_pem_round_trip(pki: Pki) -> None:
    for cert in (pki.ca, pki.device, pki.alias):
        pem = attestation.to_pem(cert)
        assert pem.startswith(b"-----BEGIN CERTIFICATE-----\n")
        assert attestation.load_cert_pem(pem) == cert
    loaded = attestation.load_cert_pem(attestation.to_pem(pki.alias))
    assert attestation.read_tcb_info(loaded)["svn"] == 3


def test_key_pem_round_trip(pki: Pki) -> None:
    pem = attestation.private_key_pem(pki.device_key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, not encrypted
    key = attestation.load_private_key_pem(pem)
    assert key.private_bytes_raw() == pki.device_key.private_bytes_raw()


@pytest.mark.parametrize("data", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_load_cert_pem_refuses_garbage(data: bytes) -> None:
    with pytest.raises(InvalidIdentity, match=r"not a PEM X\.509 certificate"):
        attestation.load_cert_pem(data)


def test_load_private_key_pem_refuses_other_keys(pki: Pki) -> None:
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(InvalidIdentity, match="expected an Ed25519"):
        attestation.load_private_key_pem(ec_pem)
    encrypted = pki.device_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    garbage = attestation.to_pem(pki.ca)
    for data in (encrypted, garbage, b"", b"\x00" * 40):
        with pytest.raises(InvalidIdentity) as info:
            attestation.load_private_key_pem(data)
        assert "BEGIN" not in info.value.message
    with pytest.raises(InvalidIdentity):
        attestation.load_private_key_pem("pem")  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentity):
        attestation.private_key_pem(pki.device_key.public_key())  # type: ignore[arg-type]


# --- the lazy import ----------------------------------------------------------------------


def test_certificate_names_are_exported_lazily() -> None:
    assert {"make_ca", "verify_chain", "read_tcb_info"} <= set(dir(attestation))
    for name in attestation.__all__:
        assert getattr(attestation, name) is not None
    with pytest.raises(AttributeError):
        attestation.no_such_name  # noqa: B018


# --- interoperability with OpenSSL --------------------------------------------------------

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(
    OPENSSL is None, reason="the openssl command-line tool is not installed on this machine"
)


def openssl(*args: str | Path) -> str:
    assert OPENSSL is not None
    result = subprocess.run(
        [OPENSSL, *map(str, args)], capture_output=True, text=True, timeout=30, check=False
    )
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The chain issued at the real current time, since openssl checks validity itself."""
    live = make_pki(datetime.now(UTC))
    folder = tmp_path_factory.mktemp("pki")
    files = {}
    for name in ("ca", "device", "alias"):
        files[name] = folder / f"{name}.pem"
        files[name].write_bytes(attestation.to_pem(getattr(live, name)))
    tcb = live.alias.extensions.get_extension_for_oid(x509.ObjectIdentifier("2.23.133.5.4.1"))
    assert isinstance(tcb.value, x509.UnrecognizedExtension)
    files["tcb"] = folder / "tcb.der"
    files["tcb"].write_bytes(tcb.value.value)
    return files


@needs_openssl
def test_openssl_verifies_the_device_cert(pem_files: dict[str, Path]) -> None:
    out = openssl("verify", "-x509_strict", "-CAfile", pem_files["ca"], pem_files["device"])
    assert out.strip() == f"{pem_files['device']}: OK"


@needs_openssl
def test_openssl_verifies_the_alias_chain(pem_files: dict[str, Path]) -> None:
    out = openssl(
        "verify", "-x509_strict", "-CAfile", pem_files["ca"],
        "-untrusted", pem_files["device"], pem_files["alias"],
    )  # fmt: skip
    assert out.strip() == f"{pem_files['alias']}: OK"


@needs_openssl
def test_openssl_refuses_the_device_cert_under_another_ca(
    pem_files: dict[str, Path], tmp_path: Path
) -> None:
    _, other = attestation.make_ca("TRE Test CA", datetime.now(UTC))
    (tmp_path / "other.pem").write_bytes(attestation.to_pem(other))
    out = openssl("verify", "-CAfile", tmp_path / "other.pem", pem_files["device"])
    assert "verification failed" in out  # no issuer: AKI/SKI and signature do not match


@needs_openssl
def test_openssl_prints_the_certs(pem_files: dict[str, Path]) -> None:
    alias = openssl("x509", "-in", pem_files["alias"], "-noout", "-text")
    assert "2.23.133.5.4.1:" in alias and "CA:FALSE" in alias and "ED25519" in alias
    device = openssl("x509", "-in", pem_files["device"], "-noout", "-text")
    assert "URI:urn:dev:ueid:030305020009090000010706010408" in device
    assert "URI:urn:gsma:imei:35209900-176148-0" in device
    assert "CA:TRUE, pathlen:0" in device


@needs_openssl
def test_openssl_parses_the_tcb_info_der(pem_files: dict[str, Path]) -> None:
    out = openssl("asn1parse", "-inform", "DER", "-in", pem_files["tcb"])
    assert "error" not in out.lower()
    assert out.count("cont [ 1 ]") == 1 and out.count("cont [ 3 ]") == 1
    assert out.count("cont [ 6 ]") == 1 and out.count(":sha256") == 2
    assert out.count("OCTET STRING") == 2


def test_validity_never_starts_before_the_issuer(pki: Pki) -> None:
    public = pki.device_key.public_key()
    soon = NOW - timedelta(seconds=30)  # the CA is valid from NOW - 1 minute
    dev = attestation.issue_device_cert(pki.ca_key, pki.ca, public, UEID, soon)
    assert dev.not_valid_before_utc == pki.ca.not_valid_before_utc
    later = NOW + timedelta(days=2)
    dev = attestation.issue_device_cert(pki.ca_key, pki.ca, public, UEID, later)
    assert dev.not_valid_before_utc == later.replace(microsecond=0) - timedelta(minutes=1)
