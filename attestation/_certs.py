"""X.509 certificates for the TRE's identity chain: manufacturer CA -> DeviceID -> alias.

Following the TCG DICE Certificate Profiles and RFC 5280, all Ed25519 (RFC 8410):

- the manufacturer CA (:func:`make_ca`): self-signed, ``cA`` with path length 2;
- the DeviceID certificate (:func:`issue_device_cert`), issued in the factory: names the
  device by its UEID (subject serialNumber and a ``urn:dev:ueid:`` SAN URI) and, if given,
  its IMEI (``urn:gsma:imei:`` SAN URI, RFC 7254). ``cA`` with path length 0: the DeviceID
  key certifies alias keys and nothing deeper;
- one alias certificate per domain (:func:`issue_alias_cert`), issued on the device by the
  DeviceID key: end entity, subject CN = domain id, carrying the domain's measurement,
  owner key hash and svn in a TCG DiceTcbInfo extension (see :mod:`attestation._der`),
  marked non-critical so generic X.509 tooling (``openssl verify``) still validates the
  chain; our verifier reads it explicitly with :func:`read_tcb_info`.

Time is passed in (``now``, timezone-aware), never read from a clock. Validity starts one
minute before ``now`` (clock skew) and never extends past the issuer's own. Serial numbers
default to :func:`cryptography.x509.random_serial_number` (159 random bits), and CA keys to
a fresh :meth:`Ed25519PrivateKey.generate`: both draw on the OS's randomness through
``cryptography``, which is not I/O in the sense this package avoids.

This module imports :mod:`cryptography.x509`, which (through :mod:`email.utils`) loads the
stdlib ``socket`` module; :mod:`attestation` therefore imports it lazily, on first use of a
certificate function, so ``import attestation`` stays free of I/O modules.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtensionOID, NameOID, SignatureAlgorithmOID

from ._der import TCB_INFO_OID, TcbInfo, decode_tcb_info, encode_tcb_info
from ._dice import check_domain_id
from ._errors import AttestationError, InvalidIdentity
from ._ueid import (
    UEID_TYPE_IMEI,
    UEID_URN_PREFIX,
    check_imei,
    describe_ueid,
    imei_urn,
    ueid_from_imei,
    ueid_urn,
)

__all__ = [
    "ALIAS_ORGANIZATION",
    "CA_PATH_LENGTH",
    "DEFAULT_ORGANIZATION",
    "DEVICE_COMMON_NAME",
    "device_ueid",
    "issue_alias_cert",
    "issue_device_cert",
    "load_cert_pem",
    "load_private_key_pem",
    "make_ca",
    "private_key_pem",
    "read_tcb_info",
    "to_pem",
    "verify_chain",
]

#: Organisation of a CA made without an explicit ``organization``.
DEFAULT_ORGANIZATION = "TRE Manufacturer"
#: Common name of every DeviceID certificate.
DEVICE_COMMON_NAME = "TRE DeviceID"
#: Organisation of every alias certificate.
ALIAS_ORGANIZATION = "TRE domain"
#: Path length of the manufacturer CA (it may delegate to intermediate CAs).
CA_PATH_LENGTH = 2

_SKEW = timedelta(minutes=1)
_TCB_INFO = x509.ObjectIdentifier(TCB_INFO_OID)
_MAX_SERIAL = 2**159  # RFC 5280 4.1.2.2: at most 20 octets, positive
_UB_NAME = 64  # ub-common-name, ub-organization-name (RFC 5280 appendix A)
# Extensions verify_chain understands, so may find marked critical.
_KNOWN_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.EXTENDED_KEY_USAGE,
    }
)


# --- input checks -------------------------------------------------------------------------


def _utc(now: object) -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise InvalidIdentity("now must be a timezone-aware datetime")
    return now.astimezone(UTC)


def _check_name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value.encode("utf-8")) > _UB_NAME:
        raise InvalidIdentity(f"{what} must be a non-empty str of at most {_UB_NAME} bytes")
    return value


def _check_count(what: str, value: object, highest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= highest:
        raise InvalidIdentity(f"{what} must be an int in 1..{highest}")
    return value


def _serial(serial: int | None) -> int:
    if serial is None:
        return x509.random_serial_number()
    if isinstance(serial, bool) or not isinstance(serial, int) or not 0 < serial < _MAX_SERIAL:
        raise InvalidIdentity("serial must be a positive int below 2**159")
    return serial


def _check_public(what: str, key: object) -> Ed25519PublicKey:
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidIdentity(f"{what} must be an Ed25519PublicKey, not {type(key).__name__}")
    return key


def _add_years(t: datetime, years: int) -> datetime:
    try:
        return t.replace(year=t.year + years)
    except ValueError:  # 29 February into a non-leap year
        return t.replace(year=t.year + years, day=28)


def _label(cert: x509.Certificate) -> str:
    return f"certificate {cert.subject.rfc4514_string()!r}"


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _check_issuer(key: object, cert: object, now: datetime, role: str) -> Ed25519PrivateKey:
    """The issuer's key and certificate belong together, may certify, and are valid now."""
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidIdentity(f"the {role} key must be an Ed25519PrivateKey")
    if not isinstance(cert, x509.Certificate):
        raise InvalidIdentity(f"the {role} certificate must be an x509.Certificate")
    public = cert.public_key()
    if not isinstance(public, Ed25519PublicKey) or (
        public.public_bytes_raw() != key.public_key().public_bytes_raw()
    ):
        raise InvalidIdentity(f"the {role} key does not match the {role} certificate")
    constraints = _basic_constraints(cert)
    if constraints is None or not constraints.ca:
        raise InvalidIdentity(f"the {role} certificate is not a CA certificate")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise InvalidIdentity(f"the {role} certificate is not valid at {now.isoformat()}")
    return key


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        public = issuer.public_key()
        assert isinstance(public, Ed25519PublicKey)  # checked by _check_issuer
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(public)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _key_usage(*, sign: bool, cert_sign: bool, crl_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _issued(
    issuer: x509.Certificate,
    subject: x509.Name,
    public: Ed25519PublicKey,
    now: datetime,
    not_after: datetime,
    serial: int | None,
) -> x509.CertificateBuilder:
    """A builder for a certificate ``issuer`` signs: names, validity, SKI and AKI. The
    validity is clamped to the issuer's own."""
    not_before = max((now - _SKEW).replace(microsecond=0), issuer.not_valid_before_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(public)
        .serial_number(_serial(serial))
        .not_valid_before(not_before)
        .not_valid_after(min(not_after.replace(microsecond=0), issuer.not_valid_after_utc))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(_aki(issuer), critical=False)
    )


# --- issuing ------------------------------------------------------------------------------


def make_ca(
    common_name: str,
    now: datetime,
    *,
    years: int = 20,
    serial: int | None = None,
    organization: str = DEFAULT_ORGANIZATION,
    key: Ed25519PrivateKey | None = None,
) -> tuple[Ed25519PrivateKey, x509.Certificate]:
    """A self-signed manufacturer CA: a new Ed25519 key (or ``key``) and its certificate.

    Subject ``O=organization, CN=common_name``; BasicConstraints cA, pathLen 2 (critical);
    KeyUsage keyCertSign, cRLSign, digitalSignature (critical); SubjectKeyIdentifier.
    Valid from a minute before ``now`` for ``years``.
    """
    now = _utc(now)
    name = x509.Name(
        [
            x509.NameAttribute(
                NameOID.ORGANIZATION_NAME, _check_name("organization", organization)
            ),
            x509.NameAttribute(NameOID.COMMON_NAME, _check_name("common_name", common_name)),
        ]
    )
    years = _check_count("years", years, 100)
    if key is None:
        key = Ed25519PrivateKey.generate()
    elif not isinstance(key, Ed25519PrivateKey):
        raise InvalidIdentity("key must be an Ed25519PrivateKey")
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(_serial(serial))
        .not_valid_before((now - _SKEW).replace(microsecond=0))
        .not_valid_after(_add_years(now, years).replace(microsecond=0))
        .add_extension(x509.BasicConstraints(ca=True, path_length=CA_PATH_LENGTH), critical=True)
        .add_extension(_key_usage(sign=True, cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, None)
    )
    return key, cert


def issue_device_cert(
    ca_key: Ed25519PrivateKey,
    ca_cert: x509.Certificate,
    device_public: Ed25519PublicKey,
    ueid: bytes,
    now: datetime,
    *,
    imei: str | None = None,
    years: int = 20,
    serial: int | None = None,
) -> x509.Certificate:
    """The factory's DeviceID certificate for ``device_public`` (see the module docstring).

    Subject: the CA's O, ``CN=TRE DeviceID``, ``serialNumber=<ueid hex>``. SAN URIs
    ``urn:dev:ueid:<hex>`` and, with ``imei``, ``urn:gsma:imei:<TAC>-<SNR>-0``; an IMEI that
    contradicts an IMEI-type UEID is refused. BasicConstraints cA, pathLen 0 (critical);
    KeyUsage digitalSignature, keyCertSign (critical); SKI; AKI from the CA.
    """
    now = _utc(now)
    describe_ueid(ueid)
    uris = [ueid_urn(ueid)]
    if imei is not None:
        imei = check_imei(imei)
        if ueid[0] == UEID_TYPE_IMEI and ueid != ueid_from_imei(imei):
            raise InvalidIdentity("the IMEI does not match the IMEI-based UEID")
        uris.append(imei_urn(imei))
    years = _check_count("years", years, 100)
    key = _check_issuer(ca_key, ca_cert, now, "CA")
    public = _check_public("device_public", device_public)
    organization = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    subject = x509.Name(
        [
            *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, a.value) for a in organization),
            x509.NameAttribute(NameOID.COMMON_NAME, DEVICE_COMMON_NAME),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, ueid.hex()),
        ]
    )
    builder = _issued(ca_cert, subject, public, now, _add_years(now, years), serial)
    return (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(sign=True, cert_sign=True, crl_sign=False), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
        .sign(key, None)
    )


def issue_alias_cert(
    device_key: Ed25519PrivateKey,
    device_cert: x509.Certificate,
    alias_public: Ed25519PublicKey,
    domain_id: str,
    measurement: bytes,
    owner_hash: bytes,
    svn: int,
    now: datetime,
    *,
    days: int = 365,
    serial: int | None = None,
) -> x509.Certificate:
    """A domain's alias certificate, signed by the DeviceID key.

    Subject ``O=TRE domain, CN=<domain_id>, serialNumber=<measurement hex>``;
    BasicConstraints not cA (critical); KeyUsage digitalSignature (critical); SKI; AKI; and
    the TCG DiceTcbInfo extension (2.23.133.5.4.1, non-critical) with model = domain_id,
    svn, fwids = [measurement, owner_hash].
    """
    now = _utc(now)
    tcb_info = encode_tcb_info(domain_id, measurement, owner_hash, svn)
    days = _check_count("days", days, 36500)
    key = _check_issuer(device_key, device_cert, now, "DeviceID")
    public = _check_public("alias_public", alias_public)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ALIAS_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, check_domain_id(domain_id)),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, measurement.hex()),
        ]
    )
    builder = _issued(device_cert, subject, public, now, now + timedelta(days=days), serial)
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign=True, cert_sign=False, crl_sign=False), critical=True)
        .add_extension(x509.UnrecognizedExtension(_TCB_INFO, tcb_info), critical=False)
        .sign(key, None)
    )


# --- reading ------------------------------------------------------------------------------


#: Decoded DiceTcbInfo values by their exact DER (the extension's extnValue): the same alias
#: certificates come back in every piece of evidence, and the decoder is pure Python. A pure
#: function of those bytes, bounded (LRU); a value that does not decode raises and is never
#: stored.
_TCB_INFO_CACHE_SIZE = 64
_decode_tcb_info_cached = functools.lru_cache(maxsize=_TCB_INFO_CACHE_SIZE)(decode_tcb_info)


def read_tcb_info(cert: x509.Certificate) -> TcbInfo:
    """The DiceTcbInfo of an alias certificate: ``{"domain_id", "svn", "measurement",
    "owner_hash"}`` (a new dict on every call). :class:`InvalidIdentity` if absent or
    malformed."""
    try:
        ext = cert.extensions.get_extension_for_oid(_TCB_INFO)
    except x509.ExtensionNotFound:
        raise InvalidIdentity(f"{_label(cert)} has no TCG DiceTcbInfo extension") from None
    except ValueError as exc:
        raise InvalidIdentity(f"{_label(cert)} has malformed extensions: {exc}") from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - cryptography
        raise InvalidIdentity("the DiceTcbInfo extension was parsed unexpectedly")
    der = value.value
    if type(der) is not bytes:  # pragma: no cover - cryptography gives bytes
        der = bytes(der)
    # A copy: the cached dict is shared, the caller may change its own.
    return TcbInfo(**_decode_tcb_info_cached(der))


def device_ueid(cert: x509.Certificate) -> bytes:
    """The UEID a DeviceID certificate names (its one ``urn:dev:ueid:`` SAN URI)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise InvalidIdentity(f"{_label(cert)} has no subjectAltName") from None
    found = [
        uri[len(UEID_URN_PREFIX) :]
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.startswith(UEID_URN_PREFIX)
    ]
    if len(found) != 1:
        raise InvalidIdentity(f"{_label(cert)} must name exactly one UEID, names {len(found)}")
    try:
        ueid = bytes.fromhex(found[0])
    except ValueError:
        raise InvalidIdentity(f"{_label(cert)} has a UEID URN that is not hex") from None
    if ueid_urn(ueid) != UEID_URN_PREFIX + found[0]:  # also validates; refuses upper case
        raise InvalidIdentity(f"{_label(cert)} has a UEID URN that is not lower-case hex")
    return ueid


# --- verifying ----------------------------------------------------------------------------


def _check_cert(cert: x509.Certificate, now: datetime) -> None:
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ED25519:
        raise AttestationError(f"{_label(cert)} is not signed with Ed25519")
    if now < cert.not_valid_before_utc:
        raise AttestationError(
            f"{_label(cert)} is not valid yet: valid from {cert.not_valid_before_utc.isoformat()}"
        )
    if now > cert.not_valid_after_utc:
        raise AttestationError(
            f"{_label(cert)} has expired: valid until {cert.not_valid_after_utc.isoformat()}"
        )
    try:
        extensions = list(cert.extensions)
    except ValueError as exc:
        raise AttestationError(f"{_label(cert)} has malformed extensions: {exc}") from None
    for ext in extensions:
        if ext.critical and ext.oid not in _KNOWN_EXTENSIONS:
            raise AttestationError(f"{_label(cert)} has an unknown critical extension {ext.oid}")


def _check_ca(cert: x509.Certificate, below: int) -> None:
    """``cert`` may issue certificates with ``below`` intermediate CAs under it."""
    constraints = _basic_constraints(cert)
    if constraints is None or not constraints.ca:
        raise AttestationError(f"{_label(cert)} is not a CA (basicConstraints cA is not set)")
    if constraints.path_length is not None and constraints.path_length < below:
        raise AttestationError(
            f"{_label(cert)} allows {constraints.path_length} CA certificate(s) below it, "
            f"the chain has {below}"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise AttestationError(f"{_label(cert)} is a CA without keyUsage") from None
    if not usage.key_cert_sign:
        raise AttestationError(f"{_label(cert)} may not sign certificates (no keyCertSign)")


def _check_signed(child: x509.Certificate, issuer: x509.Certificate) -> None:
    if child.issuer != issuer.subject:
        raise AttestationError(
            f"{_label(child)} names issuer {child.issuer.rfc4514_string()!r}, "
            f"not {issuer.subject.rfc4514_string()!r}"
        )
    try:
        child.verify_directly_issued_by(issuer)
    except InvalidSignature:
        raise AttestationError(
            f"{_label(child)} signature does not verify with the key of {_label(issuer)}"
        ) from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise AttestationError(
            f"{_label(child)} cannot be checked against {_label(issuer)}: {exc}"
        ) from None


def _verify_path(
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate],
    root: x509.Certificate,
    now: datetime,
) -> None:
    """:func:`verify_chain` without its last check, the root's self-signature.

    RFC 5280 section 6.1: the trust anchor is an input to path validation, trusted because
    it was delivered by a trusted path (section 6.1.1 (d): its name and public key); the
    path starts at the first certificate *it* issued, and nothing in the algorithm checks
    the anchor's own signature. A self-signature proves only that whoever made the
    certificate held its key, which anyone can do for a CA of their own: it adds nothing to
    a root the caller already trusts. :func:`attestation.verify_evidence` uses this and
    leaves that check (one Ed25519 verification) to where the CA certificate is accepted as
    a trust anchor; the root's validity, signature algorithm, critical extensions and CA
    rules are still checked here, on every call.
    """
    now = _utc(now)
    if chain and chain[-1] == root:
        chain = chain[:-1]
    path = [leaf, *chain, root]
    for cert in path:
        if not isinstance(cert, x509.Certificate):
            raise AttestationError(f"expected x509.Certificate, got {type(cert).__name__}")
        _check_cert(cert, now)
    for below, (child, issuer) in enumerate(itertools.pairwise(path)):
        _check_ca(issuer, below)
        _check_signed(child, issuer)


def verify_chain(
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate],
    root: x509.Certificate,
    now: datetime,
) -> None:
    """Check that ``leaf`` chains to the trusted ``root`` at time ``now``.

    ``chain`` lists the intermediates from the leaf's issuer upwards (the alias chain is
    ``verify_chain(alias, [device], ca, now)``; a DeviceID certificate alone is
    ``verify_chain(device, [], ca, now)``); a trailing copy of ``root`` is ignored.
    Checks, in order, for every certificate: Ed25519 signature algorithm, validity window at
    ``now``, no unknown critical extension; for every issuer (intermediates and root):
    basicConstraints cA, its pathLenConstraint against the CAs below it, keyUsage
    keyCertSign; for every link: issuer name and signature
    (:meth:`~cryptography.x509.Certificate.verify_directly_issued_by`); and that the root is
    self-signed. Raises :class:`AttestationError` naming the certificate and the rule.

    The root's self-signature is checked here because this function is also how a CA
    certificate is accepted as a trust anchor in the first place (``verify_chain(ca, [],
    ca, now)``). RFC 5280 section 6.1 does not require it of an anchor already trusted, so
    :func:`attestation.verify_evidence`, which appraises evidence against a CA its caller
    already trusts, skips it (and only it) on every appraisal.
    """
    _verify_path(leaf, chain, root, now)
    _check_signed(root, root)


# --- PEM ----------------------------------------------------------------------------------


def to_pem(cert: x509.Certificate) -> bytes:
    """The certificate in PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """The private key as unencrypted PKCS#8 PEM (``NoEncryption``, on purpose: the caller
    stores it where only the TRE can read it, or seals it)."""
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidIdentity("key must be an Ed25519PrivateKey")
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_private_key_pem(data: bytes) -> Ed25519PrivateKey:
    """An unencrypted PEM Ed25519 private key; :class:`InvalidIdentity` for anything else
    (the message never quotes the input)."""
    if not isinstance(data, bytes):
        raise InvalidIdentity("PEM data must be bytes")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidIdentity("not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidIdentity(f"expected an Ed25519 private key, got {type(key).__name__}")
    return key


def load_cert_pem(data: bytes) -> x509.Certificate:
    """The first certificate in PEM ``data``; :class:`InvalidIdentity` on anything else."""
    if not isinstance(data, bytes):
        raise InvalidIdentity("PEM data must be bytes")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise InvalidIdentity("not a PEM X.509 certificate") from None
