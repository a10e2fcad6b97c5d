# mypy: allow-untyped-decorators
"""Notifications (``ctx.notify`` / ``TRE.notify``): one-way, never waiting, under exactly the
policy and quotas of calls.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import tre
from tests.kernel_helpers import PROBE, allow, wait_state
from tre.testing import open_test_tre, spec

pytestmark = pytest.mark.usefixtures("probe")


class Listener(tre.Domain):
    @tre.service
    async def note(self, caller: str, body: Any) -> Any:
        PROBE.seen.append((self.ctx.id, caller, body))
        return "a reply nobody reads"

    @tre.service
    async def hold(self, caller: str, body: Any) -> Any:
        await PROBE.hold((self.ctx.id, caller, body))

    @tre.service
    async def refuse(self, caller: str, body: Any) -> Any:
        raise tre.ServiceError("NOPE", "not now")

    @tre.service
    async def crash(self, caller: str, body: Any) -> Any:
        raise RuntimeError("notification handler failed")

    @tre.service
    async def secret(self, caller: str, body: Any) -> Any:
        PROBE.seen.append((self.ctx.id, caller, body))


class Notifier(tre.Domain):
    @tre.service
    async def send(self, caller: str, body: Any) -> Any:
        try:
            self.ctx.notify(body["domain"], body["method"], body.get("body"))
        except tre.CallError as exc:
            return exc.code
        return "sent"


def listener(**fields: Any) -> tre.DomainSpec:
    services = allow(Listener, "host", "notifier")
    services["secret"] = ["host"]
    return spec(Listener, id="listener", services=services, **fields)


NOTIFIER = spec(
    Notifier,
    id="notifier",
    services={"send": ["host"]},
    calls={"listener": ["note", "secret"], "ghost": ["x"], "listener2": ["note"]},
)
HOST = {
    "listener": ["note", "hold", "refuse", "crash", "nope"],
    "notifier": ["send"],
    "ghost": ["x"],
}


async def test_notifications_are_delivered_in_order_with_the_true_sender(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(listener(), NOTIFIER, host_calls=HOST) as t:
        start = trio.current_time()
        for i in range(5):
            t.notify("listener", "note", {"i": i, "caller": "notifier"})
        for i in range(2):
            assert (
                await t.call(
                    "notifier", "send", {"domain": "listener", "method": "note", "body": i}
                )
                == "sent"
            )
        await trio.testing.wait_all_tasks_blocked()
        assert PROBE.seen == [
            *[("listener", "host", {"i": i, "caller": "notifier"}) for i in range(5)],
            ("listener", "notifier", 0),
            ("listener", "notifier", 1),
        ]
        assert trio.current_time() == start
        assert t.domain("listener").served == 7


NOTIFY_POLICY_ROWS = [
    pytest.param("host", "listener", "secret2", tre.Denied, id="host did not declare it"),
    pytest.param("host", "ghost", "x", tre.NoSuchDomain, id="host: declared, not installed"),
    pytest.param("host", "listener", "nope", tre.NoSuchMethod, id="host: not offered"),
    pytest.param("notifier", "listener", "secret", tre.Denied, id="callee does not allow"),
    pytest.param("notifier", "listener", "hold", tre.Denied, id="domain did not declare it"),
    pytest.param("notifier", "ghost", "x", tre.NoSuchDomain, id="domain: not installed"),
    pytest.param("notifier", "host", "x", tre.Denied, id="domain to the host"),
]


@pytest.mark.parametrize(("sender", "domain", "method", "expected"), NOTIFY_POLICY_ROWS)
async def test_notifications_obey_the_policy(
    autojump_clock: trio.testing.MockClock,
    sender: str,
    domain: str,
    method: str,
    expected: type[tre.CallError],
):
    async with open_test_tre(listener(), NOTIFIER, host_calls=HOST) as t:
        if sender == "host":
            with pytest.raises(expected):
                t.notify(domain, method, "x")
        else:
            body = {"domain": domain, "method": method, "body": "x"}
            assert await t.call("notifier", "send", body) == expected.code
        await trio.testing.wait_all_tasks_blocked()
        assert PROBE.seen == []


async def test_notification_to_an_isolated_domain_is_denied(
    autojump_clock: trio.testing.MockClock,
):
    iso = spec(Listener, id="listener", isolated=True)
    async with open_test_tre(iso, host_calls={"listener": ["note"]}) as t:
        with pytest.raises(tre.Denied):
            t.notify("listener", "note")


async def test_notification_is_busy_when_the_inbox_is_full(autojump_clock: trio.testing.MockClock):
    async with open_test_tre(listener(quotas={"inbox_depth": 2}), host_calls=HOST) as t:
        t.notify("listener", "hold", 0)
        await PROBE.entered.wait()  # the worker is held; the inbox is empty
        t.notify("listener", "note", 1)
        t.notify("listener", "note", 2)
        with pytest.raises(tre.Busy, match="inbox is full"):
            t.notify("listener", "note", "refused")
        # a call that will not wait is refused the same way
        with pytest.raises(tre.Busy):
            await t.call("listener", "note", "refused", wait=False)
        PROBE.release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert [body for _, _, body in PROBE.seen] == [0, 1, 2]
        t.notify("listener", "note", 3)  # room again
        await trio.testing.wait_all_tasks_blocked()
        assert PROBE.seen[-1] == ("listener", "host", 3)


async def test_notification_errors_never_reach_the_sender(autojump_clock: trio.testing.MockClock):
    async with open_test_tre(listener(), host_calls=HOST) as t:
        t.notify("listener", "refuse")
        await trio.testing.wait_all_tasks_blocked()
        # a ServiceError is recorded, and is not a fault
        assert [(e.kind, e.detail) for e in t.events] == [("notification_error", "refuse: NOPE")]
        assert t.domain("listener").faults == 0
        # any other exception is a fault of the receiver, not of the sender
        t.notify("listener", "crash")
        info = await wait_state(t, "listener", "running", generation=2)
        assert info.faults == 1
        t.notify("listener", "note", "after")
        await trio.testing.wait_all_tasks_blocked()
        assert PROBE.seen == [("listener", "host", "after")]


async def test_notification_to_a_stopped_domain_is_aborted(autojump_clock: trio.testing.MockClock):
    async with open_test_tre(listener(abort={"action": "stop"}), host_calls=HOST) as t:
        t.notify("listener", "crash")
        await wait_state(t, "listener", "stopped")
        with pytest.raises(tre.Aborted):
            t.notify("listener", "note")
