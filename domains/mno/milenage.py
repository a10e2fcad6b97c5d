"""Re-export of :mod:`tre._milenage` (the pure code lives in ``tre`` so the keystore can run it
on a held MID key without ``tre`` importing this plug-in package)."""

from __future__ import annotations

from tre._milenage import (
    AK_LEN,
    AMF_LEN,
    CK_LEN,
    IK_LEN,
    KEY_LEN,
    MAC_LEN,
    RAND_LEN,
    RES_LEN,
    SQN_LEN,
    Milenage,
    Vector,
    compute_opc,
    f1,
    f1_star,
    f2,
    f3,
    f4,
    f5,
    f5_star,
    verify_mac_a,
    verify_mac_s,
)

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
