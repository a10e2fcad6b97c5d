# mypy: allow-untyped-decorators
"""Shutdown: leaving ``async with open_tre(...)`` cancels every domain cleanly, whatever they
are doing, and lets the block's own exception out unchanged.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import tre
from tests.kernel_helpers import PROBE
from tre.testing import open_test_tre, spec

pytestmark = pytest.mark.usefixtures("probe")


class Busy(tre.Domain):
    """A ``run`` that loops forever and a handler that never returns."""

    async def run(self) -> None:
        ticks = 0
        try:
            while True:
                ticks += 1
                await trio.sleep(0.5)
        finally:
            PROBE.cleanup.append(("run", trio.current_time()))

    @tre.service
    async def hang(self, caller: str, body: Any) -> Any:
        PROBE.entered.set()
        try:
            await trio.sleep_forever()
        finally:
            PROBE.cleanup.append(("hang", trio.current_time()))

    @tre.service
    async def echo(self, caller: str, body: Any) -> Any:
        return body


BUSY = spec(Busy, id="busy", services={"hang": ["host"], "echo": ["host"]})
OTHER = spec(Busy, id="other", services={"hang": ["host"], "echo": ["host"]})
HOST = {"busy": ["hang", "echo"], "other": ["echo"]}


async def test_leaving_the_block_cancels_running_domains_at_once(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(BUSY, OTHER, host_calls=HOST) as t:
        await trio.sleep(1.25)  # the run() loops are sleeping
        assert await t.call("busy", "echo", 1) == 1
        stop = trio.current_time()
    assert trio.current_time() == stop
    assert sorted(PROBE.cleanup) == [("run", stop), ("run", stop)]


async def test_leaving_the_block_cancels_a_handler_in_the_middle_of_a_call(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(BUSY, host_calls=HOST) as t:
        outcome: list[Any] = []

        async def caller() -> None:
            try:
                await t.call("busy", "hang", timeout=100)
            except BaseException as exc:
                outcome.append(type(exc))
                raise

        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller)
            await PROBE.entered.wait()
            nursery.cancel_scope.cancel()
        assert outcome == [trio.Cancelled]
        stop = trio.current_time()
    assert trio.current_time() == stop  # nobody waited for the 100 s deadline
    assert sorted(PROBE.cleanup) == [("hang", stop), ("run", stop)]


class Oops(Exception):
    pass


async def test_an_exception_in_the_block_propagates_unchanged(
    autojump_clock: trio.testing.MockClock,
):
    error = Oops("from the test body")
    with pytest.raises(Oops) as info:
        async with open_test_tre(BUSY, OTHER, host_calls=HOST) as t:
            assert await t.call("busy", "echo", 1) == 1
            raise error
    assert info.value is error
    assert not isinstance(info.value, BaseExceptionGroup)
    assert len(PROBE.cleanup) == 2


async def test_an_exception_in_the_block_propagates_unchanged_while_a_handler_hangs(
    autojump_clock: trio.testing.MockClock,
):
    error = Oops("from the test body")
    with pytest.raises(Oops) as info:
        async with open_test_tre(BUSY, host_calls=HOST) as t:
            t.notify("busy", "hang")
            await PROBE.entered.wait()
            raise error
    assert info.value is error
    assert sorted(name for name, _ in PROBE.cleanup) == ["hang", "run"]


async def test_a_call_error_in_the_block_propagates_unchanged(
    autojump_clock: trio.testing.MockClock,
):
    with pytest.raises(tre.Denied):
        async with open_test_tre(BUSY, host_calls=HOST) as t:
            await t.call("other", "hang")  # not granted to the host


async def test_a_cancelled_block_ends_quietly(autojump_clock: trio.testing.MockClock):
    with trio.move_on_after(2) as scope:
        async with open_test_tre(BUSY, host_calls=HOST) as t:
            assert await t.call("busy", "echo", 1) == 1
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert [name for name, _ in PROBE.cleanup] == ["run"]


SHUTDOWN = (
    "BUG: shutdown (cancellation) neither fails pending calls nor marks domains stopped: "
    "supervise() re-raises Cancelled without _abort_inflight(), the deadline task dies with "
    "the nursery, and states stay 'running', so a call in flight at shutdown, or made "
    "through the handle afterwards, parks forever on its ReplySlot"
)


async def test_a_call_in_flight_from_outside_is_aborted_at_shutdown(
    autojump_clock: trio.testing.MockClock,
):
    outcome: list[Any] = []
    done = trio.Event()
    async with trio.open_nursery() as outside:
        async with open_test_tre(BUSY, host_calls=HOST) as t:

            async def caller() -> None:
                try:
                    await t.call("busy", "hang", timeout=5)
                except tre.CallError as exc:
                    outcome.append(exc.code)
                done.set()

            outside.start_soon(caller)
            await PROBE.entered.wait()
        with trio.fail_after(60):
            await done.wait()
    assert outcome == ["ABORTED"]


async def test_a_closed_tre_refuses_calls(autojump_clock: trio.testing.MockClock):
    async with open_test_tre(BUSY, host_calls=HOST) as t:
        pass
    assert t.domain("busy").state == "stopped"
    with trio.fail_after(60), pytest.raises(tre.Aborted):
        await t.call("busy", "echo", 1)
