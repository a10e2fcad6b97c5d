"""UEIDs (RFC 9711 section 4.2.1), IMEIs (3GPP TS 23.003) and their URNs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import attestation
from attestation import InvalidIdentity

# 490154203237518: the IMEI example of 3GPP/Wikipedia; 352099001761481 (RFC 7254's TAC/SNR
# example with its Luhn digit).
VALID = ["490154203237518", "352099001761481", "000000000000000", "999999999999994"]


@pytest.mark.parametrize("imei", VALID)
def test_valid_imeis(imei: str) -> None:
    assert attestation.check_imei(imei) == imei


@pytest.mark.parametrize(
    ("imei", "message"),
    [
        ("49015420323751", "exactly 15 digits"),  # 14: the check digit is missing
        ("4901542032375180", "IMEISV"),  # 16
        ("", "exactly 15 digits"),
        ("49015420323751A", "only the digits"),  # a letter
        ("4901542032375 8", "only the digits"),  # a space
        (" 490154203237518", "only the digits"),
        ("490154203237518\n", "only the digits"),
        ("49-015420-323751-8", "only the digits"),
        ("४९०१५४२०३२३७५१८", "only the digits"),  # non-ASCII digits
        ("490154203237517", "Luhn"),  # wrong check digit
        ("940154203237518", "Luhn"),  # swapped digits
    ],
)
def test_invalid_imeis(imei: str, message: str) -> None:
    with pytest.raises(InvalidIdentity, match=message) as info:
        attestation.check_imei(imei)
    assert info.value.code == "INVALID_IDENTITY"


def test_wrong_check_digit_message_says_what_to_fix() -> None:
    with pytest.raises(InvalidIdentity) as info:
        attestation.check_imei("490154203237517")
    assert "would be 8, not 7" in info.value.message


@pytest.mark.parametrize("imei", [490154203237518, b"490154203237518", None])
def test_imei_must_be_a_str(imei: Any) -> None:
    with pytest.raises(InvalidIdentity, match="str"):
        attestation.check_imei(imei)


def test_luhn_known_values() -> None:
    assert attestation.luhn_check_digit("49015420323751") == "8"
    assert attestation.luhn_check_digit("35209900176148") == "1"
    assert attestation.luhn_check_digit("7992739871") == "3"  # the classic ISO/IEC 7812 example
    with pytest.raises(InvalidIdentity):
        attestation.luhn_check_digit("12a")


@given(st.text(alphabet="0123456789", min_size=14, max_size=14), st.integers(1, 9))
def test_exactly_one_check_digit_is_accepted(body: str, delta: int) -> None:
    good = body + attestation.luhn_check_digit(body)
    assert attestation.check_imei(good) == good
    bad = body + str((int(good[-1]) + delta) % 10)
    with pytest.raises(InvalidIdentity, match="Luhn"):
        attestation.check_imei(bad)


def test_ueid_from_imei_layout() -> None:
    ueid = attestation.ueid_from_imei("352099001761481")
    assert ueid == bytes([0x03, 3, 5, 2, 0, 9, 9, 0, 0, 1, 7, 6, 1, 4, 8])
    assert len(ueid) == 15
    assert all(b <= 9 for b in ueid[1:])  # digit values, not ASCII
    assert attestation.describe_ueid(ueid) == {"type": "IMEI", "value": "35209900176148"}


def test_ueid_from_imei_checks_the_imei() -> None:
    with pytest.raises(InvalidIdentity, match="Luhn"):
        attestation.ueid_from_imei("352099001761482")


@given(st.text(alphabet="0123456789", min_size=14, max_size=14))
def test_imei_ueid_round_trip(body: str) -> None:
    imei = body + attestation.luhn_check_digit(body)
    described = attestation.describe_ueid(attestation.ueid_from_imei(imei))
    assert described == {"type": "IMEI", "value": body}


def test_random_ueid_layout() -> None:
    entropy = bytes(range(32))
    ueid = attestation.random_ueid(entropy)
    assert ueid == b"\x01" + entropy and len(ueid) == 33
    assert attestation.describe_ueid(ueid) == {"type": "RAND", "value": entropy.hex()}


@pytest.mark.parametrize("entropy", [b"", bytes(16), bytes(31), bytes(33), "x" * 32, None])
def test_random_ueid_needs_32_bytes(entropy: Any) -> None:
    with pytest.raises(InvalidIdentity, match="32 bytes"):
        attestation.random_ueid(entropy)


@pytest.mark.parametrize(
    ("ueid", "expected"),
    [
        (b"\x01" + bytes(16), {"type": "RAND", "value": "00" * 16}),
        (b"\x01" + bytes(24), {"type": "RAND", "value": "00" * 24}),
        (b"\x02" + bytes.fromhex("acde48234567"), {"type": "EUI", "value": "acde48234567"}),
        (b"\x02" + bytes(8), {"type": "EUI", "value": "00" * 8}),
    ],
)
def test_describe_other_rfc9711_forms(ueid: bytes, expected: dict[str, str]) -> None:
    assert attestation.describe_ueid(ueid) == expected


@pytest.mark.parametrize(
    "ueid",
    [
        b"",
        b"\x00" + bytes(32),  # unknown type
        b"\x04" + bytes(32),
        b"\x01" + bytes(15),  # RAND too short
        b"\x01" + bytes(33),
        b"\x02" + bytes(7),  # EUI neither 48 nor 64 bits
        b"\x03" + bytes(13),  # IMEI 13 digits
        b"\x03" + bytes(15),  # IMEI with a check digit
        b"\x03" + b"35209900176148",  # ASCII digits, not values
        bytes([3, 3, 5, 2, 0, 9, 9, 0, 0, 1, 7, 6, 1, 4, 10]),  # not a digit value
        "0301",
        None,
    ],
)
def test_describe_refuses_malformed_ueids(ueid: Any) -> None:
    with pytest.raises(InvalidIdentity):
        attestation.describe_ueid(ueid)


def test_urns() -> None:
    ueid = attestation.ueid_from_imei("352099001761481")
    assert attestation.ueid_urn(ueid) == "urn:dev:ueid:030305020009090000010706010408"
    assert attestation.imei_urn("352099001761481") == "urn:gsma:imei:35209900-176148-0"
    with pytest.raises(InvalidIdentity):
        attestation.ueid_urn(b"\x09")
    with pytest.raises(InvalidIdentity):
        attestation.imei_urn("352099001761482")
