"""Re-export of :mod:`tre._aka` (the pure code lives in ``tre`` so the keystore can run it
on a held MID key without ``tre`` importing this plug-in package)."""

from __future__ import annotations

from tre._aka import (
    AUTN_LEN,
    AUTS_LEN,
    RESYNC_AMF,
    SQN_MAX,
    AkaError,
    AmfRejected,
    MacFailure,
    Result,
    Resync,
    Success,
    authenticate,
    authenticate_with,
    make_auts,
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
