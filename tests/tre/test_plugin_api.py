"""tre/_plugin.py and tre/testing.py: what a domain plugin author writes and tests with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import trio

import tre
from tre import ConfigError
from tre.testing import load_domain_dir, open_test_tre, spec


class Plain(tre.Domain):
    """No services, no run."""


class Greeter(tre.Domain):
    @tre.service
    async def hello(self, caller: str, body: Any) -> str:
        return f"hello {caller}"

    @tre.service(name="bye")
    async def _farewell(self, caller: str, body: Any) -> str:
        return "bye"

    @tre.service()
    async def echo(self, caller: str, body: Any) -> Any:
        return body

    async def helper(self, caller: str, body: Any) -> None:
        """Not a service: not decorated."""


class LoudGreeter(Greeter):
    """Inherits every handler, overrides one (undecorated), adds one."""

    async def hello(self, caller: str, body: Any) -> str:
        return f"HELLO {caller.upper()}"

    @tre.service
    async def shout(self, caller: str, body: Any) -> str:
        return str(body).upper()


class Runner(tre.Domain):
    ticks = 0

    async def run(self) -> None:
        while True:
            await trio.sleep(1)
            type(self).ticks += 1

    @tre.service
    async def count(self, caller: str, body: Any) -> int:
        return type(self).ticks


class Failing(tre.Domain):
    @tre.service
    async def check(self, caller: str, body: Any) -> Any:
        if body == "service-error":
            raise tre.ServiceError("NOT_READY", "try again later")
        return "ok"


class Settings(tre.Domain):
    @tre.service
    async def show(self, caller: str, body: Any) -> dict[str, Any]:
        settings: Mapping[str, Any] = self.ctx.settings
        try:
            settings["new"] = 1  # type: ignore[index]
        except TypeError:
            writable = False
        else:  # pragma: no cover - would be a bug
            writable = True
        return {"settings": dict(settings), "writable": writable, "id": self.ctx.id}


# --- @tre.service and Domain -------------------------------------------------------------------


def test_service_decorator_returns_the_function() -> None:
    async def handler(self: Any, caller: str, body: Any) -> None: ...

    assert tre.service(handler) is handler
    assert tre.service(name="x")(handler) is handler


def test_service_names() -> None:
    assert tre.Domain.service_names() == {}
    assert Plain.service_names() == {}
    assert Greeter.service_names() == {"hello": "hello", "bye": "_farewell", "echo": "echo"}


def test_service_names_are_inherited() -> None:
    assert LoudGreeter.service_names() == {
        "hello": "hello",
        "bye": "_farewell",
        "echo": "echo",
        "shout": "shout",
    }


def test_subclass_can_rename_a_service_attribute() -> None:
    class Renamed(Greeter):
        @tre.service(name="bye")
        async def goodbye(self, caller: str, body: Any) -> str:
            return "goodbye"

    names = Renamed.service_names()
    assert names["bye"] == "goodbye"  # the subclass's handler wins


def test_has_run() -> None:
    assert tre.Domain.has_run() is False
    assert Plain.has_run() is False
    assert Greeter.has_run() is False
    assert Runner.has_run() is True

    class NotCallable(tre.Domain):
        run = 5

    assert NotCallable.has_run() is False

    class Inherits(Runner):
        pass

    assert Inherits.has_run() is True


async def test_inherited_and_overridden_handlers_answer(autojump_clock: trio.abc.Clock) -> None:
    async with open_test_tre(
        spec(LoudGreeter, services={n: ["host"] for n in LoudGreeter.service_names()}),
        host_calls={"loudgreeter": ["hello", "bye", "echo", "shout", "helper"]},
    ) as t:
        assert await t.call("loudgreeter", "hello") == "HELLO HOST"  # the override answers
        assert await t.call("loudgreeter", "bye") == "bye"
        assert await t.call("loudgreeter", "echo", [1, {"a": b"b"}]) == [1, {"a": b"b"}]
        assert await t.call("loudgreeter", "shout", "hey") == "HEY"
        with pytest.raises(tre.NoSuchMethod):
            await t.call("loudgreeter", "helper")


async def test_run_task_starts(autojump_clock: trio.abc.Clock) -> None:
    Runner.ticks = 0
    async with open_test_tre(
        spec(Runner, services={"count": ["host"]}), host_calls={"runner": ["count"]}
    ) as t:
        await trio.sleep(3.5)
        assert await t.call("runner", "count") == 3


async def test_service_error_reaches_the_caller(autojump_clock: trio.abc.Clock) -> None:
    async with open_test_tre(
        spec(Failing, services={"check": ["host"]}), host_calls={"failing": ["check"]}
    ) as t:
        with pytest.raises(tre.RemoteError) as info:
            await t.call("failing", "check", "service-error")
        assert info.value.remote_code == "NOT_READY"
        assert info.value.remote_message == "try again later"
        assert info.value.code == "REMOTE_ERROR"
        assert await t.call("failing", "check") == "ok"
        assert t.domain("failing").generation == 1  # a ServiceError is not a fault


async def test_context_settings_are_read_only(autojump_clock: trio.abc.Clock) -> None:
    async with open_test_tre(
        spec(Settings, services={"show": ["host"]}),
        host_calls={"settings": ["show"]},
        settings={"settings": {"level": 3, "name": "x"}},
    ) as t:
        assert await t.call("settings", "show") == {
            "settings": {"level": 3, "name": "x"},
            "writable": False,
            "id": "settings",
        }


# --- tre.testing.spec --------------------------------------------------------------------------


def test_spec_defaults() -> None:
    s = spec(Greeter)
    m = s.manifest
    assert s.cls is Greeter
    assert s.id == m.id == "greeter"
    assert (m.owner, m.version, m.svn) == ("test", "0.0.0", 0)
    assert m.entry == f"{__name__}:Greeter"
    assert m.path == "<spec greeter>"
    # every handler becomes a service that allows nobody
    assert dict(m.services) == {n: frozenset() for n in ("hello", "bye", "echo")}
    assert dict(m.calls) == {}
    assert m.isolated is False
    assert m.boot_order == 100
    assert m.quotas == tre.Quotas()
    assert m.abort == tre.AbortPolicy()


def test_spec_with_everything() -> None:
    s = spec(
        Greeter,
        id="g-1",
        services={"hello": ["host", "other"], "bye": [], "echo": ("host",)},
        calls={"oem": ["info"], "meter": ("latest", "history")},
        boot_order=7,
        default_deadline=0.5,
        quotas={"inbox_depth": 2, "concurrency": 4},
        abort={"action": "stop"},
        description="d",
    )
    m = s.manifest
    assert m.id == "g-1"
    assert dict(m.services) == {
        "hello": frozenset({"host", "other"}),
        "bye": frozenset(),
        "echo": frozenset({"host"}),
    }
    assert dict(m.calls) == {"oem": frozenset({"info"}), "meter": frozenset({"latest", "history"})}
    assert (m.boot_order, m.default_deadline, m.description) == (7, 0.5, "d")
    assert m.quotas == tre.Quotas(inbox_depth=2, concurrency=4)
    assert m.abort.action == "stop"


def test_spec_isolated() -> None:
    m = spec(Plain, isolated=True).manifest
    assert m.isolated is True


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"quotas": {"inbox_depth": 0}}, "quotas.inbox_depth"),
        ({"services": {"hello": ["host"]}}, "services"),  # bye and echo have no declaration
        (
            {"services": {**{n: [] for n in ("hello", "bye", "echo")}, "extra": []}},
            "services.extra",
        ),
        ({"id": "Bad"}, "id"),
        ({"id": "host"}, "id"),
        (
            {"isolated": True, "services": {n: ["host"] for n in ("hello", "bye", "echo")}},
            "services.hello.allow",
        ),
        ({"calls": {"greeter": ["hello"]}}, "calls[0].domain"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_spec_is_validated_like_a_manifest(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        spec(Greeter, **kwargs)
    assert info.value.key == key
    assert info.value.path.startswith("<spec ")


class NotADomain:
    pass


def test_spec_rejects_a_class_that_is_not_a_domain() -> None:
    with pytest.raises(ConfigError) as info:
        spec(NotADomain, services={})  # type: ignore[arg-type]
    assert info.value.key == "entry"
    assert "not a tre.Domain subclass" in str(info.value)


def test_testing_reexports_load_domain_dir() -> None:
    assert load_domain_dir is tre.load_domain_dir


def test_spec_accepts_a_class_defined_in_a_test() -> None:
    class Local(tre.Domain):
        @tre.service
        async def ping(self, caller: str, body: Any) -> Any:
            return body

    s = spec(Local, services={"ping": ["host"]})
    assert s.cls is Local
    assert s.id == "local"


def test_spec_manifest_has_no_directory() -> None:
    assert spec(Greeter).manifest.directory is None
