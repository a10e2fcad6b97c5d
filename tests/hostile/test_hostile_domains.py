# mypy: allow-untyped-decorators
"""Hostile domains: whatever one domain does -- flood, crash, hang, poke around its context --
the others keep being served, and it reaches nothing but its own handle.
"""

from __future__ import annotations

import logging
import types
from typing import Any

import pytest
import trio
import trio.testing

import tre
from tests.kernel_helpers import PROBE, allow, call_code, wait_state
from tre._kernel import Kernel
from tre._records import Caller
from tre.testing import open_test_tre, spec

pytestmark = pytest.mark.usefixtures("probe")


class Victim(tre.Domain):
    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        PROBE.instances.append(self)

    @tre.service
    async def ping(self, caller: str, body: Any) -> Any:
        return {"caller": caller}

    @tre.service
    async def slow(self, caller: str, body: Any) -> Any:
        await trio.sleep(1)
        return {"caller": caller}


class Attacker(tre.Domain):
    """Every kind of misbehaviour, on request."""

    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        PROBE.contexts.append(ctx)
        PROBE.instances.append(self)

    @tre.service
    async def flood(self, caller: str, body: Any) -> Any:
        """``n`` back-to-back calls to the victim; the count of each outcome."""
        counts: dict[str, int] = {}
        for _ in range(body["n"]):
            code = await call_code(self.ctx, "victim", body.get("method", "ping"))
            counts[code] = counts.get(code, 0) + 1
        return counts

    @tre.service
    async def swarm(self, caller: str, body: Any) -> Any:
        """``n`` concurrent calls to the victim; the count of each outcome."""
        counts: dict[str, int] = {}

        async def one() -> None:
            code = await call_code(self.ctx, "victim", body.get("method", "ping"))
            counts[code] = counts.get(code, 0) + 1

        async with trio.open_nursery() as nursery:
            for _ in range(body["n"]):
                nursery.start_soon(one)
        return counts

    @tre.service
    async def crash(self, caller: str, body: Any) -> Any:
        raise RuntimeError("attacker crashed")

    @tre.service
    async def hang(self, caller: str, body: Any) -> Any:
        await trio.sleep_forever()

    @tre.service
    async def stubborn(self, caller: str, body: Any) -> Any:
        """Shields itself from cancellation for ``body`` seconds."""
        with trio.CancelScope(shield=True):
            await trio.sleep(body)
        return "too late"

    @tre.service
    async def impersonate(self, caller: str, body: Any) -> Any:
        self.ctx.id = "victim"  # a plain attribute: changing it must change nothing
        return await self.ctx.call("victim", "ping", {"caller": "host"})

    @tre.service
    async def base_exception(self, caller: str, body: Any) -> Any:
        raise Evil("not an Exception")


class Evil(BaseException):
    pass


class Bystander(tre.Domain):
    @tre.service
    async def use(self, caller: str, body: Any) -> Any:
        start = trio.current_time()
        try:
            reply = await self.ctx.call(body["domain"], body["method"], timeout=body.get("timeout"))
        except tre.CallError as exc:
            return {"error": exc.code, "took": trio.current_time() - start}
        return {"reply": reply, "took": trio.current_time() - start}


def victim(**quotas: Any) -> tre.DomainSpec:
    return spec(
        Victim,
        id="victim",
        services={"ping": ["host", "attacker", "bystander"], "slow": ["attacker"]},
        quotas=quotas,
    )


def attacker(**fields: Any) -> tre.DomainSpec:
    return spec(
        Attacker,
        id="attacker",
        services=allow(Attacker, "host", "bystander"),
        calls={"victim": ["ping", "slow"]},
        **fields,
    )


BYSTANDER = spec(
    Bystander,
    id="bystander",
    services={"use": ["host"]},
    calls={"victim": ["ping"], "attacker": ["hang", "stubborn"]},
)
HOST = {
    "attacker": list(Attacker.service_names()),
    "bystander": ["use"],
    "victim": ["ping"],
}


async def bystander_pings(t: tre.TRE) -> Any:
    return await t.call("bystander", "use", {"domain": "victim", "method": "ping"})


async def test_a_flood_is_rate_limited_per_caller(autojump_clock: trio.testing.MockClock):
    async with open_test_tre(
        victim(calls_per_second=10.0, burst=5), attacker(), BYSTANDER, host_calls=HOST
    ) as t:
        assert await t.call("attacker", "flood", {"n": 1000}) == {"OK": 5, "BUSY": 995}
        # the victim's other callers each have their own budget, untouched by the flood
        assert await bystander_pings(t) == {"reply": {"caller": "bystander"}, "took": 0}
        assert await t.call("victim", "ping") == {"caller": "host"}
        assert await t.call("attacker", "flood", {"n": 10}) == {"BUSY": 10}
        await trio.sleep(0.5)  # 0.5 s at 10/s: five more
        assert await t.call("attacker", "flood", {"n": 10}) == {"OK": 5, "BUSY": 5}
        assert t.domain("victim").faults == 0


async def test_a_swarm_is_capped_by_the_attackers_outstanding_quota(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(
        victim(concurrency=8), attacker(quotas={"max_outstanding": 4}), BYSTANDER, host_calls=HOST
    ) as t:
        async with trio.open_nursery() as nursery:
            result: list[Any] = []

            async def swarm() -> None:
                result.append(await t.call("attacker", "swarm", {"n": 50, "method": "slow"}))

            nursery.start_soon(swarm)
            await trio.testing.wait_all_tasks_blocked()
            # while the attacker's calls occupy the victim, a third domain is served at once
            assert await bystander_pings(t) == {"reply": {"caller": "bystander"}, "took": 0}
        assert result == [{"OK": 4, "BUSY": 46}]


async def test_a_domain_crashing_repeatedly_ends_stopped_alone(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(
        victim(), attacker(abort={"max_restarts": 3, "period": 60}), BYSTANDER, host_calls=HOST
    ) as t:
        for generation in (2, 3, 4, None):
            with pytest.raises(tre.Aborted):
                await t.call("attacker", "crash")
            assert await bystander_pings(t) == {"reply": {"caller": "bystander"}, "took": 0}
            state = "stopped" if generation is None else "running"
            await wait_state(t, "attacker", state, generation=generation)
        info = t.domain("attacker")
        assert (info.state, info.generation, info.faults) == ("stopped", 4, 4)
        for _ in range(20):
            with pytest.raises(tre.Aborted):
                await t.call("attacker", "crash")
        for other in ("victim", "bystander"):
            info = t.domain(other)
            assert (info.state, info.generation, info.faults) == ("running", 1, 0)
        assert await t.call("victim", "ping") == {"caller": "host"}


async def test_a_hanging_domain_only_times_out_its_own_callers(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(victim(), attacker(), BYSTANDER, host_calls=HOST) as t:
        results: dict[str, Any] = {}

        async def use(domain: str, method: str) -> None:
            body = {"domain": domain, "method": method, "timeout": 2}
            results[f"{domain}.{method}"] = await t.call("bystander", "use", body)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(use, "attacker", "hang")
            nursery.start_soon(use, "victim", "ping")
        assert results == {
            "attacker.hang": {"error": "TIMEOUT", "took": 2},
            "victim.ping": {"reply": {"caller": "bystander"}, "took": 0},
        }
        assert t.domain("attacker").overruns == 1


async def test_a_handler_shielded_from_cancellation_cannot_hold_its_caller(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(victim(), attacker(), BYSTANDER, host_calls=HOST) as t:
        start = trio.current_time()
        with pytest.raises(tre.CallTimeout):
            await t.call("attacker", "stubborn", 30, timeout=1)
        assert trio.current_time() == start + 1
        assert await bystander_pings(t) == {"reply": {"caller": "bystander"}, "took": 0}


async def test_changing_its_context_id_does_not_change_who_is_calling(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(victim(), attacker(), host_calls=HOST) as t:
        assert await t.call("attacker", "impersonate") == {"caller": "attacker"}


#: The documented Context API (tre/_context.py).
CONTEXT_API = {
    "id",
    "owner_key",
    "ueid",
    "settings",
    "log",
    "generation",
    "keystore",
    "call",
    "notify",
    "watch",
    "start_soon",
    "report",
    "check_report",
    "open_session",
    "accept_session",
    "session",
    "endorse",
    "open_port",
}


async def test_a_context_exposes_exactly_the_documented_api(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(victim(), attacker(), host_calls=HOST):
        (ctx,) = PROBE.contexts
        assert {name for name in dir(ctx) if not name.startswith("_")} == CONTEXT_API
        assert type(ctx) is tre.Context
        assert not hasattr(ctx, "__dict__")  # no place to hang things on it either


def public_reach(root: object, depth: int) -> list[tuple[str, object]]:
    """Every object reachable from ``root`` through public attributes (and the items of
    public mappings and sequences), ``depth`` steps deep."""
    found: list[tuple[str, object]] = []
    seen: set[int] = {id(root)}
    level: list[tuple[str, object]] = [("ctx", root)]
    for _ in range(depth):
        deeper: list[tuple[str, object]] = []
        for path, obj in level:
            if isinstance(obj, types.ModuleType | type):
                continue
            children: list[tuple[str, object]] = []
            for name in dir(obj):
                if name.startswith("_"):
                    continue
                try:
                    children.append((f"{path}.{name}", getattr(obj, name)))
                except Exception:  # a property refusing access is fine
                    continue
            if isinstance(obj, dict | types.MappingProxyType):
                children += [(f"{path}[{k!r}]", v) for k, v in list(obj.items())]
            elif isinstance(obj, list | tuple | set | frozenset):
                children += [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
            for child_path, child in children:
                if id(child) not in seen:
                    seen.add(id(child))
                    found.append((child_path, child))
                    deeper.append((child_path, child))
        level = deeper
    return found


async def test_no_public_path_from_a_context_to_the_kernel_or_other_domains(
    autojump_clock: trio.testing.MockClock,
):
    async with open_test_tre(
        victim(), attacker(), BYSTANDER, host_calls=HOST, settings={"attacker": {"k": [1]}}
    ) as t:
        (ctx,) = PROBE.contexts
        forbidden = (Kernel, Caller, tre.TRE, tre.Domain, tre.Context, trio.Nursery)
        reached = public_reach(ctx, depth=4)
        assert len(reached) > 10  # the walk did walk
        leaks = [path for path, obj in reached if isinstance(obj, forbidden)]
        assert leaks == []
        assert all(obj is not t for _, obj in reached)
        # what a domain does get: its own id, a read-only copy of its settings, a logger
        assert ctx.id == "attacker"
        assert dict(ctx.settings) == {"k": [1]}
        with pytest.raises(TypeError):
            ctx.settings["k"] = "changed"  # type: ignore[index]
        assert isinstance(ctx.log, logging.LoggerAdapter)
        assert ctx.log.logger.name == "tre.domain"
        assert ctx.log.extra == {"domain": "attacker"}


async def test_a_base_exception_from_a_handler_is_only_that_domains_fault(
    autojump_clock: trio.testing.MockClock,
):
    try:
        async with open_test_tre(victim(), attacker(), BYSTANDER, host_calls=HOST) as t:
            with pytest.raises(tre.Aborted):
                await t.call("attacker", "base_exception")
            await wait_state(t, "attacker", "running", generation=2)
            assert await bystander_pings(t) == {"reply": {"caller": "bystander"}, "took": 0}
    except Evil:
        pytest.fail("a domain's BaseException escaped its supervisor")
