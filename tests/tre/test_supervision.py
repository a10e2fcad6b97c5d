# mypy: allow-untyped-decorators
"""Supervision: a domain's failure is caught by its supervisor, which aborts its callers,
applies the manifest's abort action (restart within a budget, stop, propagate), drops the
failed generation's replies and contexts, and tells watching peers.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import trio
import trio.testing

import tre
from tests.kernel_helpers import PROBE, allow, running, wait_state
from tre.testing import open_test_tre, spec

pytestmark = pytest.mark.usefixtures("probe")


class Counter(tre.Domain):
    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        self.n = 0
        PROBE.instances.append((ctx.id, ctx.generation))

    @tre.service
    async def incr(self, caller: str, body: Any) -> Any:
        PROBE.seen.append(("incr", body))
        self.n += 1
        return {"n": self.n, "generation": self.ctx.generation}

    @tre.service
    async def crash(self, caller: str, body: Any) -> Any:
        raise RuntimeError("internal detail 0xdeadbeef")

    @tre.service
    async def crash_when_released(self, caller: str, body: Any) -> Any:
        PROBE.entered.set()
        await PROBE.release.wait()
        return 1 // 0

    @tre.service
    async def slow(self, caller: str, body: Any) -> Any:
        PROBE.entered.set()
        try:
            await trio.sleep(body)
        finally:
            PROBE.cleanup.append("slow")
        return "slow reply"

    @tre.service
    async def shielded(self, caller: str, body: Any) -> Any:
        PROBE.entered.set()
        with trio.CancelScope(shield=True):
            await trio.sleep(body)
        return "late reply of a failed generation"

    @tre.service
    async def stash(self, caller: str, body: Any) -> Any:
        PROBE.contexts.append(self.ctx)
        return self.ctx.generation

    @tre.service
    async def spawn_crash(self, caller: str, body: Any) -> Any:
        async def boom() -> None:
            await trio.sleep(1)
            raise RuntimeError("background task failed")

        self.ctx.start_soon(boom)
        return "spawned"


class Echo(tre.Domain):
    @tre.service
    async def echo(self, caller: str, body: Any) -> Any:
        return body


def counter(**fields: Any) -> tre.DomainSpec:
    return spec(
        Counter,
        id="counter",
        services=allow(Counter, "host", "watcher", "middle"),
        calls={"echo": ["echo"]},
        **fields,
    )


ECHO = spec(Echo, id="echo", services={"echo": ["host", "counter"]})
HOST = {"counter": list(Counter.service_names()), "echo": ["echo"]}


def kinds(t: tre.TRE, domain: str) -> list[str]:
    return [e.kind for e in t.events if e.domain == domain and e.kind != "denied"]


# --- a fault, and the restart -------------------------------------------------------------


async def test_handler_fault_aborts_the_caller_and_restarts_a_fresh_instance(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(counter(), ECHO, host_calls=HOST) as t:
        assert await t.call("counter", "incr") == {"n": 1, "generation": 1}
        assert await t.call("counter", "incr") == {"n": 2, "generation": 1}
        with pytest.raises(tre.Aborted) as info:
            await t.call("counter", "crash")
        # the caller learns that the callee failed, nothing of how
        for leak in ("RuntimeError", "0xdeadbeef", "Traceback"):
            assert leak not in str(info.value)
        assert info.value.__cause__ is None
        info2 = await running(t, "counter", 2)
        assert (info2.generation, info2.faults, info2.restarts) == (2, 1, 1)
        # a fresh instance: the state of the failed generation is gone
        assert await t.call("counter", "incr") == {"n": 1, "generation": 2}
        assert PROBE.instances == [("counter", 1), ("counter", 2)]
        assert kinds(t, "counter") == ["fault", "restart"]
        # the other domain never noticed
        assert await t.call("echo", "echo", "hi") == "hi"
        echo = t.domain("echo")
        assert (echo.state, echo.generation, echo.faults) == ("running", 1, 0)


async def test_queued_callers_of_the_failed_generation_are_aborted(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(counter(quotas={"inbox_depth": 2}), host_calls=HOST) as t:
        outcomes: list[str] = []

        async def call(method: str, body: Any = None) -> None:
            try:
                await t.call("counter", method, body)
            except tre.CallError as exc:
                outcomes.append(f"{method}:{exc.code}")
            else:
                outcomes.append(f"{method}:reply")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "crash_when_released")
            await PROBE.entered.wait()
            nursery.start_soon(call, "incr", "queued 1")
            nursery.start_soon(call, "incr", "queued 2")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(call, "incr", "waiting for room")
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            PROBE.release.set()
        assert trio.current_time() == start  # aborted at once, not at their deadlines
        assert sorted(outcomes) == [
            "crash_when_released:ABORTED",
            "incr:ABORTED",
            "incr:ABORTED",
            "incr:ABORTED",
        ]
        assert PROBE.seen == []  # no queued call reached either generation
        await running(t, "counter", 2)
        assert await t.call("counter", "incr") == {"n": 1, "generation": 2}


async def test_slow_call_in_flight_at_a_fault_is_aborted_once_and_never_replied(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(counter(quotas={"concurrency": 2}), host_calls=HOST) as t:
        outcomes: list[Any] = []

        async def slow() -> None:
            try:
                outcomes.append(await t.call("counter", "slow", 3))
            except tre.CallError as exc:
                outcomes.append((exc.code, trio.current_time()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow)
            await PROBE.entered.wait()
            start = trio.current_time()
            with pytest.raises(tre.Aborted):
                await t.call("counter", "crash")
        assert outcomes == [("ABORTED", start)]
        assert PROBE.cleanup == ["slow"]  # the slow handler was cancelled with its domain
        await running(t, "counter", 2)
        # nothing of the old generation arrives later
        await trio.sleep(10)
        assert outcomes == [("ABORTED", start)]
        assert t.domain("counter").faults == 1


async def test_reply_finished_after_the_fault_is_dropped(autojump_clock: trio.testing.MockClock):
    async with open_test_tre(counter(quotas={"concurrency": 2}), host_calls=HOST) as t:
        outcomes: list[Any] = []

        async def shielded() -> None:
            try:
                outcomes.append(await t.call("counter", "shielded", 1))
            except tre.CallError as exc:
                outcomes.append(exc.code)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(shielded)
            await PROBE.entered.wait()
            with pytest.raises(tre.Aborted):
                await t.call("counter", "crash")
        assert outcomes == ["ABORTED"]


async def test_shutdown_while_a_failed_domain_tears_down_is_clean(
    autojump_clock: trio.testing.MockClock,
):
    async with (
        open_test_tre(counter(quotas={"concurrency": 2}), host_calls=HOST) as t,
        trio.open_nursery() as nursery,
    ):

        async def shielded() -> None:
            with contextlib.suppress(tre.CallError):
                await t.call("counter", "shielded", 1)

        nursery.start_soon(shielded)
        await PROBE.entered.wait()
        t.notify("counter", "crash")  # fails the domain; its teardown takes 1 s
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    # leaving the block must not raise the domain's exception


async def test_a_failing_background_task_is_a_fault(autojump_clock: trio.testing.MockClock):
    async with open_test_tre(counter(), host_calls=HOST) as t:
        assert await t.call("counter", "spawn_crash") == "spawned"
        info = await running(t, "counter", 2)
        assert info.faults == 1
        assert kinds(t, "counter") == ["fault", "restart"]


# --- the abort actions and the restart budget ----------------------------------------------

# Each row: the abort table, then (seconds to wait, then crash) steps, and what is expected
# after each crash: the state and the generation.
BUDGET_ROWS = [
    pytest.param(
        {"max_restarts": 2, "period": 10},
        [(0, "running", 2), (0, "running", 3), (0, "stopped", 3)],
        id="two restarts within the period, then stopped",
    ),
    pytest.param(
        {"max_restarts": 2, "period": 10},
        [(0, "running", 2), (0, "running", 3), (9.5, "stopped", 3)],
        id="still within the period at 9.5 s: stopped",
    ),
    pytest.param(
        {"max_restarts": 2, "period": 10},
        [(0, "running", 2), (10, "running", 3), (0, "running", 4), (0, "stopped", 4)],
        id="a restart older than the period no longer counts",
    ),
    pytest.param(
        {"max_restarts": 2, "period": 10},
        [(0, "running", 2), (0, "running", 3), (10, "running", 4), (0, "running", 5)],
        id="after a quiet period the whole budget is back",
    ),
    pytest.param(
        {"max_restarts": 1, "period": 1},
        [(0, "running", 2)] + [(1, "running", g) for g in range(3, 8)],
        id="one crash per period forever is tolerated",
    ),
    pytest.param({"max_restarts": 0}, [(0, "stopped", 1)], id="max_restarts = 0: no restart"),
    pytest.param({"action": "stop"}, [(0, "stopped", 1)], id="action stop: stopped at once"),
    pytest.param(
        {},
        [(0, "running", 2)] * 1 + [(0, "running", 3), (0, "running", 4), (0, "stopped", 4)],
        id="defaults: 3 in 60 s",
    ),
]


@pytest.mark.parametrize(("abort", "steps"), BUDGET_ROWS)
async def test_restart_budget(
    autojump_clock: trio.testing.MockClock,
    abort: dict[str, Any],
    steps: list[tuple[float, str, int]],
):
    async with open_test_tre(counter(abort=abort), ECHO, host_calls=HOST) as t:
        for faults, (delay, state, generation) in enumerate(steps, start=1):
            await trio.sleep(delay)
            with pytest.raises(tre.Aborted):
                await t.call("counter", "crash")
            info = await wait_state(t, "counter", state, generation=generation)
            assert (info.state, info.generation, info.faults) == (state, generation, faults)
        if steps[-1][1] == "stopped":
            # a stopped domain is final: calls are aborted, it never comes back
            with pytest.raises(tre.Aborted, match="stopped"):
                await t.call("counter", "incr")
            await trio.sleep(3600)
            assert t.domain("counter").state == "stopped"
            with pytest.raises(tre.Aborted, match="stopped"):
                await t.call("counter", "incr")
            assert kinds(t, "counter")[-2:] == ["fault", "stop"]
        else:
            assert await t.call("counter", "incr") == {"n": 1, "generation": steps[-1][2]}
        # other domains kept serving throughout
        assert await t.call("echo", "echo", 1) == 1
        assert t.domain("echo").faults == 0


async def test_propagate_raises_domain_failed_out_of_the_tre(
    autojump_clock: trio.testing.MockClock,
):
    with pytest.raises(tre.DomainFailed) as info:
        async with open_test_tre(
            counter(abort={"action": "propagate"}), ECHO, host_calls=HOST
        ) as t:
            with pytest.raises(tre.Aborted):
                await t.call("counter", "crash")
            await trio.sleep_forever()  # the TRE cancels the block
    assert info.value.domain == "counter"
    assert info.value.code == "DOMAIN_FAILED"
    assert t.domain("counter").state == "stopped"
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_propagate_with_the_hosts_call_in_flight_raises_domain_failed(
    autojump_clock: trio.testing.MockClock,
):
    with pytest.raises(tre.DomainFailed):
        async with open_test_tre(counter(abort={"action": "propagate"}), host_calls=HOST) as t:
            await t.call("counter", "crash")


class Runner(tre.Domain):
    """``run`` fails after 1 s in generation 1; later generations loop forever."""

    async def run(self) -> None:
        PROBE.instances.append((self.ctx.id, self.ctx.generation))
        if self.ctx.generation == 1:
            await trio.sleep(1)
            raise RuntimeError("run failed")
        ticks = 0
        try:
            while True:
                ticks += 1
                await trio.sleep(1)
        finally:
            PROBE.cleanup.append(f"run {self.ctx.generation}")

    @tre.service
    async def ping(self, caller: str, body: Any) -> Any:
        return self.ctx.generation


async def test_a_failure_in_run_counts_like_a_handler_failure(
    autojump_clock: trio.testing.MockClock,
):
    runner = spec(Runner, id="runner", services={"ping": ["host"]})
    async with open_test_tre(runner, ECHO, host_calls={"runner": ["ping"], "echo": ["echo"]}) as t:
        start = trio.current_time()
        assert await t.call("runner", "ping") == 1
        info = await running(t, "runner", 2)
        assert trio.current_time() == start + 1
        assert (info.faults, info.restarts) == (1, 1)
        assert await t.call("runner", "ping") == 2
        assert kinds(t, "runner") == ["fault", "restart"]
        assert t.domain("echo").faults == 0


async def test_propagate_from_run_brings_the_tre_down(autojump_clock: trio.testing.MockClock):
    runner = spec(Runner, id="runner", services={"ping": ["host"]}, abort={"action": "propagate"})
    with pytest.raises(tre.DomainFailed):
        async with open_test_tre(runner, ECHO, host_calls={"echo": ["echo"]}):
            await trio.sleep_forever()


class BadSetup(tre.Domain):
    """``setup`` fails in the generations listed in the settings key ``fail``."""

    async def setup(self) -> None:
        PROBE.instances.append((self.ctx.id, self.ctx.generation))
        if self.ctx.generation in self.ctx.settings["fail"]:
            raise RuntimeError("setup failed")

    @tre.service
    async def ping(self, caller: str, body: Any) -> Any:
        return self.ctx.generation


async def test_setup_failure_at_boot_does_not_block_other_domains(
    autojump_clock: trio.testing.MockClock,
):
    specs = [
        spec(
            BadSetup, id="bad", services={"ping": ["host"]}, boot_order=1, abort={"max_restarts": 2}
        ),
        spec(BadSetup, id="flaky", services={"ping": ["host"]}, boot_order=2),
        spec(Echo, id="echo", services={"echo": ["host"]}, boot_order=3),
    ]
    settings: dict[str, dict[str, Any]] = {"bad": {"fail": range(1, 100)}, "flaky": {"fail": [1]}}
    host = {"bad": ["ping"], "flaky": ["ping"], "echo": ["echo"]}
    async with open_test_tre(*specs, host_calls=host, settings=settings) as t:
        # the domains after the failing ones booted and serve
        assert await t.call("echo", "echo", "up") == "up"
        bad = await t.wait_for("bad", "stopped")
        assert (bad.generation, bad.faults) == (3, 3)
        with pytest.raises(tre.Aborted):
            await t.call("bad", "ping")
        await running(t, "flaky", 2)
        assert await t.call("flaky", "ping") == 2
        # boot order was kept: each generation of bad before flaky's first
        assert PROBE.instances[:4] == [("bad", 1), ("bad", 2), ("bad", 3), ("flaky", 1)]


# --- watchers -----------------------------------------------------------------------------


class Watcher(tre.Domain):
    async def setup(self) -> None:
        self.ctx.watch("counter")

    async def on_domain_down(self, peer: str) -> None:
        PROBE.watch.append(("down", peer, None))

    async def on_domain_up(self, peer: str) -> None:
        # when told "up", the peer already serves: call it
        PROBE.watch.append(("up", peer, await self.ctx.call(peer, "incr", "from watcher")))
        PROBE.up.set()

    @tre.service
    async def try_watch(self, caller: str, body: Any) -> Any:
        try:
            self.ctx.watch(body)
        except tre.CallError as exc:
            return exc.code
        return "watching"


def watcher() -> tre.DomainSpec:
    return spec(
        Watcher,
        id="watcher",
        services={"try_watch": ["host"]},
        calls={"counter": ["incr"], "ghost": ["x"]},
    )


async def test_watchers_are_told_down_then_up(autojump_clock: trio.testing.MockClock):
    async with open_test_tre(
        counter(), watcher(), ECHO, host_calls={**HOST, "watcher": ["try_watch"]}
    ) as t:
        with pytest.raises(tre.Aborted):
            await t.call("counter", "crash")
        await running(t, "counter", 2)
        with trio.fail_after(60):
            await PROBE.up.wait()
        assert PROBE.watch == [
            ("down", "counter", None),
            ("up", "counter", {"n": 1, "generation": 2}),
        ]


async def test_watchers_are_told_down_only_when_the_peer_stops(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(counter(abort={"action": "stop"}), watcher(), host_calls=HOST) as t:
        with pytest.raises(tre.Aborted):
            await t.call("counter", "crash")
        await t.wait_for("counter", "stopped")
        await trio.sleep(10)
        assert PROBE.watch == [("down", "counter", None)]


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        pytest.param("counter", "watching", id="a peer it may call"),
        pytest.param("echo", "DENIED", id="no channel to the peer"),
        pytest.param("ghost", "DENIED", id="declared but not installed"),
        pytest.param("nobody", "DENIED", id="unknown id"),
        pytest.param("watcher", "DENIED", id="itself"),
    ],
)
async def test_a_domain_can_only_watch_peers_it_has_a_channel_to(
    autojump_clock: trio.testing.MockClock, peer: str, expected: str
):
    async with open_test_tre(
        counter(), watcher(), ECHO, host_calls={"watcher": ["try_watch"]}
    ) as t:
        assert await t.call("watcher", "try_watch", peer) == expected


# --- contexts of a failed generation ------------------------------------------------------


async def test_a_stale_context_refuses_to_act_after_a_restart(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(counter(), watcher(), ECHO, host_calls=HOST) as t:
        assert await t.call("counter", "stash") == 1
        with pytest.raises(tre.Aborted):
            await t.call("counter", "crash")
        await running(t, "counter", 2)
        assert await t.call("counter", "stash") == 2
        old, new = PROBE.contexts
        assert (old.generation, new.generation) == (1, 2)
        with pytest.raises(tre.Aborted):
            await old.call("echo", "echo", "stale")
        with pytest.raises(tre.Aborted):
            old.notify("echo", "echo", "stale")
        with pytest.raises(tre.Aborted):
            old.watch("echo")

        async def task() -> None:
            PROBE.seen.append("stale task ran")

        with pytest.raises(tre.Aborted):
            old.start_soon(task)
        # the current generation's context works
        assert await new.call("echo", "echo", "fresh") == "fresh"
        await trio.sleep(1)
        assert "stale task ran" not in PROBE.seen


async def test_the_context_of_a_stopped_domain_refuses_to_act(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(counter(abort={"action": "stop"}), ECHO, host_calls=HOST) as t:
        assert await t.call("counter", "stash") == 1
        with pytest.raises(tre.Aborted):
            await t.call("counter", "crash")
        await t.wait_for("counter", "stopped")
        (old,) = PROBE.contexts
        with pytest.raises(tre.Aborted):
            await old.call("echo", "echo", "from beyond")


async def test_an_uncaught_call_error_in_a_handler_is_an_upstream_error(
    autojump_clock: trio.testing.MockClock,
):
    # A nested call's error that a handler does not catch (here ABORTED from a stopped peer)
    # came from outside: the intermediary answers REMOTE_ERROR UPSTREAM_<code> and carries on.
    middle = spec(Middle, id="middle", services={"forward": ["host"]}, calls={"counter": ["incr"]})
    async with open_test_tre(
        counter(abort={"action": "stop"}), middle, host_calls={**HOST, "middle": ["forward"]}
    ) as t:
        assert await t.call("middle", "forward") == {"n": 1, "generation": 1}
        with pytest.raises(tre.Aborted):
            await t.call("counter", "crash")
        await t.wait_for("counter", "stopped")
        with pytest.raises(tre.RemoteError) as exc:
            await t.call("middle", "forward")
        assert exc.value.remote_code == "UPSTREAM_ABORTED"
        assert "counter" not in str(exc.value)  # says nothing about who middle called
        info = t.domain("middle")
        assert (info.state, info.generation, info.faults) == ("running", 1, 0)


class Middle(tre.Domain):
    @tre.service
    async def forward(self, caller: str, body: Any) -> Any:
        return await self.ctx.call("counter", "incr", body)
