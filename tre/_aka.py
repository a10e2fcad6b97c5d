"""UMTS AKA, card side (TS 33.102 clause 6.3.3), over MILENAGE. Pure: no I/O, no state.

The caller (the mno domain, holding the MID's K and OPc in its keystore) passes in the
highest SQN accepted so far and, on :class:`Success`, durably persists ``Success.sqn`` as the
new highest **before** releasing RES, CK and IK. Nothing here stores anything.

Steps, in this order:

1. AUTN = (SQN xor AK) || AMF || MAC-A. AK = f5(K, RAND) unconceals SQN.
2. XMAC-A = f1(K, SQN, RAND, AMF) is compared with MAC-A in constant time
   (:func:`hmac.compare_digest`). A mismatch raises :class:`MacFailure`: the network is not
   authenticated, so no SQN check is made and no AUTS is produced (TS 33.102: "user
   authentication reject" with cause MAC failure).
3. If ``amf_check`` is given it sees the (now authenticated) AMF; returning False raises
   :class:`AmfRejected` (e.g. a separation-bit policy, TS 33.401 clause 6.1.1). It runs
   before the SQN check, so a refused AMF never triggers resynchronisation.
4. SQN freshness. **Simplification versus TS 33.102 Annex C**: the USIM verification of
   Annex C.2 keeps an array of the last accepted SEQ values indexed by IND (the low bits of
   SQN), so vectors used out of order still pass, and bounds how far ahead SQN may jump
   (the limit Δ, and optionally an age limit L). This model keeps one counter: an SQN is
   fresh iff it is strictly greater than the highest SQN accepted so far (no IND array, no
   Δ, no L). Consequences: vectors the network delivers out of order are refused (they
   cause a resynchronisation: safe, only slower); a MAC-valid SQN arbitrarily far ahead is
   accepted; SQN does not wrap (2**48 - 1 is the last usable value).
5. Stale SQN: answer AUTS = (SQN_MS xor AK*) || MAC-S with SQN_MS = the highest accepted
   SQN, AK* = f5*(K, RAND) and MAC-S = f1*(K, SQN_MS, RAND, AMF) where AMF is the dummy
   value 0x0000 (TS 33.102 clause 6.3.3). The stored highest SQN is unchanged.
6. Fresh SQN: answer RES = f2, CK = f3, IK = f4 and the SQN to persist.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from ._milenage import (
    AK_LEN,
    AMF_LEN,
    MAC_LEN,
    RAND_LEN,
    SQN_LEN,
    Milenage,
)

__all__ = [
    "AUTN_LEN",
    "AUTS_LEN",
    "RESYNC_AMF",
    "SQN_MAX",
    "AkaError",
    "AmfRejected",
    "MacFailure",
    "Result",
    "Resync",
    "Success",
    "authenticate",
    "authenticate_with",
    "make_auts",
]

AUTN_LEN = SQN_LEN + AMF_LEN + MAC_LEN  # 16
AUTS_LEN = SQN_LEN + MAC_LEN  # 14
RESYNC_AMF = bytes(AMF_LEN)  # the dummy AMF 0x0000 that f1* takes for MAC-S
SQN_MAX = (1 << (8 * SQN_LEN)) - 1


class AkaError(Exception):
    """Base class for an authentication the card refuses outright."""


class MacFailure(AkaError):
    """MAC-A in AUTN does not match XMAC-A: the network (or RAND/AUTN) is not genuine."""

    def __init__(self) -> None:
        super().__init__("AUTN MAC verification failed")


class AmfRejected(AkaError):
    """The MAC was valid, but the caller's ``amf_check`` refused the AMF."""

    def __init__(self, amf: bytes) -> None:
        super().__init__(f"AMF {amf.hex()} rejected")
        self.amf = amf


@dataclass(frozen=True, slots=True)
class Success:
    """Authentication succeeded. ``sqn`` is the new highest accepted SQN: persist it."""

    res: bytes
    ck: bytes
    ik: bytes
    sqn: int

    def __repr__(self) -> str:  # CK and IK are session keys: keep them out of logs
        return f"Success(sqn={self.sqn}, <keys redacted>)"


@dataclass(frozen=True, slots=True)
class Resync:
    """The SQN was not fresh: send ``auts`` (14 bytes) in a synchronisation failure."""

    auts: bytes


Result: TypeAlias = Success | Resync


def _check_bytes(name: str, value: bytes, size: int) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")


def _check_sqn(name: str, sqn: int) -> None:
    if isinstance(sqn, bool) or not isinstance(sqn, int):
        raise TypeError(f"{name} must be an int")
    if not 0 <= sqn <= SQN_MAX:
        raise ValueError(f"{name} must be in 0..2**48-1")


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def make_auts(m: Milenage, rand: bytes, sqn_ms: int) -> bytes:
    """AUTS = (SQN_MS xor AK*) || MAC-S, MAC-S = f1*(K, SQN_MS, RAND, AMF=0x0000)."""
    _check_sqn("SQN_MS", sqn_ms)
    sqn_bytes = sqn_ms.to_bytes(SQN_LEN, "big")
    mac_s = m.f1_star(rand, sqn_bytes, RESYNC_AMF)
    return _xor(sqn_bytes, m.f5_star(rand)) + mac_s


def authenticate(
    k: bytes,
    opc: bytes,
    rand: bytes,
    autn: bytes,
    highest_sqn: int,
    *,
    amf_check: Callable[[bytes], bool] | None = None,
) -> Result:
    """Run the USIM side of UMTS AKA for one (RAND, AUTN) challenge.

    Returns :class:`Success` (RES, CK, IK and the SQN to persist as the new highest) or
    :class:`Resync` (AUTS) when the SQN is not above ``highest_sqn``. Raises
    :class:`MacFailure` when MAC-A is wrong and :class:`AmfRejected` when ``amf_check``
    refuses the AMF; :class:`ValueError`/:class:`TypeError` for malformed inputs.
    """
    return authenticate_with(Milenage(k, opc), rand, autn, highest_sqn, amf_check=amf_check)


def authenticate_with(
    m: Milenage,
    rand: bytes,
    autn: bytes,
    highest_sqn: int,
    *,
    amf_check: Callable[[bytes], bool] | None = None,
) -> Result:
    """:func:`authenticate` with a :class:`Milenage` already keyed (the keystore holds one
    per MILENAGE key, so K and OPc are not handed around for each challenge)."""
    _check_bytes("RAND", rand, RAND_LEN)
    _check_bytes("AUTN", autn, AUTN_LEN)
    _check_sqn("highest_sqn", highest_sqn)
    rand, autn = bytes(rand), bytes(autn)

    v = m.f2345(rand)
    concealed, amf, mac_a = autn[:SQN_LEN], autn[SQN_LEN:-MAC_LEN], autn[-MAC_LEN:]
    sqn_bytes = _xor(concealed, v.ak[:AK_LEN])
    if not hmac.compare_digest(m.f1(rand, sqn_bytes, amf), mac_a):
        raise MacFailure()

    if amf_check is not None and not amf_check(amf):
        raise AmfRejected(amf)

    sqn = int.from_bytes(sqn_bytes, "big")
    if sqn <= highest_sqn:
        return Resync(auts=make_auts(m, rand, highest_sqn))
    return Success(res=v.res, ck=v.ck, ik=v.ik, sqn=sqn)
