"""Universal Entity IDs (RFC 9711, section 4.2.1) and IMEIs (3GPP TS 23.003, RFC 7254).

A UEID is one type byte followed by the identifier:

    ====  ========  ===========================================================
    type  name      identifier
    ====  ========  ===========================================================
    0x01  RAND      16, 24 or 32 random bytes, generated once for the entity
    0x02  IEEE EUI  an EUI-48 (6 bytes) or EUI-64 (8 bytes)
    0x03  IMEI      the 14 digits TAC + SNR, one byte per digit *value*
                    (0x00..0x09, not ASCII), without the Luhn check digit
    ====  ========  ===========================================================

RFC 9711 asks consumers to treat a UEID as opaque bytes; :func:`describe_ueid` is for
people (logs, ``tre`` CLI output), never for decisions.

URNs: RFC 9711 registers the ``ueid`` subtype of the ``urn:dev`` namespace (RFC 9039), so a
UEID is named ``urn:dev:ueid:<lower-case hex of all its bytes>`` (hex as RFC 9039 writes
binary device ids). RFC 7254 names an IMEI ``urn:gsma:imei:<TAC>-<SNR>-<spare>``, the spare
digit being 0 as transmitted (3GPP TS 23.003 section 6.2.1): the Luhn digit is not sent.
"""

from __future__ import annotations

from ._errors import InvalidIdentity

__all__ = [
    "IMEI_URN_PREFIX",
    "UEID_TYPE_EUI",
    "UEID_TYPE_IMEI",
    "UEID_TYPE_RAND",
    "UEID_URN_PREFIX",
    "check_imei",
    "describe_ueid",
    "imei_urn",
    "luhn_check_digit",
    "random_ueid",
    "ueid_from_imei",
    "ueid_urn",
]

UEID_TYPE_RAND = 0x01
UEID_TYPE_EUI = 0x02
UEID_TYPE_IMEI = 0x03
#: The URN prefix of a UEID (RFC 9711 registers the "ueid" DEV URN subtype of RFC 9039).
UEID_URN_PREFIX = "urn:dev:ueid:"
#: The URN prefix of an IMEI (RFC 7254: "urn:gsma:imei:" tac "-" snr "-" spare).
IMEI_URN_PREFIX = "urn:gsma:imei:"

_IMEI_LENGTH = 15
_DIGITS = frozenset("0123456789")
_RAND_SIZES = frozenset({16, 24, 32})
_EUI_SIZES = frozenset({6, 8})
_RANDOM_UEID_ENTROPY = 32


def luhn_check_digit(digits: str) -> str:
    """The Luhn (ISO/IEC 7812 annex B) check digit of a string of ASCII digits.

    From the rightmost digit leftwards, every other digit (starting with the rightmost) is
    doubled and its digits summed; the check digit brings the total to a multiple of 10.
    """
    if not isinstance(digits, str) or not digits or not set(digits) <= _DIGITS:
        raise InvalidIdentity("the Luhn check digit is computed over ASCII digits only")
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def check_imei(imei: str) -> str:
    """Return ``imei`` if it is exactly 15 ASCII digits whose last is the Luhn check digit
    of the first 14 (3GPP TS 23.003 section 6.2.1 and annex B); else :class:`InvalidIdentity`
    with a message that says which rule failed."""
    if not isinstance(imei, str):
        raise InvalidIdentity(f"an IMEI must be a str of 15 digits, not {type(imei).__name__}")
    if not set(imei) <= _DIGITS:
        raise InvalidIdentity(
            "an IMEI must contain only the digits 0-9: no spaces, dashes, letters or "
            f"other characters (got {imei!r})"
        )
    if len(imei) != _IMEI_LENGTH:
        hint = " (16 digits is an IMEISV, which has no check digit)" if len(imei) == 16 else ""
        raise InvalidIdentity(
            f"an IMEI must be exactly 15 digits, 14 plus the Luhn check digit; "
            f"got {len(imei)}{hint}"
        )
    expected = luhn_check_digit(imei[:14])
    if imei[14] != expected:
        raise InvalidIdentity(
            f"IMEI {imei} fails the Luhn check: for the digits {imei[:14]} the last digit "
            f"would be {expected}, not {imei[14]} (look for a mistyped digit)"
        )
    return imei


def ueid_from_imei(imei: str) -> bytes:
    """The IMEI-type UEID (RFC 9711 section 4.2.1, type 0x03): ``0x03`` then the 14 digits
    TAC + SNR as byte values 0x00..0x09, the Luhn digit dropped. 15 bytes."""
    digits = check_imei(imei)[:14]
    return bytes([UEID_TYPE_IMEI, *(int(c) for c in digits)])


def random_ueid(entropy: bytes) -> bytes:
    """A RAND-type UEID (RFC 9711 section 4.2.1, type 0x01): ``0x01`` then 32 bytes of
    entropy the caller draws once for the device (``os.urandom(32)``). 33 bytes."""
    if not isinstance(entropy, bytes) or len(entropy) != _RANDOM_UEID_ENTROPY:
        raise InvalidIdentity(
            f"a random UEID needs exactly {_RANDOM_UEID_ENTROPY} bytes of entropy"
        )
    return bytes([UEID_TYPE_RAND]) + entropy


def describe_ueid(ueid: bytes) -> dict[str, str]:
    """``{"type": "IMEI" | "RAND" | "EUI", "value": ...}`` for a well-formed UEID.

    The value is the 14 IMEI digits (``"35209900176148"``) or the lower-case hex of the
    identifier after the type byte. :class:`InvalidIdentity` for an unknown type byte, a
    length the type does not allow, or an IMEI byte that is not a digit value.
    """
    if not isinstance(ueid, bytes):
        raise InvalidIdentity(f"a UEID must be bytes, not {type(ueid).__name__}")
    if not ueid:
        raise InvalidIdentity("a UEID must not be empty")
    kind, body = ueid[0], ueid[1:]
    if kind == UEID_TYPE_IMEI:
        if len(body) != 14 or any(b > 9 for b in body):
            raise InvalidIdentity("an IMEI UEID is 0x03 followed by 14 digit values 0x00..0x09")
        return {"type": "IMEI", "value": "".join(str(b) for b in body)}
    if kind == UEID_TYPE_RAND:
        if len(body) not in _RAND_SIZES:
            raise InvalidIdentity("a RAND UEID is 0x01 followed by 16, 24 or 32 bytes")
        return {"type": "RAND", "value": body.hex()}
    if kind == UEID_TYPE_EUI:
        if len(body) not in _EUI_SIZES:
            raise InvalidIdentity("an EUI UEID is 0x02 followed by an EUI-48 or EUI-64")
        return {"type": "EUI", "value": body.hex()}
    raise InvalidIdentity(f"unknown UEID type byte 0x{kind:02x} (RFC 9711 defines 0x01-0x03)")


def ueid_urn(ueid: bytes) -> str:
    """``urn:dev:ueid:<hex>`` for a well-formed UEID (RFC 9711, RFC 9039)."""
    describe_ueid(ueid)
    return UEID_URN_PREFIX + ueid.hex()


def imei_urn(imei: str) -> str:
    """``urn:gsma:imei:<8-digit TAC>-<6-digit SNR>-0`` for a valid IMEI (RFC 7254)."""
    digits = check_imei(imei)
    return f"{IMEI_URN_PREFIX}{digits[:8]}-{digits[8:14]}-0"
