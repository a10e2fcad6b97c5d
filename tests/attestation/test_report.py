"""attestation/_report.py: local reports MACed with the target's key (SGX EREPORT style)."""

from __future__ import annotations

import hashlib
import hmac

import attrs
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

import attestation
from attestation import AttestationError, InvalidIdentity, Report, ReportInvalid, Secret
from attestation._report import MAC_LABEL, MAX_REPORT_SIZE, REPORT_INVALID_REASONS

CDI_A = Secret(bytes(range(32)))
CDI_B = Secret(bytes(range(32, 64)))
CDI_C = Secret(bytes(range(64, 96)))
KEY_A = attestation.report_key(CDI_A)
KEY_B = attestation.report_key(CDI_B)
KEY_C = attestation.report_key(CDI_C)

#: A report about B, for A (so MACed with A's key).
REPORT = Report(
    subject="meter",
    target="oem",
    measurement=hashlib.sha256(b"meter code").digest(),
    owner_hash=hashlib.sha256(b"meter owner").digest(),
    svn=7,
    state="active",
    nonce=bytes(range(16)),
    report_data=hashlib.sha256(b"transcript").digest(),
)
#: REPORT made with KEY_A, pinned: a change to the layout, the key or the MAC changes it.
KAT_TAG = "596ef899f250b8c70b9d4915d545c608dab24ee502d5a38e26edff79d1974d12"


def ref_hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 from scratch (one block is enough here)."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def mac(key: Secret, body: bytes) -> bytes:
    """A MAC over any body, as a holder of the key could make it (for malformed reports)."""
    return body + hmac.new(key.reveal(), MAC_LABEL + body, hashlib.sha256).digest()


def wire(report: Report, version: int = 1) -> list[object]:
    return [version, *attrs.astuple(report)]


def invalid(data: object, key: Secret = KEY_A, target: object = "oem") -> str:
    with pytest.raises(ReportInvalid) as info:
        attestation.check_report(key, data, expected_target=target)  # type: ignore[arg-type]
    assert info.value.code == "REPORT_INVALID"
    assert str(info.value) == "the report is invalid"
    return info.value.reason


# --- round trips and known answers --------------------------------------------------------


def test_round_trip() -> None:
    data = attestation.make_report(KEY_A, REPORT)
    assert attestation.check_report(KEY_A, data, expected_target="oem") == REPORT
    mutable = bytearray(data)
    assert attestation.check_report(KEY_A, mutable, expected_target="oem") == REPORT  # type: ignore[arg-type]


def test_known_answer() -> None:
    key = ref_hkdf(bytes(range(32)), b"", b"tre/v1/key/local-report-mac")
    assert KEY_A.reveal() == key
    body = msgpack.packb(wire(REPORT), use_bin_type=True)
    tag = hmac.new(key, b"tre/v1/local-report" + body, hashlib.sha256).digest()
    data = attestation.make_report(KEY_A, REPORT)
    assert data == body + tag
    assert tag.hex() == KAT_TAG


reports = st.builds(
    Report,
    subject=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True),
    target=st.just("oem"),
    measurement=st.binary(min_size=32, max_size=32),
    owner_hash=st.binary(min_size=32, max_size=32),
    svn=st.integers(0, 2**31 - 1),
    state=st.from_regex(r"[a-z][a-z0-9_-]{0,31}", fullmatch=True),
    nonce=st.binary(min_size=8, max_size=64),
    report_data=st.binary(min_size=32, max_size=64),
)


@given(reports)
def test_every_valid_report_round_trips(report: Report) -> None:
    data = attestation.make_report(KEY_A, report)
    assert len(data) <= MAX_REPORT_SIZE
    assert attestation.check_report(KEY_A, data, expected_target="oem") == report


def test_the_largest_report_fits() -> None:
    report = attrs.evolve(
        REPORT,
        subject="s" * 64,
        target="t" * 64,
        svn=2**31 - 1,
        state="x" * 32,
        nonce=bytes(64),
        report_data=bytes(64),
    )
    data = attestation.make_report(KEY_A, report)
    assert len(data) == 405 <= MAX_REPORT_SIZE
    assert attestation.check_report(KEY_A, data, expected_target="t" * 64) == report


def test_the_key_follows_the_target_cdi() -> None:
    assert len({KEY_A.reveal(), KEY_B.reveal(), KEY_C.reveal()}) == 3
    assert attestation.report_key(Secret(bytes(range(32)))) == KEY_A


# --- attacks ------------------------------------------------------------------------------


def test_a_report_for_a_is_useless_to_c() -> None:
    data = attestation.make_report(KEY_A, REPORT)
    assert invalid(data, key=KEY_C) == "bad-mac"
    assert invalid(data, key=KEY_C, target="mno") == "bad-mac"


def test_a_report_checked_for_another_target_fails() -> None:
    # made with A's key but naming another target (a confused or hostile report maker)
    data = attestation.make_report(KEY_A, REPORT)
    assert invalid(data, target="vault") == "wrong-target"
    assert invalid(data, target="") == "wrong-target"


def test_every_flipped_bit_fails() -> None:
    data = attestation.make_report(KEY_A, REPORT)
    for bit in range(len(data) * 8):
        tampered = bytearray(data)
        tampered[bit // 8] ^= 1 << (bit % 8)
        assert invalid(bytes(tampered)) == "bad-mac", bit


def test_every_truncation_fails() -> None:
    data = attestation.make_report(KEY_A, REPORT)
    for end in range(len(data)):
        assert invalid(data[:end]) == "bad-mac", end
    assert invalid(data + b"\x00") == "bad-mac"


def test_oversized_input_is_refused_before_the_mac() -> None:
    assert invalid(bytes(MAX_REPORT_SIZE + 1)) == "too-large"
    assert invalid(mac(KEY_A, bytes(MAX_REPORT_SIZE))) == "too-large"


@given(st.binary(max_size=MAX_REPORT_SIZE + 64))
def test_garbage_is_refused(data: bytes) -> None:
    assert invalid(data) in {"bad-mac", "too-large"}


@given(st.binary(max_size=MAX_REPORT_SIZE))
def test_authenticated_garbage_is_refused(body: bytes) -> None:
    # even the holder of the key cannot make the parser accept a malformed body
    data = mac(KEY_A, body)
    try:
        report = attestation.check_report(KEY_A, data, expected_target="oem")
    except ReportInvalid as exc:
        assert exc.reason in {"malformed", "too-large", "bad-mac", "wrong-target"}
    else:  # only if hypothesis built a canonical report
        assert attestation.make_report(KEY_A, report) == data


def _with(index: int, value: object) -> list[object]:
    fields = wire(REPORT)
    fields[index] = value
    return fields


MALFORMED = {
    "not an array": msgpack.packb({"v": 1}),
    "too few fields": msgpack.packb(wire(REPORT)[:-1], use_bin_type=True),
    "too many fields": msgpack.packb([*wire(REPORT), b""], use_bin_type=True),
    "version 2": msgpack.packb(wire(REPORT, version=2), use_bin_type=True),
    "version true": msgpack.packb(_with(0, True), use_bin_type=True),
    "subject bytes": msgpack.packb(_with(1, b"meter"), use_bin_type=True),
    "subject with slash": msgpack.packb(_with(1, "me/ter"), use_bin_type=True),
    "target empty": msgpack.packb(_with(2, ""), use_bin_type=True),
    "measurement short": msgpack.packb(_with(3, bytes(31)), use_bin_type=True),
    "measurement as str": msgpack.packb(_with(3, "x" * 32), use_bin_type=True),
    "owner long": msgpack.packb(_with(4, bytes(33)), use_bin_type=True),
    "svn negative": msgpack.packb(_with(5, -1), use_bin_type=True),
    "svn too big": msgpack.packb(_with(5, 2**31), use_bin_type=True),
    "svn bool": msgpack.packb(_with(5, True), use_bin_type=True),
    "svn float": msgpack.packb(_with(5, 7.0), use_bin_type=True),
    "state upper": msgpack.packb(_with(6, "Active"), use_bin_type=True),
    "state long": msgpack.packb(_with(6, "a" * 33), use_bin_type=True),
    "nonce short": msgpack.packb(_with(7, bytes(7)), use_bin_type=True),
    "nonce long": msgpack.packb(_with(7, bytes(65)), use_bin_type=True),
    "report_data short": msgpack.packb(_with(8, bytes(31)), use_bin_type=True),
    "report_data nil": msgpack.packb(_with(8, None), use_bin_type=True),
    "extension type": msgpack.packb(_with(8, msgpack.ExtType(1, bytes(32))), use_bin_type=True),
    "trailing bytes": msgpack.packb(wire(REPORT), use_bin_type=True) + b"\xc0",
    # svn 7 as a uint32 (0xce) instead of a positive fixint: valid msgpack, not canonical
    "non-canonical int": msgpack.packb(wire(REPORT), use_bin_type=True).replace(
        b"\x07\xa6active", b"\xce\x00\x00\x00\x07\xa6active"
    ),
    # the bin fields as str8/bin16 instead of bin8
    "non-canonical bin": msgpack.packb(wire(REPORT), use_bin_type=True).replace(
        b"\xc4\x10" + REPORT.nonce, b"\xc5\x00\x10" + REPORT.nonce
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_authenticated_malformed_bodies_are_refused(case: str) -> None:
    body = MALFORMED[case]
    assert body != msgpack.packb(wire(REPORT), use_bin_type=True)
    assert invalid(mac(KEY_A, body)) == "malformed"


@pytest.mark.parametrize("data", ["a string", None, 42, [b"x"]])
def test_non_bytes_are_refused(data: object) -> None:
    assert invalid(data) == "bad-type"


def test_a_non_str_expected_target_is_refused() -> None:
    data = attestation.make_report(KEY_A, REPORT)
    assert invalid(data, target=b"oem") == "bad-type"
    assert invalid(data, target=None) == "bad-type"


def test_every_failure_is_one_opaque_attestation_error() -> None:
    assert issubclass(ReportInvalid, AttestationError)
    assert {"bad-mac", "malformed", "wrong-target", "too-large"} <= REPORT_INVALID_REASONS
    with pytest.raises(ValueError, match="unknown"):
        ReportInvalid("because")


# --- making reports -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"subject": "a/b"}, "domain id"),
        ({"target": ""}, "domain id"),
        ({"measurement": bytes(31)}, "measurement must be 32 bytes"),
        ({"owner_hash": "x" * 32}, "owner_hash must be bytes"),
        ({"svn": -1}, "svn"),
        ({"svn": True}, "svn"),
        ({"state": "Running"}, "state"),
        ({"state": ""}, "state"),
        ({"nonce": bytes(7)}, "nonce must be 8..64 bytes"),
        ({"nonce": bytearray(8)}, "nonce must be bytes"),
        ({"report_data": bytes(65)}, "report_data must be 32..64 bytes"),
    ],
)
def test_make_report_refuses_bad_fields(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidIdentity, match=message):
        attestation.make_report(KEY_A, attrs.evolve(REPORT, **change))  # type: ignore[arg-type]


def test_keys_must_be_secrets_and_never_show() -> None:
    raw = KEY_A.reveal()
    for call in (
        lambda: attestation.make_report(raw, REPORT),  # type: ignore[arg-type]
        lambda: attestation.check_report(raw, b"", expected_target="oem"),  # type: ignore[arg-type]
        lambda: attestation.report_key(raw),  # type: ignore[arg-type]
        lambda: attestation.make_report(KEY_A, "not a report"),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidIdentity) as info:
            call()
        assert raw.hex() not in str(info.value) and repr(raw) not in repr(info.value)


def test_secrets_are_not_in_reprs_or_errors() -> None:
    data = attestation.make_report(KEY_A, REPORT)
    texts = [repr(KEY_A), str(KEY_A), repr(REPORT)]
    cases = ((KEY_C, data, "oem"), (KEY_A, data, "mno"), (KEY_A, data[:-1], "oem"))
    for key, report, target in cases:
        with pytest.raises(ReportInvalid) as info:
            attestation.check_report(key, report, expected_target=target)
        texts += [repr(info.value), str(info.value), repr(info.value.args)]
    blob = "\n".join(texts)
    for secret in (KEY_A, KEY_C, CDI_A, CDI_C):
        assert secret.reveal().hex() not in blob and repr(secret.reveal()) not in blob
    assert repr(KEY_A) == "Secret(<32 bytes>)"
