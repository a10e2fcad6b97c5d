"""The post-issue ``utility`` domain (domains/utility): its services, and its install on a
provisioned device as a signed package (the only way it reaches one)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import attestation
import tre
from domains.utility import BILL_FORMAT, MAX_PRICE, MAX_READINGS, UtilityDomain
from tests.device_helpers import make_factory, provision_device, write_config
from tre._config import REFERENCE_DOMAINS
from tre._install import install_package
from tre._loader import available_plugins
from tre._measure import code_files
from tre._root import new_root, rotate_state
from tre.testing import load_domain_dir, open_test_tre

FOLDER = Path(__file__).resolve().parents[2] / "domains" / "utility"
SERVICES = ["tariff", "bill", "public_key"]
TARIFF = {"currency": "EUR", "price_per_kwh": 0.25, "standing_charge": 0.1}


def readings(*kwh: float) -> dict[str, Any]:
    return {"readings": [{"kwh": k, "sample": i + 1} for i, k in enumerate(kwh)]}


@pytest.fixture
async def t() -> AsyncIterator[tre.TRE]:
    async with open_test_tre(load_domain_dir(FOLDER), host_calls={"utility": SERVICES}) as handle:
        yield handle


async def remote_code(t: tre.TRE, method: str, body: Any) -> str:
    with pytest.raises(tre.RemoteError) as info:
        await t.call("utility", method, body)
    return info.value.remote_code


# --- the manifest: a post-issue domain -------------------------------------------------------


def test_the_utility_is_not_a_reference_domain_nor_an_entry_point() -> None:
    spec = load_domain_dir(FOLDER)
    assert spec.cls is UtilityDomain
    assert (spec.id, spec.manifest.owner) == ("utility", "Gridco Utility")
    assert {name: set(allow) for name, allow in spec.manifest.services.items()} == {
        name: {"host"} for name in SERVICES
    }
    assert "utility" not in available_plugins()
    assert "utility" not in REFERENCE_DOMAINS


# --- tariff ----------------------------------------------------------------------------------


async def test_tariff_is_checked_numbered_and_read_back(t: tre.TRE) -> None:
    assert await t.call("utility", "tariff") is None
    first = await t.call("utility", "tariff", TARIFF)
    assert first == {**TARIFF, "version": 1}
    second = await t.call("utility", "tariff", {"currency": "GBP", "price_per_kwh": 1})
    assert second == {
        "currency": "GBP",
        "price_per_kwh": 1.0,
        "standing_charge": 0.0,
        "version": 2,
    }
    assert await t.call("utility", "tariff") == second


async def test_tariff_and_signing_key_are_sealed_under_the_owner_policy(t: tre.TRE) -> None:
    await t.call("utility", "tariff", TARIFF)
    rt = t._kernel.domains["utility"]
    assert rt.keys is not None
    infos = {e.info.label: e.info for e in rt.keys.entries.values()}
    assert infos["billing"].public == (await t.call("utility", "public_key"))["public"]
    assert infos["tariff"].kind is tre.KeyKind.RECORD
    assert infos["tariff"].policy is tre.SealPolicy.OWNER
    assert infos["billing"].kind is tre.KeyKind.ED25519
    assert infos["billing"].policy is tre.SealPolicy.OWNER


@pytest.mark.parametrize(
    "body",
    [
        {**TARIFF, "price_per_kwh": -0.25},
        {**TARIFF, "price_per_kwh": 0},
        {**TARIFF, "price_per_kwh": MAX_PRICE + 0.01},
        {**TARIFF, "price_per_kwh": math.nan},
        {**TARIFF, "price_per_kwh": math.inf},
        {**TARIFF, "price_per_kwh": True},
        {**TARIFF, "price_per_kwh": "0.25"},
        {"currency": "EUR"},
        {**TARIFF, "currency": "eur"},
        {**TARIFF, "currency": "EURO"},
        {**TARIFF, "standing_charge": -1},
        {**TARIFF, "vat": 0.2},
        ["EUR", 0.25],
        "free",
    ],
)
async def test_a_bad_tariff_is_refused_and_changes_nothing(t: tre.TRE, body: Any) -> None:
    await t.call("utility", "tariff", TARIFF)
    assert await remote_code(t, "tariff", body) == "BAD_TARIFF"
    assert await t.call("utility", "tariff") == {**TARIFF, "version": 1}


# --- bill ------------------------------------------------------------------------------------


async def test_a_bill_is_a_statement_signed_with_the_published_key(t: tre.TRE) -> None:
    await t.call("utility", "tariff", TARIFF)
    before = time.time()
    bill = await t.call("utility", "bill", readings(10.0, 10.5, 12.0))
    public = (await t.call("utility", "public_key"))["public"]
    assert tre.verify_ed25519(public, bill["statement"], bill["signature"])
    statement = msgpack.unpackb(bill["statement"], raw=False)
    issued = statement.pop("issued")
    assert before <= issued <= time.time()
    assert statement == {
        "format": BILL_FORMAT,
        "readings": 3,
        "first_sample": 1,
        "last_sample": 3,
        "start_kwh": 10.0,
        "end_kwh": 12.0,
        "kwh": 2.0,
        "tariff": {**TARIFF, "version": 1},
        "amount": 0.6,  # 2 kWh at 0.25 plus 0.1
        "currency": "EUR",
    }
    altered = msgpack.packb({**statement, "issued": issued, "amount": 0.0}, use_bin_type=True)
    assert not tre.verify_ed25519(public, altered, bill["signature"])


async def test_no_bill_without_a_tariff(t: tre.TRE) -> None:
    assert await remote_code(t, "bill", readings(1.0, 2.0)) == "NO_TARIFF"


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"readings": []},
        readings(1.0),  # one reading is no period
        readings(*[float(i) for i in range(MAX_READINGS + 1)]),
        readings(2.0, 1.0),  # a meter register never goes down
        readings(-1.0, 1.0),
        readings(1.0, math.nan),
        {"readings": [{"kwh": 1.0}, {"kwh": "2"}]},
        {"readings": [{"kwh": 1.0}, {"kwh": True}]},
        {"readings": [{"kwh": 1.0}, 2.0]},
    ],
)
async def test_bad_readings_are_refused(t: tre.TRE, body: Any) -> None:
    await t.call("utility", "tariff", TARIFF)
    assert await remote_code(t, "bill", body) == "BAD_READINGS"


async def test_a_bill_for_the_meters_own_history(autojump_clock: trio.abc.Clock) -> None:
    """The host passes ``meter.history`` on as is."""
    async with open_test_tre(
        load_domain_dir(FOLDER),
        enable=["oem", "meter"],
        host_calls={"utility": SERVICES, "meter": ["history"]},
        settings={"meter": {"interval": 0.1}},
    ) as t:
        await trio.sleep(0.55)
        history = await t.call("meter", "history")
        got = history["readings"]
        assert len(got) >= 2
        await t.call("utility", "tariff", TARIFF)
        bill = await t.call("utility", "bill", history)
        public = (await t.call("utility", "public_key"))["public"]
        assert tre.verify_ed25519(public, bill["statement"], bill["signature"])
        statement = msgpack.unpackb(bill["statement"], raw=False)
        assert statement["readings"] == len(got)
        assert (statement["first_sample"], statement["last_sample"]) == (
            got[0]["sample"],
            got[-1]["sample"],
        )
        assert statement["kwh"] == round(got[-1]["kwh"] - got[0]["kwh"], 4)


# --- on a device: installed as a signed package ----------------------------------------------


def _package_files() -> dict[str, bytes]:
    return {rel: path.read_bytes() for rel, path in code_files(FOLDER)}


async def test_installed_from_its_package_it_keeps_tariff_and_key_across_a_reboot(
    tmp_path: Path,
) -> None:
    factory = make_factory(tmp_path / "factory")
    grants = '[[host.calls]]\ndomain = "utility"\nmethods = ["tariff", "bill", "public_key"]\n'
    config = write_config(tmp_path / "config", enable=("oem",), holder=False, extra=grants)
    state = tmp_path / "state"
    provision_device(state, factory, config=config)
    owner = Ed25519PrivateKey.generate()
    root = new_root(factory, add_owners={"utility": owner.public_key().public_bytes_raw()})
    rotate_state(state, root.read_bytes(), int(time.time()))
    files = _package_files()
    assert set(files) == {"__init__.py", "domain.toml"}
    envelope = attestation.make_package(
        target="domain:utility",
        counter=1,
        expires=int(time.time()) + 3600,
        files=files,
        signers=[owner],
    )
    result = install_package(state, envelope, files, domain="utility")
    assert (result["action"], result["counter"], result["files"]) == ("installed", 1, 2)

    with trio.fail_after(30):
        async with tre.open_tre(state=state, lifecycle_poll=3600) as t:
            assert t.domain("utility").owner == "Gridco Utility"
            # loaded from the installed folder, not from the importable domains.utility
            module = sys.modules[t._kernel.domains["utility"].spec.cls.__module__]
            assert Path(module.__file__ or "").is_relative_to(state)
            await t.call("utility", "tariff", TARIFF)
            public = (await t.call("utility", "public_key"))["public"]
    with trio.fail_after(30):
        async with tre.open_tre(state=state, lifecycle_poll=3600) as t:
            assert await t.call("utility", "tariff") == {**TARIFF, "version": 1}
            assert (await t.call("utility", "public_key"))["public"] == public
            bill = await t.call("utility", "bill", readings(1.0, 3.0))
            assert tre.verify_ed25519(public, bill["statement"], bill["signature"])
