# mypy: allow-untyped-decorators
"""Every call has a deadline: TIMEOUT outcomes, exact timing under the MockClock, handlers
cancelled when nobody waits for them any more, and the kernel's deadline heap staying small.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing

import tre
from tests.kernel_helpers import PROBE, allow
from tre.testing import open_test_tre, spec

pytestmark = pytest.mark.usefixtures("probe")


class Hang(tre.Domain):
    """``hang`` awaits forever (until cancelled); ``quick`` answers at once."""

    @tre.service
    async def hang(self, caller: str, body: Any) -> Any:
        PROBE.seen.append(body)
        PROBE.entered.set()
        try:
            await trio.sleep_forever()
        finally:
            PROBE.cancelled.append((body, trio.current_time()))

    @tre.service
    async def quick(self, caller: str, body: Any) -> Any:
        PROBE.seen.append(body)
        return body

    @tre.service
    async def hold(self, caller: str, body: Any) -> Any:
        await PROBE.hold(body)
        return body


class Middle(tre.Domain):
    """Forwards to ``hang.hang``: its own handler is cancelled if its caller gives up."""

    @tre.service
    async def forward(self, caller: str, body: Any) -> Any:
        return await self.ctx.call("hang", "hang", body, timeout=body["timeout"])


def hang_spec(**fields: Any) -> tre.DomainSpec:
    return spec(Hang, id="hang", services=allow(Hang, "host", "middle"), **fields)


HOST = {"hang": ["hang", "quick", "hold"]}


# --- exact timing -------------------------------------------------------------------------

TIMING_ROWS = [
    pytest.param(None, 5.0, 5.0, id="no timeout: the manifest default of 5 s"),
    pytest.param(None, 1.5, 1.5, id="no timeout: the callee's default_deadline"),
    pytest.param(0.25, 1.5, 0.25, id="an explicit shorter timeout overrides"),
    pytest.param(3.0, 1.5, 3.0, id="an explicit longer timeout overrides"),
    pytest.param(2.5, 5.0, 2.5, id="explicit timeout"),
    pytest.param(0.001, 5.0, 0.001, id="a tiny timeout"),
]


@pytest.mark.parametrize(("timeout", "default", "expected"), TIMING_ROWS)
async def test_call_times_out_at_exactly_start_plus_timeout(
    autojump_clock: trio.testing.MockClock, timeout: float | None, default: float, expected: float
):
    fields: dict[str, Any] = {} if default == 5.0 else {"default_deadline": default}
    async with open_test_tre(hang_spec(**fields), host_calls=HOST) as t:
        start = trio.current_time()
        with pytest.raises(tre.CallTimeout):
            await t.call("hang", "hang", "x", timeout=timeout)
        assert trio.current_time() == start + expected


@pytest.mark.parametrize(
    "timeout",
    [
        0,
        0.0,
        -1,
        -0.5,
        math.nan,
        math.inf,
    ],
)
async def test_a_timeout_must_be_positive(autojump_clock: trio.testing.MockClock, timeout: float):
    async with open_test_tre(hang_spec(), host_calls=HOST) as t:
        with pytest.raises(ValueError, match="timeout"):
            await t.call("hang", "quick", 1, timeout=timeout)
        assert PROBE.seen == []


async def test_hung_handler_is_cancelled_at_its_callers_deadline(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(hang_spec(), host_calls=HOST) as t:
        start = trio.current_time()
        with pytest.raises(tre.CallTimeout):
            await t.call("hang", "hang", "first", timeout=2)
        await trio.testing.wait_all_tasks_blocked()
        # the handler got the cancellation at the deadline (its cleanup ran then)...
        assert PROBE.cancelled == [("first", start + 2)]
        info = t.domain("hang")
        assert info.overruns == 1
        # ...which is not a fault: same generation, and it serves the next call at once
        assert (info.state, info.generation, info.faults) == ("running", 1, 0)
        assert await t.call("hang", "quick", "next") == "next"
        assert trio.current_time() == start + 2
        assert [e.kind for e in t.events if e.domain == "hang"] == ["overrun"]
        # and again
        with pytest.raises(tre.CallTimeout):
            await t.call("hang", "hang", "second", timeout=1)
        await trio.testing.wait_all_tasks_blocked()
        assert t.domain("hang").overruns == 2
        assert await t.call("hang", "quick", "again") == "again"


async def test_concurrent_calls_expire_in_deadline_order(autojump_clock: trio.testing.MockClock):
    timeouts = [5.0, 1.0, 3.0, 0.5, 4.0, 2.0, 1.5]
    hang = hang_spec(quotas={"concurrency": len(timeouts)})
    async with open_test_tre(hang, host_calls=HOST) as t:
        start = trio.current_time()
        expired: list[tuple[float, float]] = []

        async def call(timeout: float) -> None:
            with pytest.raises(tre.CallTimeout):
                await t.call("hang", "hang", timeout, timeout=timeout)
            expired.append((timeout, trio.current_time() - start))

        async with trio.open_nursery() as nursery:
            for timeout in timeouts:
                nursery.start_soon(call, timeout)
        assert expired == [(x, x) for x in sorted(timeouts)]
        # every handler was cancelled at its own caller's deadline
        assert sorted(PROBE.cancelled) == [(x, start + x) for x in sorted(timeouts)]
        assert t.domain("hang").overruns == len(timeouts)


async def test_queued_call_times_out_and_is_never_served(autojump_clock: trio.testing.MockClock):
    async with open_test_tre(hang_spec(), host_calls=HOST) as t:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(t.call, "hang", "hold", "holder")
            await PROBE.entered.wait()
            start = trio.current_time()
            with pytest.raises(tre.CallTimeout):
                await t.call("hang", "quick", "queued", timeout=1)
            assert trio.current_time() == start + 1
            PROBE.release.set()
        assert await t.call("hang", "quick", "after") == "after"
        assert PROBE.seen == ["holder", "after"]


async def test_call_waiting_for_inbox_room_times_out_at_its_deadline(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(hang_spec(quotas={"inbox_depth": 1}), host_calls=HOST) as t:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(t.call, "hang", "hold", "in the handler")
            await PROBE.entered.wait()
            nursery.start_soon(t.call, "hang", "hold", "in the inbox")
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            with pytest.raises(tre.CallTimeout, match="inbox"):
                await t.call("hang", "quick", "waiting for room", timeout=0.75)
            assert trio.current_time() == start + 0.75
            PROBE.release.set()
        assert PROBE.seen == ["in the handler", "in the inbox"]


async def test_call_waiting_for_inbox_room_gets_in_when_room_frees(
    autojump_clock: trio.testing.MockClock,
):
    async with (
        open_test_tre(hang_spec(quotas={"inbox_depth": 1}), host_calls=HOST) as t,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(t.call, "hang", "hold", "in the handler")
        await PROBE.entered.wait()
        nursery.start_soon(t.call, "hang", "hold", "in the inbox")
        await trio.testing.wait_all_tasks_blocked()

        async def release_later() -> None:
            await trio.sleep(1)
            PROBE.release.set()

        nursery.start_soon(release_later)
        start = trio.current_time()
        assert await t.call("hang", "quick", "waited", timeout=2) == "waited"
        assert trio.current_time() == start + 1


# --- the deadline heap --------------------------------------------------------------------


async def test_deadline_heap_is_empty_after_sequential_calls(
    autojump_clock: trio.testing.MockClock,
):
    fast = {"calls_per_second": 1e9, "burst": 1_000_000}
    async with open_test_tre(hang_spec(quotas=fast), host_calls=HOST) as t:
        deadlines = t._kernel.deadlines
        for i in range(10_000):
            await t.call("hang", "quick", i)
            assert len(deadlines) == 0
        assert t.domain("hang").served == 10_000


async def test_deadline_heap_stays_bounded_below_a_pending_call(
    autojump_clock: trio.testing.MockClock,
):
    # A long-pending call with the EARLIEST deadline sits on top of the heap, so finished
    # calls below it cannot be popped from the top: compaction must keep the heap bounded.
    fast = {"calls_per_second": 1e9, "burst": 1_000_000}
    blocker = spec(Hang, id="blocker", services=allow(Hang, "host"))
    async with open_test_tre(
        hang_spec(quotas=fast), blocker, host_calls={**HOST, "blocker": ["hold"]}
    ) as t:
        deadlines = t._kernel.deadlines
        async with trio.open_nursery() as nursery:
            nursery.start_soon(t.call, "blocker", "hold", "pending")
            await PROBE.entered.wait()
            largest = 0
            for i in range(10_000):
                await t.call("hang", "quick", i, timeout=60)
                largest = max(largest, len(deadlines))
            assert largest <= 2048
            PROBE.release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert len(deadlines) <= 2048
        # the pending call kept its own deadline all along
        assert PROBE.cancelled == []


# --- handlers nobody waits for any more ---------------------------------------------------


async def test_overrun_leaves_no_inflight_record(autojump_clock: trio.testing.MockClock):
    async with open_test_tre(hang_spec(), host_calls=HOST) as t:
        for i in range(5):
            with pytest.raises(tre.CallTimeout):
                await t.call("hang", "hang", i, timeout=1)
            await trio.testing.wait_all_tasks_blocked()
        assert t.domain("hang").overruns == 5
        # the calls are over: the kernel keeps nothing about them
        assert len(t._kernel.domains["hang"].inflight) == 0


ABANDON = (
    "BUG: a call abandoned by its caller (the caller's task is cancelled) leaves the callee's "
    "handler running: ReplySlot.wait's abort marks the slot done, prune() drops it from the "
    "deadline heap, and the deadline task never cancels slot.serving, so a hung handler wedges "
    "the callee's worker forever"
)


async def test_handler_of_an_abandoned_call_is_cancelled(autojump_clock: trio.testing.MockClock):
    async with open_test_tre(hang_spec(), host_calls=HOST) as t:
        start = trio.current_time()
        with trio.move_on_after(1):
            await t.call("hang", "hang", "abandoned", timeout=2)
        # nobody waits for the handler any more: by the call's own deadline at the latest it
        # must have been cancelled, and the domain must serve again
        await trio.sleep(2)
        assert [body for body, _ in PROBE.cancelled] == ["abandoned"]
        assert PROBE.cancelled[0][1] <= start + 2
        with trio.fail_after(10):
            assert await t.call("hang", "quick", "next", timeout=1) == "next"


async def test_nested_call_of_a_timed_out_caller_is_cancelled(
    autojump_clock: trio.testing.MockClock,
):
    # host -(1 s)-> middle -(2 s)-> hang: at 1 s middle's handler is cancelled, which abandons
    # its call to hang; hang's handler must not stay wedged past its own call's deadline.
    specs = [
        hang_spec(),
        spec(Middle, id="middle", services=allow(Middle, "host"), calls={"hang": ["hang"]}),
    ]
    async with open_test_tre(*specs, host_calls={**HOST, "middle": ["forward"]}) as t:
        start = trio.current_time()
        with pytest.raises(tre.CallTimeout):
            await t.call("middle", "forward", {"timeout": 2}, timeout=1)
        assert trio.current_time() == start + 1
        await trio.sleep(5)
        assert t.domain("middle").overruns == 1
        assert len(PROBE.cancelled) == 1
        assert PROBE.cancelled[0][1] <= start + 2
        with trio.fail_after(10):
            assert await t.call("hang", "quick", "next", timeout=1) == "next"
