"""The energy supplier's domain: the post-issue example.

Unlike the reference domains, ``utility`` is not registered as an entry point and is
not provisioned at the factory: it reaches a device only as a package signed by its
owner (Gridco Utility), after the device's root delegates ``utility`` to that owner's key
(``tre root new --owner utility=KEY.pub``, ``tre root rotate``, ``tre package build|sign``,
``tre install``; ``tre demo`` does all of it). Installed, it is loaded from its own folder
only, so it imports nothing but ``tre`` and libraries.

What it does:

- ``tariff``: the host relays the tariff (``{"currency": "EUR", "price_per_kwh": 0.25,
  "standing_charge": 0.1}``). It is checked (bounds below; a bad one is refused with the
  ``BAD_TARIFF`` :class:`tre.ServiceError`), numbered, and kept as a keystore record
  sealed under the ``OWNER`` policy: it survives restarts, reboots and updates of this
  domain by the same owner. With no body, the current tariff (or None) is returned.
- ``bill``: takes meter readings (``{"readings": [{"kwh": ..., "sample": ...}, ...]}``:
  exactly what ``meter.history`` answers, which the host passes on as is; ``kwh`` is the
  meter's register, so it never goes down) and returns ``{"statement": bytes,
  "signature": bytes}``: the statement is msgpack (format ``gridco-bill/1``: readings,
  consumption, tariff, amount, time of issue) and the signature an Ed25519 signature over
  exactly those bytes by the ``billing`` key of this domain's keystore (made on first
  start, never leaving the keystore). A verifier checks the signature, then decodes.
- ``public_key``: ``{"public": <32 raw bytes>}``, the key that checks statements.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

import msgpack

import tre

__all__ = [
    "BILLING_KEY",
    "BILL_FORMAT",
    "MAX_PRICE",
    "MAX_READINGS",
    "MAX_STANDING",
    "TARIFF_RECORD",
    "UtilityDomain",
]

#: The keystore label of the Ed25519 key that signs statements.
BILLING_KEY = "billing"
#: The keystore label of the record holding the tariff (msgpack).
TARIFF_RECORD = "tariff"
#: The ``format`` field of every statement.
BILL_FORMAT = "gridco-bill/1"
#: Bounds of a tariff: price per kWh (exclusive of 0) and standing charge per statement.
MAX_PRICE = 10.0
MAX_STANDING = 100.0
#: The most readings one statement covers.
MAX_READINGS = 1024

_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_TARIFF_KEYS = frozenset({"currency", "price_per_kwh", "standing_charge"})


def _finite(value: object) -> float | None:
    """``value`` as a float if it is a finite int or float (a bool is not), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _number(value: object, what: str, low: float, high: float, *, low_open: bool) -> float:
    number = _finite(value)
    if number is None:
        raise tre.ServiceError("BAD_TARIFF", f"{what} must be a number")
    if number > high or number < low or (low_open and number == low):
        bound = f"above {low:g}" if low_open else f"at least {low:g}"
        raise tre.ServiceError("BAD_TARIFF", f"{what} must be {bound} and at most {high:g}")
    return number


def _check_tariff(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - _TARIFF_KEYS)
    if unknown:
        raise tre.ServiceError("BAD_TARIFF", f"unknown tariff field {unknown[0]!r}")
    currency = body.get("currency")
    if not isinstance(currency, str) or not _CURRENCY_RE.fullmatch(currency):
        raise tre.ServiceError("BAD_TARIFF", "currency must be three upper-case letters")
    price = _number(body.get("price_per_kwh"), "price_per_kwh", 0.0, MAX_PRICE, low_open=True)
    standing = _number(
        body.get("standing_charge", 0.0), "standing_charge", 0.0, MAX_STANDING, low_open=False
    )
    return {"currency": currency, "price_per_kwh": price, "standing_charge": standing}


def _registers(body: Any) -> list[tuple[float, int | None]]:
    """(kWh register, sample number or None) of each reading, checked."""
    readings = body.get("readings") if isinstance(body, dict) else None
    if not isinstance(readings, list) or not 2 <= len(readings) <= MAX_READINGS:
        raise tre.ServiceError(
            "BAD_READINGS", f"expected {{'readings': [...]}} with 2 to {MAX_READINGS} readings"
        )
    out: list[tuple[float, int | None]] = []
    for i, reading in enumerate(readings):
        if not isinstance(reading, dict):
            raise tre.ServiceError("BAD_READINGS", f"reading {i}: expected a table")
        kwh = _finite(reading.get("kwh"))
        if kwh is None or kwh < 0:
            raise tre.ServiceError("BAD_READINGS", f"reading {i}: kwh must be a number >= 0")
        if out and kwh < out[-1][0]:
            raise tre.ServiceError("BAD_READINGS", f"reading {i}: the register went backwards")
        sample = reading.get("sample")
        out.append((kwh, sample if type(sample) is int else None))
    return out


class UtilityDomain(tre.Domain):
    """Keeps a tariff and signs billing statements (see the module docstring)."""

    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        self._public = b""

    async def setup(self) -> None:
        keystore = self.ctx.keystore
        if BILLING_KEY not in {k.label for k in keystore.list()}:
            await keystore.generate(BILLING_KEY, tre.KeyKind.ED25519, policy=tre.SealPolicy.OWNER)
        self._public = keystore.public_key(BILLING_KEY)

    def _tariff(self) -> dict[str, Any] | None:
        """The current tariff, None if none was set; TARIFF_UNAVAILABLE if its record does
        not open (altered or put back: the keystore refuses it)."""
        try:
            data = self.ctx.keystore.record(TARIFF_RECORD)
        except tre.NoSuchKey:
            return None
        except tre.KeystoreError as exc:
            raise tre.ServiceError("TARIFF_UNAVAILABLE", f"the tariff record: {exc.code}") from None
        tariff: dict[str, Any] = msgpack.unpackb(data, raw=False)
        return tariff

    @tre.service
    async def tariff(self, caller: str, body: Any) -> dict[str, Any] | None:
        if body is None:
            return self._tariff()
        if not isinstance(body, dict):
            raise tre.ServiceError("BAD_TARIFF", "expected a table of tariff fields or nothing")
        tariff = _check_tariff(body)
        try:
            current = self._tariff()
        except tre.ServiceError:  # an unreadable tariff is replaced by the new one
            current = None
        tariff["version"] = 1 if current is None else int(current["version"]) + 1
        data = msgpack.packb(tariff, use_bin_type=True)
        await self.ctx.keystore.put_record(TARIFF_RECORD, data, policy=tre.SealPolicy.OWNER)
        return tariff

    @tre.service
    async def bill(self, caller: str, body: Any) -> dict[str, bytes]:
        tariff = self._tariff()
        if tariff is None:
            raise tre.ServiceError("NO_TARIFF", "no tariff is set: set one with utility.tariff")
        registers = _registers(body)
        (start, first), (end, last) = registers[0], registers[-1]
        kwh = round(end - start, 4)
        amount = round(kwh * tariff["price_per_kwh"] + tariff["standing_charge"], 4)
        if not (math.isfinite(kwh) and math.isfinite(amount)):
            raise tre.ServiceError("BAD_READINGS", "the consumption is out of range")
        statement = {
            "format": BILL_FORMAT,
            "readings": len(registers),
            "first_sample": first,
            "last_sample": last,
            "start_kwh": start,
            "end_kwh": end,
            "kwh": kwh,
            "tariff": tariff,
            "amount": amount,
            "currency": tariff["currency"],
            "issued": time.time(),
        }
        signed: bytes = msgpack.packb(statement, use_bin_type=True)
        return {"statement": signed, "signature": self.ctx.keystore.sign(BILLING_KEY, signed)}

    @tre.service
    async def public_key(self, caller: str, body: Any) -> dict[str, bytes]:
        return {"public": self._public}
