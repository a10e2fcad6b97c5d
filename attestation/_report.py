"""Local reports: a MACed statement about one domain, checkable only by another (SGX EREPORT).

The kernel makes a report ABOUT the domain that asks (the *subject*), TARGETED at another
domain (the *target*, the verifier). The MAC key is the target's report key, derived from
the target's attestation CDI, so only the target (through the kernel, which holds the key)
can check a report, and a report made for domain A is useless to domain C: C's key does
not check it. This is the pattern of Intel SGX's ``EREPORT`` with a ``TARGETINFO`` and
``EGETKEY(REPORT_KEY)``; the key never leaves the kernel.

Key: ``report_key(target attest CDI) = derive_key(cdi, "local-report-mac")``, that is
``HKDF-SHA256(ikm=cdi, salt=b"", info=b"tre/v1/key/local-report-mac")``. It follows the
target's measurement: a target whose code changes gets a new key, and reports made for
its old self no longer check.

Wire layout (at most :data:`MAX_REPORT_SIZE` bytes)::

    body = msgpack([VERSION, subject, target, measurement, owner_hash, svn, state,
                    nonce, report_data])                          (canonical encoding)
    report = body || HMAC-SHA256(report_key(target), MAC_LABEL || body)   (32-byte tag)

The body is msgpack with the smallest encoding of every value (what msgpack-python
produces with ``use_bin_type=True``); :func:`check_report` re-encodes what it parsed and
refuses any body that is not byte-for-byte canonical, so one report has one encoding.

:func:`check_report` works in a fixed order: size, MAC (constant time, over the raw bytes,
before anything is parsed, so only authenticated bytes reach the parser), strict parse
(shape, exact types, sizes), canonical form, then ``target == expected_target``. Every
failure raises the same opaque :class:`ReportInvalid` (``code = "REPORT_INVALID"``); its
``reason`` attribute says which step failed, for the audit log only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import attrs
from msgpack import ExtType, Packer, Timestamp, unpackb

from ._dice import DIGEST_SIZE, MAX_SVN, check_domain_id, derive_key
from ._errors import AttestationError, InvalidIdentity
from ._secret import Secret

__all__ = [
    "MAC_LABEL",
    "MAX_REPORT_DATA",
    "MAX_REPORT_NONCE",
    "MAX_REPORT_SIZE",
    "MAX_STATE_LEN",
    "MIN_REPORT_DATA",
    "MIN_REPORT_NONCE",
    "REPORT_INVALID_REASONS",
    "REPORT_KEY_PURPOSE",
    "REPORT_TAG_SIZE",
    "REPORT_VERSION",
    "Report",
    "ReportInvalid",
    "check_report",
    "make_report",
    "report_key",
]

#: Version of the report layout: the first element of the body array.
REPORT_VERSION = 1
#: ``derive_key`` purpose of the report MAC key (a subkey of the target's attest CDI).
REPORT_KEY_PURPOSE = "local-report-mac"
#: Prefix of the MACed message, so a report tag can never be confused with another HMAC
#: made under a key derived the same way.
MAC_LABEL = b"tre/v1/local-report"
#: HMAC-SHA256 tag size.
REPORT_TAG_SIZE = 32
#: The verifier's nonce: at least 8 bytes (64 bits, as RFC 9711's EAT nonce), at most 64.
MIN_REPORT_NONCE = 8
MAX_REPORT_NONCE = 64
#: What the subject binds: at least a SHA-256 digest, at most a SHA-512 one (SGX's
#: REPORTDATA is 64 bytes).
MIN_REPORT_DATA = 32
MAX_REPORT_DATA = 64
#: A lifecycle state name ("running", "active", ...): short lower-case ASCII.
MAX_STATE_LEN = 32
#: Largest encoded report. The biggest valid report is 405 bytes (two 64-character ids,
#: two digests, a uint32 svn, a 32-character state, a 64-byte nonce and report_data, the
#: tag); anything longer is refused before the MAC is computed, bounding the work an
#: attacker can ask of the kernel.
MAX_REPORT_SIZE = 512

_STATE_RE = re.compile(r"[a-z][a-z0-9_-]*")
_FIELDS = 9  # VERSION and the eight fields of Report

#: Stable values of :attr:`ReportInvalid.reason` (audit log only; peers see one error).
REPORT_INVALID_REASONS = frozenset(
    {
        "bad-type",  # the report or expected_target is not of the right type
        "too-large",  # over MAX_REPORT_SIZE
        "bad-mac",  # too short to hold a tag, or the tag does not check (wrong key, tampered)
        "malformed",  # authenticated, but not a canonical report body of this version
        "wrong-target",  # a valid report, made for another target
    }
)


class ReportInvalid(AttestationError):
    """A local report did not check: one opaque error for every kind of failure.

    Tampered, truncated, oversized, made with another domain's key, made for another
    target, malformed: all raise this, with ``code = "REPORT_INVALID"`` and the same
    message, so a peer learns nothing about why. ``reason`` (one of
    :data:`REPORT_INVALID_REASONS`) is for the audit log and tests, never for the peer.
    """

    code = "REPORT_INVALID"

    def __init__(self, reason: str) -> None:
        if reason not in REPORT_INVALID_REASONS:
            raise ValueError(f"unknown ReportInvalid reason {reason!r}")
        super().__init__("the report is invalid")
        self.reason = reason

    def __repr__(self) -> str:
        return f"ReportInvalid(reason={self.reason!r})"


@attrs.frozen
class Report:
    """What the kernel states about the subject domain, for the target domain.

    Nothing here is secret. Fields are checked by :func:`make_report` (which raises
    :class:`InvalidIdentity` naming the field) and by :func:`check_report`.
    """

    #: The domain the report is about (the one that asked the kernel for it).
    subject: str
    #: The domain that may check it (its report key MACs the report).
    target: str
    #: The subject's measurement (32 bytes, :func:`attestation.measure_domain`).
    measurement: bytes
    #: The subject's owner key hash (32 bytes, :func:`attestation.owner_key_hash`).
    owner_hash: bytes
    #: The subject's security version number (0..MAX_SVN).
    svn: int
    #: The subject's lifecycle state, e.g. ``"running"``.
    state: str
    #: Chosen by the verifier (the target): 8..64 bytes. Freshness.
    nonce: bytes
    #: Bound by the subject: 32..64 bytes, e.g. the hash of its key-exchange public key and
    #: the handshake transcript (:meth:`ipc.Handshake.transcript_reply`).
    report_data: bytes


def report_key(target_attest_cdi: Secret) -> Secret:
    """The target's report MAC key: ``derive_key(target_attest_cdi, "local-report-mac")``.

    Raises :class:`InvalidIdentity` if ``target_attest_cdi`` is not a :class:`Secret`.
    """
    return derive_key(target_attest_cdi, REPORT_KEY_PURPOSE)


# --- field checks -------------------------------------------------------------------------


def _bytes_field(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not bytes:
        raise InvalidIdentity(f"report {name} must be bytes, not {type(value).__name__}")
    if not low <= len(value) <= high:
        size = f"{low}" if low == high else f"{low}..{high}"
        raise InvalidIdentity(f"report {name} must be {size} bytes, got {len(value)}")


def _check_fields(report: Report) -> None:
    """Raise :class:`InvalidIdentity` naming the first field a report may not carry."""
    check_domain_id(report.subject)
    check_domain_id(report.target)
    _bytes_field("measurement", report.measurement, DIGEST_SIZE, DIGEST_SIZE)
    _bytes_field("owner_hash", report.owner_hash, DIGEST_SIZE, DIGEST_SIZE)
    svn = report.svn
    if type(svn) is not int or not 0 <= svn <= MAX_SVN:
        raise InvalidIdentity(f"report svn must be an int in 0..{MAX_SVN}")
    state = report.state
    if type(state) is not str or len(state) > MAX_STATE_LEN or not _STATE_RE.fullmatch(state):
        raise InvalidIdentity(
            f"report state must be 1..{MAX_STATE_LEN} lower-case ASCII letters, digits, "
            "'_' or '-', starting with a letter"
        )
    _bytes_field("nonce", report.nonce, MIN_REPORT_NONCE, MAX_REPORT_NONCE)
    _bytes_field("report_data", report.report_data, MIN_REPORT_DATA, MAX_REPORT_DATA)


# --- encoding -----------------------------------------------------------------------------


def _encode_body(report: Report) -> bytes:
    packer = Packer(use_bin_type=True, strict_types=True, autoreset=True)
    body: bytes = packer.pack(
        [
            REPORT_VERSION,
            report.subject,
            report.target,
            report.measurement,
            report.owner_hash,
            report.svn,
            report.state,
            report.nonce,
            report.report_data,
        ]
    )
    return body


def _tag(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, MAC_LABEL + body, hashlib.sha256).digest()


def _key_bytes(key: object) -> bytes:
    if not isinstance(key, Secret):
        # Never quote the value: a caller may have passed raw key bytes by mistake.
        raise InvalidIdentity(f"the report key must be a Secret, not {type(key).__name__}")
    return key.reveal()


def make_report(key: Secret, report: Report) -> bytes:
    """Encode ``report`` and MAC it with ``key``, the TARGET's :func:`report_key`.

    Raises :class:`InvalidIdentity` if ``key`` is not a :class:`Secret` or a field of
    ``report`` is out of range (the message names the field, never a value).
    """
    raw_key = _key_bytes(key)
    if not isinstance(report, Report):
        raise InvalidIdentity(f"expected a Report, not {type(report).__name__}")
    _check_fields(report)
    body = _encode_body(report)
    return body + _tag(raw_key, body)


# --- checking -----------------------------------------------------------------------------


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError("extension types are not allowed")


def _parse(body: bytes) -> Report:
    """Authenticated body -> Report, or :class:`ReportInvalid("malformed")`."""
    try:
        value = unpackb(body, raw=False, strict_map_key=True, ext_hook=_refuse_ext, timestamp=0)
    except Exception:  # anything msgpack can raise on bad input
        raise ReportInvalid("malformed") from None
    if type(value) is not list or len(value) != _FIELDS:
        raise ReportInvalid("malformed")
    version, *fields = value
    if type(version) is not int or version != REPORT_VERSION:
        raise ReportInvalid("malformed")
    if any(isinstance(f, ExtType | Timestamp) for f in fields):
        raise ReportInvalid("malformed")
    report = Report(*fields)
    try:
        _check_fields(report)
    except InvalidIdentity:
        raise ReportInvalid("malformed") from None
    if _encode_body(report) != body:  # not canonical: one report, one encoding
        raise ReportInvalid("malformed")
    return report


def check_report(key: Secret, data: bytes, *, expected_target: str) -> Report:
    """Check a report with ``key`` (the verifier's own :func:`report_key`) and return it.

    Steps, in order, each failing with :class:`ReportInvalid`: ``data`` is bytes and
    ``expected_target`` a str (``bad-type``); at most :data:`MAX_REPORT_SIZE` bytes
    (``too-large``); the HMAC-SHA256 tag over the body checks, compared with
    :func:`hmac.compare_digest` (``bad-mac``); the body is a canonical report of
    :data:`REPORT_VERSION` with every field in range (``malformed``); its target is
    ``expected_target`` (``wrong-target``).

    Checking does not judge the subject: the caller compares ``measurement``,
    ``owner_hash``, ``svn``, ``state``, ``nonce`` and ``report_data`` with what it expects.
    A ``key`` that is not a :class:`Secret` is a caller bug and raises
    :class:`InvalidIdentity`.
    """
    raw_key = _key_bytes(key)
    value: object = data
    if not isinstance(value, bytes | bytearray | memoryview) or type(expected_target) is not str:
        raise ReportInvalid("bad-type")
    data = bytes(value)
    if len(data) > MAX_REPORT_SIZE:
        raise ReportInvalid("too-large")
    if len(data) <= REPORT_TAG_SIZE:
        raise ReportInvalid("bad-mac")
    body, tag = data[:-REPORT_TAG_SIZE], data[-REPORT_TAG_SIZE:]
    if not hmac.compare_digest(_tag(raw_key, body), tag):
        raise ReportInvalid("bad-mac")
    report = _parse(body)
    if report.target != expected_target:  # public names: no need for constant time
        raise ReportInvalid("wrong-target")
    return report
