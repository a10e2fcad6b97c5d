"""The reference stakeholder domains (domains/*) booted together in a TRE."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio

import tre
from domains.oem import stamp_payload
from tre.testing import open_test_tre

FAST = {"meter": {"interval": 0.1}}


def fast_config(**changes: Any) -> tre.TREConfig:
    return attrs.evolve(tre.default_config(), settings=FAST, **changes)


@pytest.fixture
async def t() -> AsyncIterator[tre.TRE]:
    """The reference TRE with a fast meter. Tests using it also take ``autojump_clock``
    (pytest-trio picks the clock from the test's own arguments)."""
    async with tre.open_tre(fast_config()) as handle:
        yield handle


async def test_default_config_boots_every_reference_domain(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with tre.open_tre(tre.default_config()) as t:
        infos = t.domains()
        assert [d.id for d in infos] == ["oem", "meter", "mno", "vault"]  # boot order
        assert all(d.state == "running" and d.generation == 1 for d in infos)
        assert [d.isolated for d in infos] == [False, False, False, True]
        oem = t.domain("oem")
        assert (oem.owner, oem.version, oem.svn) == ("Acme Devices (device maker)", "1.0.0", 1)


async def test_open_tre_without_config_uses_the_default(autojump_clock: trio.abc.Clock) -> None:
    async with tre.open_tre() as t:
        assert t.config == tre.default_config()
        assert [d.id for d in t.domains()] == ["oem", "meter", "mno", "vault"]


# --- oem -------------------------------------------------------------------------------------


async def test_oem_info_returns_the_platform(t: tre.TRE, autojump_clock: trio.abc.Clock) -> None:
    info = await t.call("oem", "info")
    key = info.pop("timestamp_key")
    assert info == {
        "platform": {
            "manufacturer": "Acme Devices",
            "model": "M2M-Gateway-7",
            "hardware": "rev C",
            "firmware": "7.4.1",
        },
        "generation": 1,
    }
    assert isinstance(key, bytes) and len(key) == 32  # a raw Ed25519 public key


async def test_oem_info_takes_string_settings(autojump_clock: trio.abc.Clock) -> None:
    cfg = attrs.evolve(
        tre.default_config(), settings={"oem": {"model": "M2M-Gateway-7X", "ignored": 5}}
    )
    async with tre.open_tre(cfg) as t:
        platform = (await t.call("oem", "info"))["platform"]
        assert platform["model"] == "M2M-Gateway-7X"
        assert "ignored" not in platform


async def test_oem_time(t: tre.TRE, autojump_clock: trio.abc.Clock) -> None:
    before = trio.current_time()
    await trio.sleep(2.5)
    reply = await t.call("oem", "time")
    assert set(reply) == {"monotonic", "utc"}
    assert isinstance(reply["monotonic"], float) and isinstance(reply["utc"], float)
    assert before + 2.5 <= reply["monotonic"] <= trio.current_time()
    later = await t.call("oem", "time")
    assert later["monotonic"] >= reply["monotonic"]


async def test_host_may_not_ask_oem_for_a_timestamp(autojump_clock: trio.abc.Clock) -> None:
    host = tre.HostPolicy(calls={"oem": frozenset({"timestamp"})})
    async with tre.open_tre(fast_config(host=host)) as t:
        with pytest.raises(tre.Denied, match="does not allow 'host'"):
            await t.call("oem", "timestamp", {"digest": bytes(32)})


# A stand-in for "meter" (the only caller oem grants timestamps to) that reports what the
# kernel answered, so the host can look at oem.timestamp's outcomes.
OUTCOMES: list[Any] = []


class TimestampProbe(tre.Domain):
    @tre.service
    async def probe(self, caller: str, body: Any) -> Any:
        try:
            reply = await self.ctx.call("oem", "timestamp", body)
        except tre.CallError as exc:
            OUTCOMES.append(exc)
            return None
        OUTCOMES.append(reply)
        return reply


def probe_spec() -> tre.DomainSpec:
    return tre.DomainSpec(
        tre.parse_manifest(
            {
                "id": "meter",
                "owner": "test",
                "version": "0",
                "svn": 0,
                "entry": "test_reference_domains:TimestampProbe",
                "services": {"probe": {"allow": ["host"]}},
                "calls": [{"domain": "oem", "methods": ["timestamp"]}],
            },
            "<probe>",
        ),
        TimestampProbe,
    )


@pytest.mark.parametrize(
    "body",
    [
        None,
        "digest",
        {},
        {"digest": "0" * 32},
        {"digest": bytes(31)},
        {"digest": bytes(33)},
        {"digest": [0] * 32},
    ],
)
async def test_oem_timestamp_with_a_bad_body(autojump_clock: trio.abc.Clock, body: Any) -> None:
    OUTCOMES.clear()
    async with open_test_tre(probe_spec(), enable=["oem"], host_calls={"meter": ["probe"]}) as t:
        assert await t.call("meter", "probe", body) is None
        [exc] = OUTCOMES
        assert isinstance(exc, tre.RemoteError)
        assert exc.remote_code == "BAD_REQUEST"
        assert "32 bytes" in exc.remote_message
        assert "Traceback" not in str(exc)
        # a bad request is answered, not a fault: oem keeps its generation
        assert t.domain("oem").generation == 1
        assert t.domain("oem").faults == 0


async def test_oem_timestamp_with_a_good_body(autojump_clock: trio.abc.Clock) -> None:
    OUTCOMES.clear()
    async with open_test_tre(
        probe_spec(), enable=["oem"], host_calls={"meter": ["probe"], "oem": ["info"]}
    ) as t:
        first = await t.call("meter", "probe", {"digest": bytes(32)})
        second = await t.call("meter", "probe", {"digest": b"\x01" * 32})
        key = (await t.call("oem", "info"))["timestamp_key"]
    assert set(first) == {"seq", "monotonic", "for", "sig"}
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["for"] == second["for"] == "meter"
    assert isinstance(first["sig"], bytes) and len(first["sig"]) == 64
    assert first["sig"] != second["sig"]
    payload = stamp_payload(bytes(32), 1, first["monotonic"], "meter")
    assert tre.verify_ed25519(key, payload, first["sig"])
    assert not tre.verify_ed25519(key, payload, second["sig"])  # bound to digest and seq


# --- meter -----------------------------------------------------------------------------------


async def test_meter_readings_are_timestamped_by_oem(
    t: tre.TRE, autojump_clock: trio.abc.Clock
) -> None:
    assert t.domain("meter").generation == 1
    await trio.sleep(1.05)
    history = await t.call("meter", "history")
    readings = history["readings"]
    assert history["missed"] == 0
    assert len(readings) >= 8
    seqs = [r["stamp"]["seq"] for r in readings]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # strictly increasing
    times = [r["stamp"]["monotonic"] for r in readings]
    assert times == sorted(times)
    assert [r["sample"] for r in readings] == list(range(1, len(readings) + 1))
    kwh = [r["kwh"] for r in readings]
    assert kwh == sorted(kwh) and kwh[0] > 0
    assert all(r["verified"] for r in readings)  # meter checked oem's signature on each
    for r in readings:
        assert r["stamp"]["for"] == "meter"
        assert isinstance(r["stamp"]["sig"], bytes) and len(r["stamp"]["sig"]) == 64
        assert isinstance(r["digest"], bytes) and len(r["digest"]) == 32
    latest = await t.call("meter", "latest")
    assert latest == readings[-1] or latest["stamp"]["seq"] > readings[-1]["stamp"]["seq"]


async def test_meter_latest_is_none_before_the_first_reading(
    autojump_clock: trio.abc.Clock,
) -> None:
    cfg = attrs.evolve(tre.default_config(), settings={"meter": {"interval": 10.0}})
    async with tre.open_tre(cfg) as t:
        assert await t.call("meter", "latest") is None
        assert await t.call("meter", "history") == {"readings": [], "missed": 0}


async def test_meter_selftest_passes(t: tre.TRE, autojump_clock: trio.abc.Clock) -> None:
    reply = await t.call("meter", "selftest", {})
    assert reply["ok"] is True


async def test_meter_fault_restarts_meter_and_oem_keeps_serving(
    t: tre.TRE, autojump_clock: trio.abc.Clock
) -> None:
    await trio.sleep(0.55)
    before = await t.call("meter", "history")
    last_seq = before["readings"][-1]["stamp"]["seq"]

    with pytest.raises(tre.Aborted):
        await t.call("meter", "selftest", {"inject_fault": True})

    with trio.fail_after(5):
        info = await t.wait_for("meter", "running", generation=2)
    assert info.generation == 2
    assert info.faults == 1
    assert info.restarts == 1
    kinds = [(e.kind, e.domain) for e in t.events]
    assert ("fault", "meter") in kinds and ("restart", "meter") in kinds

    # oem was never touched and keeps serving
    oem = t.domain("oem")
    assert (oem.generation, oem.faults, oem.state) == (1, 0, "running")
    assert (await t.call("oem", "info"))["generation"] == 1

    # the new generation starts from scratch and its readings go on being stamped by oem
    await trio.sleep(0.55)
    after = await t.call("meter", "history")
    assert after["readings"]
    assert after["readings"][0]["sample"] == 1
    assert after["readings"][0]["stamp"]["seq"] > last_seq
    assert (await t.call("meter", "selftest"))["ok"] is True


# --- mno -------------------------------------------------------------------------------------


async def test_mno_status_reports_timestamp_denied(
    t: tre.TRE, autojump_clock: trio.abc.Clock
) -> None:
    status = await t.call("mno", "status")
    assert status == {
        "platform": "M2M-Gateway-7",
        "mids": [],
        "enabled_mid": None,
        "oem.timestamp": "DENIED",
    }
    # mno declares oem.timestamp, oem does not allow mno: both manifests must agree
    assert "timestamp" in t.policy.declared["mno"]["oem"]
    assert "mno" not in t.policy.offered["oem"]["timestamp"]
    d = t.policy.evaluate("mno", "oem", "timestamp")
    assert d.code == "DENIED"
    assert "does not allow 'mno'" in d.reason
    assert t.policy.routes("mno") == {"oem": frozenset({"info"})}
    assert any(e.kind == "denied" and e.domain == "mno" for e in t.events)


# --- vault -----------------------------------------------------------------------------------


async def test_vault_is_unreachable_from_the_host(
    t: tre.TRE, autojump_clock: trio.abc.Clock
) -> None:
    assert t.domain("vault").state == "running"
    with pytest.raises(tre.Denied):
        await t.call("vault", "anything")
    assert t.policy.routes("vault") == {}
    assert all("vault" not in t.policy.routes(c) for c in t.policy.callers())


async def test_vault_stays_isolated_even_if_the_host_is_granted(
    autojump_clock: trio.abc.Clock,
) -> None:
    host = tre.HostPolicy(calls={"vault": frozenset({"peek"})})
    async with tre.open_tre(fast_config(host=host)) as t:
        with pytest.raises(tre.Denied, match="'vault' is isolated"):
            await t.call("vault", "peek")
        assert t.policy.routes(tre.HOST) == {}
        assert t.policy.evaluate("vault", "oem", "info").code == "DENIED"


# --- the whole policy of the reference set ---------------------------------------------------


async def test_reference_policy_edges(t: tre.TRE, autojump_clock: trio.abc.Clock) -> None:
    host = tre.HOST
    assert t.policy.edges == {
        (host, "oem", "info"),
        (host, "oem", "time"),
        (host, "meter", "latest"),
        (host, "meter", "history"),
        (host, "meter", "selftest"),
        (host, "meter", "backup"),
        (host, "mno", "status"),
        *(
            (host, "mno", m)
            for m in (
                "mid_key",
                "install_package",
                "mids",
                "enable",
                "disable",
                "delete",
                "authenticate",
            )
        ),
        ("meter", "oem", "timestamp"),
        ("meter", "oem", "time"),
        ("meter", "oem", "info"),
        ("meter", "oem", "session"),
        ("meter", "oem", "archive"),
        ("mno", "oem", "info"),
    }
    assert t.policy.isolated == {"vault"}
    assert (
        t.policy.digest()
        == tre.Policy.compile(
            [tre.load_plugin(n).manifest for n in ("vault", "mno", "meter", "oem")],
            tre.default_config().host.calls,
        ).digest()
    )
