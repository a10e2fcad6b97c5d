# mypy: allow-untyped-decorators
"""Device ports (R2): declared in the TRE config, claimed in the manifest, granted by the
config; exclusive or shared; bounded byte pipes to the device software (the host's
PortEnd); a claim ends with its handle or its generation (fault, stop, lock, shutdown).
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import tre
from tre._config import config_to_toml
from tre.testing import spec

LIMIT = 10  # seconds of (mock) time any one test may take

#: every Port handle the domains opened, in order (the tests poke stale ones directly)
HANDLES: list[tre.Port] = []
#: contexts stashed by the domains (stale-context tests)
CONTEXTS: list[tre.Context] = []
ENTERED = [trio.Event()]


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    HANDLES.clear()
    CONTEXTS.clear()
    ENTERED[0] = trio.Event()
    yield
    HANDLES.clear()
    CONTEXTS.clear()


def outcome(exc: BaseException) -> str:
    return exc.code if isinstance(exc, tre.TREError) else type(exc).__name__


class User(tre.Domain):
    """A domain that opens ports on request and reports each outcome as a code."""

    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        self.ports: dict[str, tre.Port] = {}

    @tre.service
    async def open(self, caller: str, body: Any) -> str:
        try:
            port = self.ctx.open_port(body)
        except (tre.TREError, TypeError) as exc:
            return outcome(exc)
        HANDLES.append(port)
        self.ports[port.name] = port
        return "OK"

    @tre.service
    async def write(self, caller: str, body: Any) -> str:
        name, data, wait = body
        try:
            await self.ports[name].write(data, wait=wait)
        except (tre.TREError, TypeError) as exc:
            return outcome(exc)
        return "OK"

    @tre.service
    async def read(self, caller: str, body: Any) -> Any:
        name, max_bytes, wait = body
        try:
            return await self.ports[name].read(max_bytes, wait=wait)
        except (tre.TREError, ValueError) as exc:
            return outcome(exc)

    @tre.service
    async def close(self, caller: str, body: Any) -> str:
        self.ports.pop(body).close()
        return "OK"

    @tre.service
    async def crash(self, caller: str, body: Any) -> Any:
        raise RuntimeError("the modem driver fell over")

    @tre.service
    async def crash_slowly(self, caller: str, body: Any) -> Any:
        """Fail, with a task that takes 5 s to tear down: the generation is still going away
        (its supervisor has not restarted it) when the test looks."""

        async def linger() -> None:
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(5)

        self.ctx.start_soon(linger)
        await trio.sleep(0.1)
        raise RuntimeError("fails while a task lingers")

    @tre.service
    async def stash(self, caller: str, body: Any) -> int:
        CONTEXTS.append(self.ctx)
        return self.ctx.generation


class Opener(tre.Domain):
    """Opens its port in setup() and reads it in run(): a device driver."""

    async def setup(self) -> None:
        HANDLES.append(self.ctx.open_port("sensor"))

    async def run(self) -> None:
        port = HANDLES[-1]
        while True:
            data = await port.read()
            await port.write(data.upper())


SERVICES = {name: ["host"] for name in User.service_names()}


def user(domain_id: str, ports: list[str], **fields: Any) -> tre.DomainSpec:
    return spec(User, id=domain_id, services=SERVICES, ports=ports, **fields)


PORTS: dict[str, Any] = {
    "modem": {"domains": ["alpha", "beta"], "description": "LTE modem, AT commands"},
    "gpio": {"exclusive": False, "domains": ["alpha", "beta"]},
    "sensor": {"domains": ["alpha", "opener"], "buffer": 8},
    "secret": {"domains": ["beta"]},
    "spare": {"domains": ["alpha"]},
}


def config(ports: dict[str, Any] | None = None, domains: tuple[str, ...] = ()) -> tre.TREConfig:
    ids = domains or ("alpha", "beta")
    return tre.parse_config(
        {
            "tre": {"name": "ports-test"},
            "host": {"calls": [{"domain": d, "methods": sorted(SERVICES)} for d in ids]},
            "ports": PORTS if ports is None else ports,
        }
    )


@contextlib.asynccontextmanager
async def booted(
    *domains: tre.DomainSpec, ports: dict[str, Any] | None = None, events: list[Any] | None = None
) -> AsyncIterator[tre.TRE]:
    if not domains:
        domains = (
            user("alpha", ["modem", "gpio", "sensor", "nowhere"]),
            user("beta", ["modem", "gpio", "secret"]),
        )
    ids = tuple(d.id for d in domains if d.cls is User)
    cfg = config(ports, ids)
    hook = events.append if events is not None else None
    with trio.fail_after(LIMIT):
        async with tre.open_tre(cfg, domains=domains, on_event=hook) as t:
            yield t


def port_events(t: tre.TRE) -> list[tuple[str, str, str]]:
    return [(e.kind, e.domain, e.detail) for e in t.events if e.kind in ("port", "denied")]


# --- opening: claim, declaration, grant -------------------------------------------------


async def test_a_claimed_declared_granted_port_opens_and_carries_bytes_both_ways(
    autojump_clock: trio.testing.MockClock,
):
    events: list[tre.TREEvent] = []
    async with booted(events=events) as t:
        assert await t.call("alpha", "open", "modem") == "OK"
        port = HANDLES[0]
        assert (port.name, port.closed) == ("modem", False)
        modem = t.port("modem")
        assert (modem.name, modem.exclusive, modem.description) == (
            "modem",
            True,
            "LTE modem, AT commands",
        )
        assert modem.holders == ("alpha",)
        # the domain talks to the device; the host's end plays the modem
        assert await t.call("alpha", "write", ["modem", b"AT+CSQ\r", True]) == "OK"
        assert await modem.read() == b"AT+CSQ\r"
        await modem.write(b"+CSQ: 21,99\r\nOK\r\n")
        assert await t.call("alpha", "read", ["modem", 6, True]) == b"+CSQ: "
        assert await t.call("alpha", "read", ["modem", None, True]) == b"21,99\r\nOK\r\n"
        # nothing buffered: a read that does not wait gets b"", one that waits, waits
        assert await t.call("alpha", "read", ["modem", None, False]) == b""
        assert await modem.read(wait=False) == b""
        async with trio.open_nursery() as nursery:
            got: list[Any] = []

            async def reader() -> None:
                got.append(await t.call("alpha", "read", ["modem", None, True]))

            nursery.start_soon(reader)
            await trio.sleep(1)
            assert got == []
            await modem.write(bytearray(b"RING\r\n"))
        assert got == [b"RING\r\n"]
        assert port_events(t) == [("port", "alpha", "opened modem")]
    # the kernel's port events reach the device's event hooks (and so the audit log)
    assert ("port", "alpha", "opened modem") in [(e.kind, e.subject, e.detail) for e in events]
    assert ("port", "alpha", "released modem") in [(e.kind, e.subject, e.detail) for e in events]


async def test_a_driver_opens_its_port_in_setup_and_serves_it_from_run(
    autojump_clock: trio.testing.MockClock,
):
    opener = spec(Opener, id="opener", services={}, ports=["sensor"])
    async with booted(opener) as t:
        sensor = t.port("sensor")
        assert sensor.holders == ("opener",)
        await sensor.write(b"temp?")
        assert await sensor.read() == b"TEMP?"


async def test_a_port_the_manifest_does_not_claim_is_denied(
    autojump_clock: trio.testing.MockClock,
):
    async with booted() as t:
        # declared and granted to alpha, but alpha's manifest does not claim it
        assert await t.call("alpha", "open", "spare") == "PORT_DENIED"
        # the claim is checked first: an unclaimed port says nothing of whether it exists
        assert await t.call("alpha", "open", "no-such-port") == "PORT_DENIED"
        assert await t.call("alpha", "open", "x" * 10_000) == "PORT_DENIED"
        assert await t.call("alpha", "open", "") == "PORT_DENIED"
        assert HANDLES == []
        assert t.port("spare").holders == ()
        denied = port_events(t)
        assert [(k, d) for k, d, _ in denied] == [("denied", "alpha")] * 4
        assert denied[0][2] == "port 'spare': not claimed in its manifest"
        # a hostile name is cut short in the record
        assert all(len(detail) < 100 for _, _, detail in denied)


async def test_a_port_the_config_does_not_grant_is_denied(
    autojump_clock: trio.testing.MockClock,
):
    ports = {**PORTS, "modem": {"domains": ["beta"]}}
    async with booted(ports=ports) as t:
        assert await t.call("alpha", "open", "modem") == "PORT_DENIED"
        assert await t.call("beta", "open", "modem") == "OK"
        assert port_events(t) == [
            ("denied", "alpha", "port 'modem': not granted by the TRE config"),
            ("port", "beta", "opened modem"),
        ]


async def test_a_claimed_port_the_config_does_not_declare_boots_but_does_not_open(
    autojump_clock: trio.testing.MockClock,
):
    async with booted() as t:
        assert t.domain("alpha").state == "running"  # claims "nowhere": it still boots
        assert await t.call("alpha", "open", "nowhere") == "NO_SUCH_PORT"
        assert port_events(t) == [
            ("denied", "alpha", "port 'nowhere': not declared in the TRE config")
        ]
        with pytest.raises(tre.NoSuchPort):
            t.port("nowhere")
    # no [ports] table at all: every claim is refused the same way
    async with booted(ports={}) as t:
        assert await t.call("alpha", "open", "modem") == "NO_SUCH_PORT"


async def test_a_port_name_that_is_not_a_string_is_a_type_error(
    autojump_clock: trio.testing.MockClock,
):
    async with booted() as t:
        assert await t.call("alpha", "open", ["modem"]) == "TypeError"
        assert await t.call("alpha", "open", None) == "TypeError"
        with pytest.raises(tre.NoSuchPort):
            t.port(["modem"])  # type: ignore[arg-type]


# --- exclusivity ------------------------------------------------------------------------


async def test_an_exclusive_port_claimed_twice_is_busy(autojump_clock: trio.testing.MockClock):
    async with booted() as t:
        assert await t.call("alpha", "open", "modem") == "OK"
        # by another domain, and by the same domain again
        assert await t.call("beta", "open", "modem") == "PORT_BUSY"
        assert await t.call("alpha", "open", "modem") == "PORT_BUSY"
        assert t.port("modem").holders == ("alpha",)
        # closing ends the claim: the other domain may now open it (close is idempotent)
        assert await t.call("alpha", "close", "modem") == "OK"
        HANDLES[0].close()
        assert HANDLES[0].closed
        assert await t.call("beta", "open", "modem") == "OK"
        assert t.port("modem").holders == ("beta",)
        assert await t.call("alpha", "open", "modem") == "PORT_BUSY"
        assert port_events(t) == [
            ("port", "alpha", "opened modem"),
            ("port", "alpha", "closed modem"),
            ("port", "beta", "opened modem"),
        ]


async def test_a_shared_port_is_held_by_several_domains_at_once(
    autojump_clock: trio.testing.MockClock,
):
    async with booted() as t:
        assert await t.call("alpha", "open", "gpio") == "OK"
        assert await t.call("beta", "open", "gpio") == "OK"
        assert await t.call("alpha", "open", "gpio") == "OK"  # shared: twice is fine too
        gpio = t.port("gpio")
        assert (gpio.exclusive, gpio.holders) == (False, ("alpha", "beta", "alpha"))
        assert await t.call("alpha", "write", ["gpio", b"1", True]) == "OK"
        assert await t.call("beta", "write", ["gpio", b"0", True]) == "OK"
        assert await gpio.read() == b"10"
        # a shared line: each byte the device sends is read by one holder
        await gpio.write(b"edge")
        assert await t.call("beta", "read", ["gpio", None, True]) == b"edge"
        assert await t.call("alpha", "read", ["gpio", None, False]) == b""
        # one holder's claim ending leaves the others' open
        assert await t.call("beta", "close", "gpio") == "OK"
        await gpio.write(b"x")
        assert gpio.holders == ("alpha", "alpha")
        assert await t.call("alpha", "read", ["gpio", None, True]) == b"x"


# --- claims end with their generation -----------------------------------------------------


async def test_a_crashed_domains_port_is_released_and_its_old_handle_is_dead(
    autojump_clock: trio.testing.MockClock,
):
    async with booted() as t:
        assert await t.call("alpha", "open", "modem") == "OK"
        old = HANDLES[0]
        modem = t.port("modem")
        await modem.write(b"meant for alpha generation 1")
        with pytest.raises(tre.Aborted):
            await t.call("alpha", "crash")
        await t.wait_for("alpha", "running", generation=2)
        # the supervisor released the claim before the restart (no port was touched since)
        assert port_events(t)[-1] == ("port", "alpha", "released modem")
        # released: another domain can open it, and it does not read the old holder's bytes
        assert old.closed
        assert not modem.holders
        assert await t.call("beta", "open", "modem") == "OK"
        assert await t.call("beta", "read", ["modem", None, False]) == b""
        # the restarted generation is refused while beta holds it, then opens it again
        assert await t.call("alpha", "open", "modem") == "PORT_BUSY"
        assert await t.call("beta", "close", "modem") == "OK"
        assert await t.call("alpha", "open", "modem") == "OK"
        new = HANDLES[-1]
        assert not new.closed and old.closed
        # every operation on the old handle raises PortClosed; closing it is harmless
        with pytest.raises(tre.PortClosed):
            await old.write(b"from beyond the grave")
        with pytest.raises(tre.PortClosed):
            await old.read(wait=False)
        old.close()
        assert modem.holders == ("alpha",)
        assert await t.call("alpha", "write", ["modem", b"AT\r", True]) == "OK"
        assert await modem.read() == b"AT\r"
        assert [d for k, who, d in port_events(t) if who == "alpha"] == [
            "opened modem",
            "released modem",
            "opened modem",
        ]


async def test_a_port_is_free_the_moment_its_domain_faults_before_the_restart(
    autojump_clock: trio.testing.MockClock,
):
    async with booted() as t:
        assert await t.call("alpha", "open", "modem") == "OK"
        with pytest.raises(tre.Aborted):
            await t.call("alpha", "crash_slowly")
        # generation 1 is still tearing down (a task of it lingers for 5 s)...
        info = t.domain("alpha")
        assert (info.state, info.generation) == ("failed", 1)
        # ...but its claim has ended already
        assert HANDLES[0].closed
        assert await t.call("beta", "open", "modem") == "OK"
        assert t.port("modem").holders == ("beta",)
        assert await t.call("beta", "close", "modem") == "OK"
        await t.wait_for("alpha", "running", generation=2)
        assert await t.call("alpha", "open", "modem") == "OK"


async def test_a_stopped_domains_port_is_released(autojump_clock: trio.testing.MockClock):
    alpha = user("alpha", ["modem"], abort={"action": "stop"})
    async with booted(alpha, user("beta", ["modem"])) as t:
        assert await t.call("alpha", "open", "modem") == "OK"
        with pytest.raises(tre.Aborted):
            await t.call("alpha", "crash")
        await t.wait_for("alpha", "stopped")
        assert HANDLES[0].closed
        assert await t.call("beta", "open", "modem") == "OK"


async def test_a_locked_domains_port_is_released(autojump_clock: trio.testing.MockClock):
    async with booted() as t:
        assert await t.call("alpha", "open", "modem") == "OK"
        assert await t.call("alpha", "open", "gpio") == "OK"
        await t.tamper("alpha", "case opened")
        assert t.domain("alpha").state == "locked"
        alpha_modem, alpha_gpio = HANDLES
        assert alpha_modem.closed and alpha_gpio.closed
        with pytest.raises(tre.PortClosed):
            await alpha_modem.write(b"x")
        assert await t.call("beta", "open", "modem") == "OK"
        assert t.port("gpio").holders == ()


async def test_a_stale_context_cannot_open_a_port(autojump_clock: trio.testing.MockClock):
    async with booted() as t:
        assert await t.call("alpha", "stash") == 1
        with pytest.raises(tre.Aborted):
            await t.call("alpha", "crash")
        await t.wait_for("alpha", "running", generation=2)
        with pytest.raises(tre.Aborted):
            CONTEXTS[0].open_port("modem")
        assert t.port("modem").holders == ()


async def test_shutdown_ends_every_claim_and_the_hosts_port_ends(
    autojump_clock: trio.testing.MockClock,
):
    async with booted() as t:
        assert await t.call("alpha", "open", "modem") == "OK"
        assert await t.call("beta", "open", "gpio") == "OK"
        modem = t.port("modem")
        await modem.write(b"pending")
    assert all(h.closed for h in HANDLES)
    with pytest.raises(tre.PortClosed):
        await HANDLES[0].read()
    with pytest.raises(tre.PortClosed):
        await modem.write(b"x")
    with pytest.raises(tre.PortClosed):
        await modem.read()
    assert ("port", "beta", "released gpio") in port_events(t)


async def test_a_host_reader_waiting_on_a_port_is_woken_by_shutdown(
    autojump_clock: trio.testing.MockClock,
):
    outcome_of_read: list[str] = []
    async with trio.open_nursery() as nursery, booted() as t:
        modem = t.port("modem")

        async def wait_for_data() -> None:
            try:
                await modem.read()
            except tre.PortClosed as exc:
                outcome_of_read.append(exc.code)

        nursery.start_soon(wait_for_data)
        await trio.sleep(1)
    assert outcome_of_read == ["PORT_CLOSED"]


# --- bounded buffers ------------------------------------------------------------------------


async def test_buffers_are_bounded_a_full_one_waits_or_refuses(
    autojump_clock: trio.testing.MockClock,
):
    async with booted() as t:  # the sensor port buffers 8 bytes each way
        assert await t.call("alpha", "open", "sensor") == "OK"
        sensor = t.port("sensor")
        await sensor.write(b"12345678", wait=False)
        with pytest.raises(tre.PortFull) as info:
            await sensor.write(b"9", wait=False)
        assert isinstance(info.value, tre.PortBusy) and info.value.code == "PORT_FULL"
        # a write that waits goes in as room appears, and returns once all of it is in
        done = trio.Event()

        async def write_more() -> None:
            await sensor.write(b"abcdefghij")  # more than the whole buffer
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_more)
            await trio.sleep(1)
            assert not done.is_set()
            assert await t.call("alpha", "read", ["sensor", 5, True]) == b"12345"
            assert await t.call("alpha", "read", ["sensor", None, True]) == b"678abcde"
            assert await t.call("alpha", "read", ["sensor", None, True]) == b"fghij"
        assert done.is_set()
        # the domain's direction is bounded too: the host has not read, so it fills up
        assert await t.call("alpha", "write", ["sensor", b"x" * 8, False]) == "OK"
        assert await t.call("alpha", "write", ["sensor", b"y", False]) == "PORT_FULL"
        # a write that waits is bounded by the call's deadline instead
        with pytest.raises(tre.CallTimeout):
            await t.call("alpha", "write", ["sensor", b"y", True], timeout=1)
        assert await sensor.read() == b"x" * 8


async def test_bytes_for_an_earlier_holder_are_dropped_when_its_claim_ends(
    autojump_clock: trio.testing.MockClock,
):
    async with booted() as t:
        modem = t.port("modem")
        await modem.write(b"before anyone")  # buffered for the first holder
        assert await t.call("alpha", "open", "modem") == "OK"
        assert await t.call("alpha", "read", ["modem", None, False]) == b"before anyone"
        await modem.write(b"alpha's PIN")
        assert await t.call("alpha", "close", "modem") == "OK"
        assert await t.call("beta", "open", "modem") == "OK"
        assert await t.call("beta", "read", ["modem", None, False]) == b""


async def test_bad_arguments_to_a_port(autojump_clock: trio.testing.MockClock):
    async with booted() as t:
        assert await t.call("alpha", "open", "modem") == "OK"
        port = HANDLES[0]
        with pytest.raises(TypeError):
            await port.write("text, not bytes")  # type: ignore[arg-type]
        for bad in (0, -1, 1.5, True):
            with pytest.raises(ValueError, match="max_bytes"):
                await port.read(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await t.port("modem").write(None)  # type: ignore[arg-type]
        await port.write(b"")  # nothing to send is fine
        assert await t.port("modem").read(wait=False) == b""


# --- config and manifest --------------------------------------------------------------------


def test_the_ports_table_is_parsed_with_defaults() -> None:
    cfg = tre.parse_config(
        {"ports": {"modem": {"domains": ["mno", "mno"]}, "gpio": {"exclusive": False}}}
    )
    assert cfg.ports["modem"] == tre.PortSpec("modem", True, frozenset({"mno"}), "", 4096)
    assert cfg.ports["gpio"] == tre.PortSpec("gpio", False, frozenset(), "", 4096)
    assert tre.parse_config({}).ports == {}
    assert tre.default_config().ports == {}


@pytest.mark.parametrize(
    ("ports", "key"),
    [
        ({"Modem": {}}, "ports.Modem"),
        ({"a b": {}}, "ports.a b"),
        ({"x" * 33: {}}, "ports." + "x" * 33),
        ({"modem": "yes"}, "ports.modem"),
        ({"modem": {"exclusive": 1}}, "ports.modem.exclusive"),
        ({"modem": {"domains": "mno"}}, "ports.modem.domains"),
        ({"modem": {"domains": ["mno", ""]}}, "ports.modem.domains"),
        ({"modem": {"domains": ["host"]}}, "ports.modem.domains[0]"),
        ({"modem": {"domains": ["mno", "Bad!"]}}, "ports.modem.domains[1]"),
        ({"modem": {"description": 5}}, "ports.modem.description"),
        ({"modem": {"buffer": 0}}, "ports.modem.buffer"),
        ({"modem": {"buffer": (1 << 20) + 1}}, "ports.modem.buffer"),
        ({"modem": {"buffer": 8.0}}, "ports.modem.buffer"),
        ({"modem": {"owner": "mno"}}, "ports.modem.owner"),
        ([], "ports"),
    ],
)
def test_bad_ports_tables_name_the_key(ports: Any, key: str) -> None:
    with pytest.raises(tre.ConfigError) as info:
        tre.parse_config({"ports": ports}, "tre.toml")
    assert info.value.key == key
    assert str(info.value).startswith(f"tre.toml: {key}: ")


def test_the_ports_survive_the_stored_config() -> None:
    cfg = tre.parse_config(
        {
            "ports": {
                "modem": {"domains": ["mno", "oem"], "description": 'LTE "Cat-M1"\nmodem'},
                "gpio": {"exclusive": False, "buffer": 16},
                "idle": {},
            }
        }
    )
    again = tre.parse_config(tomllib.loads(config_to_toml(cfg)))
    assert again.ports == cfg.ports


def test_the_manifest_claims_ports() -> None:
    base = {"id": "mno", "owner": "o", "version": "1", "svn": 0, "entry": "m:M"}
    assert tre.parse_manifest(base).ports == frozenset()
    claimed = tre.parse_manifest({**base, "ports": ["modem", "gpio", "modem"]})
    assert claimed.ports == frozenset({"modem", "gpio"})
    for ports, key in [
        ("modem", "ports"),
        ([1], "ports[0]"),
        (["ok", "Not OK"], "ports[1]"),
        ([""], "ports[0]"),
    ]:
        with pytest.raises(tre.ConfigError) as info:
            tre.parse_manifest({**base, "ports": ports}, "domain.toml")
        assert info.value.key == key


def test_the_example_config_declares_ports() -> None:
    cfg = tre.load_config(Path(__file__).parents[2] / "examples" / "tre.toml")
    assert cfg.ports["modem"].domains == frozenset({"mno"})
    assert cfg.ports["modem"].exclusive


async def test_a_port_handle_exposes_only_its_documented_api(
    autojump_clock: trio.testing.MockClock,
):
    async with booted() as t:
        assert await t.call("alpha", "open", "modem") == "OK"
        port = HANDLES[0]
        assert {n for n in dir(port) if not n.startswith("_")} == {
            "name",
            "closed",
            "read",
            "write",
            "close",
        }
        assert not hasattr(port, "__dict__")  # nothing to hang things on
        end = t.port("modem")
        assert end is t.port("modem")
        assert {n for n in dir(end) if not n.startswith("_")} == {
            "name",
            "exclusive",
            "description",
            "holders",
            "read",
            "write",
        }
        assert repr(port) == "<Port 'modem' of 'alpha' (open)>"
        # a handle cannot travel to another domain: it is not something a call can carry
        with pytest.raises(tre.InvalidFrame):
            await t.call("beta", "open", port)
