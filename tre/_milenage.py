"""MILENAGE, the 3GPP example algorithm set f1, f1*, f2, f3, f4, f5, f5* (TS 35.206).

Pure: no I/O, no trio, no global state. The block cipher is AES-128 from ``cryptography``
(one ECB block at a time); everything else is the XOR/rotate glue of TS 35.206 clause 4:

    OPc   = E_K(OP) xor OP
    TEMP  = E_K(RAND xor OPc)
    IN1   = SQN || AMF || SQN || AMF
    OUT1  = E_K(TEMP xor rot(IN1 xor OPc, r1) xor c1) xor OPc   -> MAC-A = OUT1[0:8],
                                                                   MAC-S = OUT1[8:16]
    OUTi  = E_K(rot(TEMP xor OPc, ri) xor ci) xor OPc, i = 2..5
            OUT2 -> RES = OUT2[8:16], AK = OUT2[0:6]
            OUT3 -> CK,  OUT4 -> IK,  OUT5 -> AK* = OUT5[0:6]

with the constants TS 35.206 fixes: r1 = 64, r2 = 0, r3 = 32, r4 = 64, r5 = 96 (bit rotations
towards the most significant end) and c1 = 0, c2 = 1, c3 = 2, c4 = 4, c5 = 8 (as 128-bit
integers). Every rotation is a whole number of bytes, so ``rot`` is a byte rotation.

Sizes (bytes): K, OP, OPc, RAND 16; SQN 6; AMF 2; MAC-A/MAC-S/RES 8; CK/IK 16; AK/AK* 6.
A wrong size raises :class:`ValueError`; nothing here truncates or pads silently.

:class:`Milenage` keeps one AES key schedule for a subscriber key, which is what a caller
running many authentications for one MID wants; the module-level functions are one-shot
conveniences over it. Comparisons of secret-derived values belong to the caller and must use
:func:`hmac.compare_digest` (:func:`verify_mac_a` and :func:`verify_mac_s` do).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

__all__ = [
    "AK_LEN",
    "AMF_LEN",
    "CK_LEN",
    "IK_LEN",
    "KEY_LEN",
    "MAC_LEN",
    "RAND_LEN",
    "RES_LEN",
    "SQN_LEN",
    "Milenage",
    "Vector",
    "compute_opc",
    "f1",
    "f1_star",
    "f2",
    "f3",
    "f4",
    "f5",
    "f5_star",
    "verify_mac_a",
    "verify_mac_s",
]

KEY_LEN = 16  # K, OP, OPc
RAND_LEN = 16
SQN_LEN = 6
AMF_LEN = 2
MAC_LEN = 8  # MAC-A (f1) and MAC-S (f1*)
RES_LEN = 8
CK_LEN = 16
IK_LEN = 16
AK_LEN = 6  # AK (f5) and AK* (f5*)

# TS 35.206 clause 4.1: rotation amounts in bits, and the c constants as 128-bit integers.
R1, R2, R3, R4, R5 = 64, 0, 32, 64, 96
C1, C2, C3, C4, C5 = 0, 1, 2, 4, 8


def _check(name: str, value: bytes, size: int) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _rot(x: bytes, bits: int) -> bytes:
    """Cyclic rotation of a 128-bit block by ``bits`` towards the most significant end."""
    n = (bits // 8) % len(x)
    return x[n:] + x[:n]


def _xor_const(x: bytes, c: int) -> bytes:
    return (int.from_bytes(x, "big") ^ c).to_bytes(len(x), "big")


def _aes_encryptor(k: bytes) -> CipherContext:
    # ECB over exactly one 16-byte block per call: this is the raw AES-128 block function
    # E_K that TS 35.206 specifies, not a mode of operation over longer data.
    return Cipher(algorithms.AES128(bytes(k)), modes.ECB()).encryptor()  # noqa: S305


def compute_opc(k: bytes, op: bytes) -> bytes:
    """OPc = E_K(OP) xor OP (TS 35.206 clause 4.1)."""
    _check("K", k, KEY_LEN)
    _check("OP", op, KEY_LEN)
    return _xor(_aes_encryptor(k).update(bytes(op)), bytes(op))


@dataclass(frozen=True, slots=True)
class Vector:
    """f2..f5 outputs for one RAND: RES, CK, IK, AK (what a card derives from RAND alone)."""

    res: bytes
    ck: bytes
    ik: bytes
    ak: bytes

    def __repr__(self) -> str:  # keys stay out of logs and tracebacks
        return "Vector(<redacted>)"


class Milenage:
    """MILENAGE for one subscriber: K and OPc (never OP; derive OPc with :func:`compute_opc`).

    Holds the AES key schedule for K, so repeated calls do not redo it. Instances are not
    meant to be shared between threads (the underlying cipher context is stateful only in
    the trivial ECB sense, but ``cryptography`` does not promise thread safety).
    """

    __slots__ = ("_enc", "_opc")

    def __init__(self, k: bytes, opc: bytes) -> None:
        _check("K", k, KEY_LEN)
        _check("OPc", opc, KEY_LEN)
        self._enc = _aes_encryptor(k)
        self._opc = bytes(opc)

    def __repr__(self) -> str:
        return "Milenage(<redacted>)"

    def _e(self, block: bytes) -> bytes:
        return self._enc.update(block)

    def _temp(self, rand: bytes) -> bytes:
        _check("RAND", rand, RAND_LEN)
        return self._e(_xor(bytes(rand), self._opc))

    def _out1(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        _check("SQN", sqn, SQN_LEN)
        _check("AMF", amf, AMF_LEN)
        temp = self._temp(rand)
        in1 = bytes(sqn) + bytes(amf) + bytes(sqn) + bytes(amf)
        block = _xor(temp, _xor_const(_rot(_xor(in1, self._opc), R1), C1))
        return _xor(self._e(block), self._opc)

    def _out(self, temp: bytes, r: int, c: int) -> bytes:
        block = _xor_const(_rot(_xor(temp, self._opc), r), c)
        return _xor(self._e(block), self._opc)

    def f1(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        """MAC-A, the network authentication code carried in AUTN (8 bytes)."""
        return self._out1(rand, sqn, amf)[:MAC_LEN]

    def f1_star(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        """MAC-S, the resynchronisation code carried in AUTS (8 bytes)."""
        return self._out1(rand, sqn, amf)[MAC_LEN:]

    def f2345(self, rand: bytes) -> Vector:
        """RES (f2), CK (f3), IK (f4) and AK (f5) for ``rand``, sharing one TEMP."""
        temp = self._temp(rand)
        out2 = self._out(temp, R2, C2)
        return Vector(
            res=out2[8:16],
            ck=self._out(temp, R3, C3),
            ik=self._out(temp, R4, C4),
            ak=out2[:AK_LEN],
        )

    def f2(self, rand: bytes) -> bytes:
        return self._out(self._temp(rand), R2, C2)[8:16]

    def f3(self, rand: bytes) -> bytes:
        return self._out(self._temp(rand), R3, C3)

    def f4(self, rand: bytes) -> bytes:
        return self._out(self._temp(rand), R4, C4)

    def f5(self, rand: bytes) -> bytes:
        return self._out(self._temp(rand), R2, C2)[:AK_LEN]

    def f5_star(self, rand: bytes) -> bytes:
        """AK*, which conceals SQN_MS in AUTS (6 bytes)."""
        return self._out(self._temp(rand), R5, C5)[:AK_LEN]


def f1(k: bytes, opc: bytes, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
    return Milenage(k, opc).f1(rand, sqn, amf)


def f1_star(k: bytes, opc: bytes, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
    return Milenage(k, opc).f1_star(rand, sqn, amf)


def f2(k: bytes, opc: bytes, rand: bytes) -> bytes:
    return Milenage(k, opc).f2(rand)


def f3(k: bytes, opc: bytes, rand: bytes) -> bytes:
    return Milenage(k, opc).f3(rand)


def f4(k: bytes, opc: bytes, rand: bytes) -> bytes:
    return Milenage(k, opc).f4(rand)


def f5(k: bytes, opc: bytes, rand: bytes) -> bytes:
    return Milenage(k, opc).f5(rand)


def f5_star(k: bytes, opc: bytes, rand: bytes) -> bytes:
    return Milenage(k, opc).f5_star(rand)


def verify_mac_a(m: Milenage, rand: bytes, sqn: bytes, amf: bytes, mac: bytes) -> bool:
    """Constant-time check of a received MAC-A against XMAC-A = f1(rand, sqn, amf)."""
    _check("MAC", mac, MAC_LEN)
    return hmac.compare_digest(m.f1(rand, sqn, amf), bytes(mac))


def verify_mac_s(m: Milenage, rand: bytes, sqn: bytes, amf: bytes, mac: bytes) -> bool:
    """Constant-time check of a received MAC-S against f1*(rand, sqn, amf)."""
    _check("MAC", mac, MAC_LEN)
    return hmac.compare_digest(m.f1_star(rand, sqn, amf), bytes(mac))
