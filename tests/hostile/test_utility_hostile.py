"""Hostile cases found in review: the utility domain never signs a statement whose amount
is not a finite number, and an unreadable tariff record is a typed refusal that a new
tariff repairs."""

from __future__ import annotations

import math
from pathlib import Path

import msgpack

import tre
from domains.utility import UtilityDomain
from tre.testing import open_test_tre, spec

UTILITY_DIR = Path(__file__).resolve().parents[2] / "domains" / "utility"


async def test_a_bill_never_signs_a_non_finite_amount(autojump_clock) -> None:
    """domains/utility/__init__.py:157-158: each reading is checked finite, but not the
    consumption times the price: readings 0 and 1.7e308 kWh (finite, non-decreasing) at
    a price of 2.0 make ``amount`` = inf, and the billing key signs a statement with
    ``"amount": inf`` (likewise ``kwh`` may be any magnitude). Such a request should be
    BAD_READINGS, never a signed bill."""
    async with open_test_tre(
        spec(UtilityDomain, services={"tariff": ["host"], "bill": ["host"], "public_key": []}),
        host_calls={"utilitydomain": ["tariff", "bill"]},
    ) as t:
        await t.call("utilitydomain", "tariff", {"currency": "EUR", "price_per_kwh": 2.0})
        body = {"readings": [{"kwh": 0.0, "sample": 1}, {"kwh": 1.7e308, "sample": 2}]}
        try:
            out = await t.call("utilitydomain", "bill", body)
        except tre.RemoteError:  # a typed refusal is the fix
            return
        statement = msgpack.unpackb(out["statement"], raw=False)
        assert math.isfinite(statement["amount"]), f"signed amount {statement['amount']}"


async def test_an_unavailable_tariff_record_is_a_typed_refusal(tmp_path) -> None:
    """domains/utility/__init__.py:129-135: ``_tariff`` catches only NoSuchKey, but
    ``ks.record`` raises KeyUnavailable when the tariff row was altered (or put back from an
    older copy) -- the keystore's documented answer for such a row. It escapes ``bill`` and
    ``tariff`` alike: each call is a fault of utility (ABORTED, restarts, then stopped),
    and since ``tariff`` reads the old record before writing, a new tariff cannot repair
    it."""
    import sqlite3

    import trio

    from tre._device import DB_FILE
    from tre._factory import factory_init
    from tre._provision import provision

    factory = tmp_path / "factory"
    factory_init(factory, domains=("utility",))
    state = tmp_path / "state"
    folder = UTILITY_DIR
    provision(
        state,
        factory,
        config=tre.TREConfig(
            name="utility-review",
            paths=(folder,),
            host=tre.HostPolicy(calls={"utility": frozenset({"tariff", "bill"})}),
        ),
    )
    with trio.fail_after(60):
        async with tre.open_tre(state=state) as t:
            await t.call("utility", "tariff", {"currency": "EUR", "price_per_kwh": 0.25})
        with sqlite3.connect(state / DB_FILE) as conn:  # one flipped bit in the sealed row
            (sealed,) = conn.execute(
                "SELECT sealed FROM keys WHERE domain = 'utility' AND label = 'tariff'"
            ).fetchone()
            flipped = bytes([sealed[0] ^ 1]) + bytes(sealed[1:])
            conn.execute(
                "UPDATE keys SET sealed = ? WHERE domain = 'utility' AND label = 'tariff'",
                (flipped,),
            )
        async with tre.open_tre(state=state) as t:
            body = {"readings": [{"kwh": 1.0}, {"kwh": 2.0}]}
            for call in (("bill", body), ("tariff", {"currency": "EUR", "price_per_kwh": 0.3})):
                try:
                    await t.call("utility", *call)
                except tre.RemoteError:
                    continue  # typed: fine
                except tre.Aborted:
                    raise AssertionError(f"utility.{call[0]} faulted the domain") from None
