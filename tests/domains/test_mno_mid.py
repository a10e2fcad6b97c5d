"""MIDs stored and run in the mno domain (issue 6, section 3: lifecycle and execution)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

import tre
from domains.mno import MID_LIFECYCLE, MidState
from tests.domains.test_aka import make_autn, open_auts
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
        "install_plain",
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


@pytest.fixture
async def t() -> AsyncIterator[tre.TRE]:
    async with tre.open_tre(config()) as handle:
        yield handle


async def install(t: tre.TRE, imsi: str = IMSI, *, sqn: int = 0, enable: bool = True) -> Any:
    body = {"imsi": imsi, "k": K, "opc": OPC, "sqn": sqn, "amf": AMF}
    out = await t.call("mno", "install_plain", body)
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
    vector: dict[str, str], autojump_clock: trio.abc.Clock
) -> None:
    k, opc, rand, amf = _h(vector["K"]), _h(vector["OPc"]), _h(vector["RAND"]), _h(vector["AMF"])
    sqn = int(vector["SQN"], 16)
    async with tre.open_tre(config()) as t:
        await t.call("mno", "install_plain", {"imsi": IMSI, "k": k, "opc": opc.hex()})
        await t.call("mno", "enable", {"imsi": IMSI})
        autn = make_autn(k, opc, rand, sqn, amf)
        out = await t.call("mno", "authenticate", {"imsi": IMSI, "rand": rand, "autn": autn})
        assert out == {
            "res": _h(vector["f2_RES"]),
            "ck": _h(vector["f3_CK"]),
            "ik": _h(vector["f4_IK"]),
        }
        assert (await mid(t))["sqn"] == sqn


async def test_replayed_autn_gives_a_verifiable_auts(
    t: tre.TRE, autojump_clock: trio.abc.Clock
) -> None:
    await install(t)
    assert "res" in await auth(t, SQN)
    replay = await auth(t, SQN)
    assert set(replay) == {"auts"}
    assert open_auts(K, OPC, RAND, replay["auts"]) == SQN  # the network resynchronises
    older = await auth(t, SQN - 5)
    assert open_auts(K, OPC, RAND, older["auts"]) == SQN
    assert (await mid(t))["sqn"] == SQN
    assert "res" in await auth(t, SQN + 1)  # going forward works again
    assert (await mid(t))["sqn"] == SQN + 1


async def test_bad_mac_is_mac_failure_and_changes_nothing(
    t: tre.TRE, autojump_clock: trio.abc.Clock
) -> None:
    await install(t, sqn=7)
    autn = bytearray(make_autn(K, OPC, RAND, SQN, AMF))
    autn[-1] ^= 1
    body = {"imsi": IMSI, "rand": RAND, "autn": bytes(autn)}
    assert await error_code(t.call("mno", "authenticate", body)) == "MAC_FAILURE"
    assert (await mid(t))["sqn"] == 7
    assert "res" in await auth(t, SQN)  # the genuine challenge still works


async def test_malformed_challenges_are_refused(t: tre.TRE, autojump_clock: trio.abc.Clock) -> None:
    await install(t)
    for body in [
        {"imsi": IMSI, "rand": RAND[:15], "autn": bytes(16)},
        {"imsi": IMSI, "rand": RAND, "autn": "zz"},
        {"imsi": "12ab", "rand": RAND, "autn": bytes(16)},
        "not a map",
    ]:
        assert await error_code(t.call("mno", "authenticate", body)) == "BAD_REQUEST"
    assert t.domain("mno").generation == 1  # refused, not crashed


async def test_concurrent_replays_give_one_success(
    t: tre.TRE, autojump_clock: trio.abc.Clock
) -> None:
    await install(t)
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


async def test_lifecycle_moves_and_status(t: tre.TRE, autojump_clock: trio.abc.Clock) -> None:
    installed = await install(t, enable=False)
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


async def test_a_second_enable_is_refused(t: tre.TRE, autojump_clock: trio.abc.Clock) -> None:
    await install(t)
    await install(t, IMSI2, enable=False)
    assert await error_code(t.call("mno", "enable", {"imsi": IMSI2})) == "ENABLED_LIMIT"
    assert (await mid(t, IMSI2))["state"] == "installed"
    await t.call("mno", "disable", {"imsi": IMSI})
    assert (await t.call("mno", "enable", {"imsi": IMSI2}))["state"] == "enabled"


async def test_the_settings_may_allow_more_enabled(autojump_clock: trio.abc.Clock) -> None:
    cfg = tre.TREConfig(
        name="mno-test",
        enable=("oem", "mno"),
        host=tre.HostPolicy(calls={"mno": SERVICES}),
        settings={"mno": {"max_enabled": 2}},
    )
    async with tre.open_tre(cfg) as t:
        await install(t)
        await install(t, IMSI2)
        assert [m["state"] for m in await t.call("mno", "mids")] == ["enabled", "enabled"]


async def test_delete_crypto_erases(t: tre.TRE, autojump_clock: trio.abc.Clock) -> None:
    await install(t)
    assert "res" in await auth(t, SQN)
    await t.call("mno", "disable", {"imsi": IMSI})
    assert (await t.call("mno", "delete", {"imsi": IMSI}))["state"] == "deleted"
    assert await error_code(auth(t, SQN + 1)) == "NO_SUCH_MID"
    assert await error_code(t.call("mno", "enable", {"imsi": IMSI})) == "NO_SUCH_MID"
    assert f"mid.{IMSI}" not in stored_secrets(domain_keys(t, "mno"))  # the row is gone
    assert (await mid(t))["state"] == "deleted"
    # the IMSI may be installed again, as a new MID
    again = await install(t)
    assert (again["state"], again["sqn"]) == ("enabled", 0)
    assert "res" in await auth(t, SQN)


async def test_install_refusals(t: tre.TRE, autojump_clock: trio.abc.Clock) -> None:
    await install(t, enable=False)
    body = {"imsi": IMSI, "k": K, "opc": OPC}
    assert await error_code(t.call("mno", "install_plain", body)) == "MID_EXISTS"
    for bad in [
        {"imsi": IMSI2, "k": K[:15], "opc": OPC},
        {"imsi": IMSI2, "k": K, "opc": OPC, "sqn": -1},
        {"imsi": IMSI2, "k": K, "opc": OPC, "amf": b"\x00"},
        {"imsi": "1234", "k": K, "opc": OPC},
    ]:
        assert await error_code(t.call("mno", "install_plain", bad)) == "BAD_REQUEST"
    assert [m["imsi"] for m in await t.call("mno", "mids")] == [IMSI]


# --- secrets ---------------------------------------------------------------------------------


async def test_k_and_opc_never_leave(
    t: tre.TRE, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    outputs = [await install(t, enable=False), await t.call("mno", "enable", {"imsi": IMSI})]
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


def provisioned(tmp_path: Path) -> Path:
    factory = tmp_path / "factory"
    factory_init(factory, domains=("oem", "mno"))
    state = tmp_path / "state"
    provision(state, factory, config=config())
    return state


async def test_sqn_and_state_survive_a_reboot(tmp_path: Path) -> None:
    state = provisioned(tmp_path)
    with trio.fail_after(60):
        async with tre.open_tre(state=state) as t:
            await install(t)
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


async def test_an_old_record_put_back_is_not_used(tmp_path: Path) -> None:
    """Splicing back an older copy of the MID record (a lower SQN, to replay a challenge)
    fails the key index: the record is unavailable, not believed."""
    state = provisioned(tmp_path)
    with trio.fail_after(60):
        async with tre.open_tre(state=state) as t:
            await install(t)
        db = state / DB_FILE
        with sqlite3.connect(db) as conn:
            old = conn.execute(
                "SELECT * FROM keys WHERE domain = 'mno' AND label = 'mno.mids'"
            ).fetchone()
        async with tre.open_tre(state=state) as t:
            assert "res" in await auth(t, SQN)
        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM keys WHERE domain = 'mno' AND label = 'mno.mids'")
            conn.execute(f"INSERT INTO keys VALUES ({', '.join('?' * len(old))})", old)
        async with tre.open_tre(state=state) as t:
            assert domain_keys(t, "mno").entries["mno.mids"].info.available is False
            assert await error_code(auth(t, SQN)) == "MIDS_UNAVAILABLE"
            assert await error_code(t.call("mno", "mids")) == "MIDS_UNAVAILABLE"
            assert f"mid.{IMSI}" in domain_keys(t, "mno").entries  # nothing was erased
