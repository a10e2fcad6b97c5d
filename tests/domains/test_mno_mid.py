"""MIDs stored and run in the mno domain (issue 6, section 3: lifecycle and execution).

Every MID arrives the only way there is: an HPKE-bound package signed by the mno owner,
through ``mno.install_package`` (tests/mid_helpers.py). That needs owner keys, so each test
runs on a device provisioned from a factory: real clock, bounded with ``trio.fail_after``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

import tre
from domains.mno import MID_LIFECYCLE, MidState, MnoDomain
from tests.domains.test_aka import make_autn, open_auts
from tests.mid_helpers import MidIssuer
from tests.tre.test_keystore import assert_no_secret, domain_keys, stored_secrets
from tre._device import DB_FILE
from tre._factory import factory_init
from tre._provision import provision

VECTORS = json.loads((Path(__file__).parent / "vectors" / "ts35208.json").read_text())["sets"]
SERVICES = frozenset(
    {
        "status",
        "mids",
        "enable",
        "disable",
        "delete",
        "authenticate",
        "mid_key",
        "install_package",
    }
)
IMSI = "001010123456789"
IMSI2 = "001010000000002"


def _h(s: str) -> bytes:
    return bytes.fromhex(s)


SET1 = VECTORS[0]
K, OPC, RAND, AMF = _h(SET1["K"]), _h(SET1["OPc"]), _h(SET1["RAND"]), _h(SET1["AMF"])
SQN = int(SET1["SQN"], 16)


def config() -> tre.TREConfig:
    return tre.TREConfig(
        name="mno-test",
        enable=("oem", "mno"),
        host=tre.HostPolicy(calls={"mno": SERVICES}),
    )


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mno") / "factory"
    factory_init(folder, domains=("oem", "mno"))
    return folder


@pytest.fixture(scope="module")
def issuer(factory: Path) -> MidIssuer:
    return MidIssuer.from_factory(factory)


def provisioned(tmp_path: Path, factory: Path, cfg: tre.TREConfig | None = None) -> Path:
    state = tmp_path / "state"
    provision(state, factory, config=config() if cfg is None else cfg)
    return state


@pytest.fixture
async def t(tmp_path: Path, factory: Path) -> AsyncIterator[tre.TRE]:
    state = provisioned(tmp_path, factory)
    with trio.fail_after(60):
        async with tre.open_tre(state=state) as handle:
            yield handle


async def install(
    t: tre.TRE, issuer: MidIssuer, imsi: str = IMSI, *, sqn: int = 0, enable: bool = True
) -> Any:
    """Set 1's K and OPc for ``imsi``, installed from a package (and enabled)."""
    out = await issuer.install(t, imsi, K, OPC, sqn=sqn, amf=AMF)
    if enable:
        out = await t.call("mno", "enable", {"imsi": imsi})
    return out


async def auth(t: tre.TRE, sqn: int, *, imsi: str = IMSI, rand: bytes = RAND) -> Any:
    autn = make_autn(K, OPC, rand, sqn, AMF)
    return await t.call("mno", "authenticate", {"imsi": imsi, "rand": rand, "autn": autn})


async def error_code(call: Any) -> str:
    with pytest.raises(tre.RemoteError) as caught:
        await call
    return caught.value.remote_code


async def mid(t: tre.TRE, imsi: str = IMSI) -> dict[str, Any]:
    (found,) = [m for m in await t.call("mno", "mids") if m["imsi"] == imsi]
    return found  # type: ignore[no-any-return]


# --- execution -------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=[f"set{v['set']}" for v in VECTORS])
async def test_authenticate_gives_the_ts35208_outputs(
    vector: dict[str, str], t: tre.TRE, issuer: MidIssuer
) -> None:
    k, opc, rand, amf = _h(vector["K"]), _h(vector["OPc"]), _h(vector["RAND"]), _h(vector["AMF"])
    sqn = int(vector["SQN"], 16)
    await issuer.install(t, IMSI, k, opc, amf=amf)
    await t.call("mno", "enable", {"imsi": IMSI})
    autn = make_autn(k, opc, rand, sqn, amf)
    out = await t.call("mno", "authenticate", {"imsi": IMSI, "rand": rand, "autn": autn})
    assert out == {
        "res": _h(vector["f2_RES"]),
        "ck": _h(vector["f3_CK"]),
        "ik": _h(vector["f4_IK"]),
    }
    assert (await mid(t))["sqn"] == sqn


async def test_replayed_autn_gives_a_verifiable_auts(t: tre.TRE, issuer: MidIssuer) -> None:
    await install(t, issuer)
    assert "res" in await auth(t, SQN)
    replay = await auth(t, SQN)
    assert set(replay) == {"auts"}
    assert open_auts(K, OPC, RAND, replay["auts"]) == SQN  # the network resynchronises
    older = await auth(t, SQN - 5)
    assert open_auts(K, OPC, RAND, older["auts"]) == SQN
    assert (await mid(t))["sqn"] == SQN
    assert "res" in await auth(t, SQN + 1)  # going forward works again
    assert (await mid(t))["sqn"] == SQN + 1


async def test_bad_mac_is_mac_failure_and_changes_nothing(t: tre.TRE, issuer: MidIssuer) -> None:
    await install(t, issuer, sqn=7)
    autn = bytearray(make_autn(K, OPC, RAND, SQN, AMF))
    autn[-1] ^= 1
    body = {"imsi": IMSI, "rand": RAND, "autn": bytes(autn)}
    assert await error_code(t.call("mno", "authenticate", body)) == "MAC_FAILURE"
    assert (await mid(t))["sqn"] == 7
    assert "res" in await auth(t, SQN)  # the genuine challenge still works


async def test_malformed_challenges_are_refused(t: tre.TRE, issuer: MidIssuer) -> None:
    await install(t, issuer)
    for body in [
        {"imsi": IMSI, "rand": RAND[:15], "autn": bytes(16)},
        {"imsi": IMSI, "rand": RAND, "autn": "zz"},
        {"imsi": "12ab", "rand": RAND, "autn": bytes(16)},
        "not a map",
    ]:
        assert await error_code(t.call("mno", "authenticate", body)) == "BAD_REQUEST"
    assert t.domain("mno").generation == 1  # refused, not crashed


async def test_concurrent_replays_give_one_success(t: tre.TRE, issuer: MidIssuer) -> None:
    await install(t, issuer)
    results: list[Any] = []

    async def one() -> None:
        results.append(await auth(t, SQN))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)
    assert sorted("res" in r for r in results) == [False] * 4 + [True]


# --- lifecycle -------------------------------------------------------------------------------


def test_lifecycle_table() -> None:
    assert set(MID_LIFECYCLE) == set(MidState)
    assert MID_LIFECYCLE[MidState.DELETED] == frozenset()
    assert MidState.DELETED not in MID_LIFECYCLE[MidState.ENABLED]  # disable first


async def test_lifecycle_moves_and_status(t: tre.TRE, issuer: MidIssuer) -> None:
    installed = await install(t, issuer, enable=False)
    assert installed == {"label": f"mid.{IMSI}", "imsi": IMSI, "state": "installed", "sqn": 0}
    assert await error_code(auth(t, SQN)) == "MID_NOT_ENABLED"
    assert (await t.call("mno", "enable", {"imsi": IMSI}))["state"] == "enabled"
    assert await error_code(t.call("mno", "enable", {"imsi": IMSI})) == "BAD_STATE"
    assert await error_code(t.call("mno", "delete", {"imsi": IMSI})) == "BAD_STATE"
    status = await t.call("mno", "status")
    assert status["enabled_mid"] == IMSI
    assert [m["state"] for m in status["mids"]] == ["enabled"]
    assert (await t.call("mno", "disable", {"imsi": IMSI}))["state"] == "disabled"
    assert await error_code(auth(t, SQN)) == "MID_NOT_ENABLED"
    assert (await t.call("mno", "status"))["enabled_mid"] is None
    assert (await t.call("mno", "enable", {"imsi": IMSI}))["state"] == "enabled"
    assert "res" in await auth(t, SQN)


async def test_a_second_enable_is_refused(t: tre.TRE, issuer: MidIssuer) -> None:
    await install(t, issuer)
    await install(t, issuer, IMSI2, enable=False)
    assert await error_code(t.call("mno", "enable", {"imsi": IMSI2})) == "ENABLED_LIMIT"
    assert (await mid(t, IMSI2))["state"] == "installed"
    await t.call("mno", "disable", {"imsi": IMSI})
    assert (await t.call("mno", "enable", {"imsi": IMSI2}))["state"] == "enabled"


async def test_the_settings_may_allow_more_enabled(
    tmp_path: Path, factory: Path, issuer: MidIssuer
) -> None:
    cfg = tre.TREConfig(
        name="mno-test",
        enable=("oem", "mno"),
        host=tre.HostPolicy(calls={"mno": SERVICES}),
        settings={"mno": {"max_enabled": 2}},
    )
    state = provisioned(tmp_path, factory, cfg)
    with trio.fail_after(60):
        async with tre.open_tre(state=state) as t:
            await install(t, issuer)
            await install(t, issuer, IMSI2)
            assert [m["state"] for m in await t.call("mno", "mids")] == ["enabled", "enabled"]


async def test_delete_crypto_erases(t: tre.TRE, issuer: MidIssuer) -> None:
    await install(t, issuer)
    assert "res" in await auth(t, SQN)
    await t.call("mno", "disable", {"imsi": IMSI})
    assert (await t.call("mno", "delete", {"imsi": IMSI}))["state"] == "deleted"
    assert await error_code(auth(t, SQN + 1)) == "NO_SUCH_MID"
    assert await error_code(t.call("mno", "enable", {"imsi": IMSI})) == "NO_SUCH_MID"
    assert f"mid.{IMSI}" not in stored_secrets(domain_keys(t, "mno"))  # the row is gone
    assert (await mid(t))["state"] == "deleted"
    # the IMSI may be installed again, as a new MID
    again = await install(t, issuer)
    assert (again["state"], again["sqn"]) == ("enabled", 0)
    assert "res" in await auth(t, SQN)


def mid_labels(t: tre.TRE) -> list[str]:
    return sorted(label for label in domain_keys(t, "mno").entries if label.startswith("mid."))


async def test_install_refusals(t: tre.TRE, issuer: MidIssuer) -> None:
    """Owner-signed, device-bound packages that must still be refused: each with a typed
    error, and none leaves a MID or a key behind."""
    await install(t, issuer, enable=False)
    key = await t.call("mno", "mid_key")

    async def refused(package: bytes) -> str:
        return await error_code(t.call("mno", "install_package", {"package": package}))

    # a second package for an installed IMSI (a fresh txid and the next counter)
    assert await refused(issuer.package(key, IMSI, K, OPC)) == "MID_EXISTS"
    # the signed header's IMSI is checked before the package is opened
    assert await refused(issuer.package(key, "1234", K, OPC)) == "BAD_REQUEST"
    assert await refused(issuer.package(key, IMSI2, K, OPC, header={"imsi": "12ab"})) == (
        "BAD_REQUEST"
    )
    # what is sealed inside is checked by the keystore as it opens the package
    bad_contents: list[dict[str, Any]] = [
        {"k": K[:15]},
        {"opc": OPC + b"\x00"},
        {"k": K.hex()},
        {"sqn": -1},
        {"sqn": 1 << 48},
        {"sqn": True},
        {"amf": b"\x00"},
        {"imsi": "1234"},
        {"imsi": "001010000000003"},  # a well-formed IMSI, but not the header's
    ]
    for sealed in bad_contents:
        package = issuer.package(key, IMSI2, K, OPC, sealed=sealed)
        assert await refused(package) == "BAD_PACKAGE", sealed
    assert [m["imsi"] for m in await t.call("mno", "mids")] == [IMSI]
    assert mid_labels(t) == [f"mid.{IMSI}"]  # the mismatched IMSI's key was not kept
    # IMSI2 was never taken: a good package for it installs
    assert (await install(t, issuer, IMSI2, enable=False))["state"] == "installed"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("not a map", "BAD_REQUEST"),
        ({}, "BAD_REQUEST"),
        ({"package": None}, "BAD_REQUEST"),
        ({"package": "c1"}, "BAD_REQUEST"),  # bytes only, not hex
        ({"package": b""}, "BAD_PACKAGE"),
        ({"package": b"\xc1"}, "BAD_PACKAGE"),  # not msgpack
        ({"package": msgpack.packb([1, 2, 3, 4])}, "BAD_PACKAGE"),  # not a map
        ({"package": msgpack.packb({"header": b"", "enc": b"", "ct": b""})}, "BAD_PACKAGE"),
        (
            {"package": msgpack.packb({"header": "h", "enc": b"", "ct": b"", "sig": b""})},
            "BAD_PACKAGE",
        ),
        (
            {"package": msgpack.packb({"header": b"", "enc": b"", "ct": b"", "sig": bytes(64)})},
            "WRONG_ISSUER",
        ),
    ],
)
async def test_malformed_package_bodies_are_refused(t: tre.TRE, body: Any, code: str) -> None:
    assert await error_code(t.call("mno", "install_package", body)) == code
    assert await t.call("mno", "mids") == []
    assert mid_labels(t) == []


async def test_install_plain_is_gone(autojump_clock: trio.abc.Clock) -> None:
    """No service takes K and OPc in the clear: even a host that grants itself the old
    ``install_plain`` finds that mno offers no such service."""
    assert not hasattr(MnoDomain, "install_plain")
    cfg = tre.TREConfig(
        name="mno-test",
        enable=("oem", "mno"),
        host=tre.HostPolicy(calls={"mno": SERVICES | {"install_plain"}}),
    )
    async with tre.open_tre(cfg) as t:
        body = {"imsi": IMSI, "k": K, "opc": OPC, "sqn": 0, "amf": AMF}
        with pytest.raises(tre.NoSuchMethod):
            await t.call("mno", "install_plain", body)
        assert await t.call("mno", "mids") == []


# --- secrets ---------------------------------------------------------------------------------


async def test_k_and_opc_never_leave(
    t: tre.TRE, issuer: MidIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    package = issuer.package(await t.call("mno", "mid_key"), IMSI, K, OPC, amf=AMF)
    assert_no_secret(package.hex(), [K, OPC], "a MID package")  # HPKE-sealed on the way in
    for value in (K, OPC):
        assert value not in package
    outputs = [await t.call("mno", "install_package", {"package": package})]
    outputs += [await t.call("mno", "enable", {"imsi": IMSI})]
    outputs += [await auth(t, SQN), await auth(t, SQN), await t.call("mno", "status")]
    outputs += [await t.call("mno", "mids")]
    keys = domain_keys(t, "mno")
    outputs += [repr(keys), repr(list(keys.entries.values())), repr(keys.entries[f"mid.{IMSI}"])]
    text = repr(outputs) + caplog.text
    assert_no_secret(text, [K, OPC, K + OPC], "an mno output")
    for value in (K, OPC):
        assert value not in repr(outputs).encode()
    assert stored_secrets(keys)[f"mid.{IMSI}"] == K + OPC  # it is there, sealed


# --- durability ------------------------------------------------------------------------------


async def test_sqn_and_state_survive_a_reboot(
    tmp_path: Path, factory: Path, issuer: MidIssuer
) -> None:
    state = provisioned(tmp_path, factory)
    with trio.fail_after(60):
        async with tre.open_tre(state=state) as t:
            await install(t, issuer)
            assert "res" in await auth(t, SQN)
        async with tre.open_tre(state=state) as t:
            found = await mid(t)
            assert (found["state"], found["sqn"]) == ("enabled", SQN)
            replay = await auth(t, SQN)
            assert open_auts(K, OPC, RAND, replay["auts"]) == SQN
            assert "res" in await auth(t, SQN + 1)
            await t.call("mno", "disable", {"imsi": IMSI})
        async with tre.open_tre(state=state) as t:
            assert (await mid(t))["state"] == "disabled"
            assert await error_code(auth(t, SQN + 2)) == "MID_NOT_ENABLED"


async def test_an_old_record_put_back_is_not_used(
    tmp_path: Path, factory: Path, issuer: MidIssuer
) -> None:
    """Splicing back an older copy of the MID record (a disabled MID enabled again, a
    deleted one back) fails the key index: the record is unavailable, not believed."""
    state = provisioned(tmp_path, factory)
    with trio.fail_after(60):
        async with tre.open_tre(state=state) as t:
            await install(t, issuer)
        db = state / DB_FILE
        with sqlite3.connect(db) as conn:
            old = conn.execute(
                "SELECT * FROM keys WHERE domain = 'mno' AND label = 'mno.mids'"
            ).fetchone()
        async with tre.open_tre(state=state) as t:
            assert "res" in await auth(t, SQN)
            await t.call("mno", "disable", {"imsi": IMSI})  # the record changes
        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM keys WHERE domain = 'mno' AND label = 'mno.mids'")
            conn.execute(f"INSERT INTO keys VALUES ({', '.join('?' * len(old))})", old)
        async with tre.open_tre(state=state) as t:
            assert domain_keys(t, "mno").entries["mno.mids"].info.available is False
            assert await error_code(auth(t, SQN)) == "MIDS_UNAVAILABLE"
            assert await error_code(t.call("mno", "mids")) == "MIDS_UNAVAILABLE"
            assert f"mid.{IMSI}" in domain_keys(t, "mno").entries  # nothing was erased
