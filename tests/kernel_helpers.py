"""Scaffolding shared by the kernel tests (tests/tre/test_kernel_*.py, test_deadlines.py,
test_supervision.py, tests/hostile/test_hostile_domains.py).

Domain classes live at module level, so they cannot close over a per-test object: they
record what they see into :data:`PROBE`, one module-level :class:`Probe` that the ``probe``
fixture resets before each test. A test module opts in with::

    from tests.kernel_helpers import PROBE

    pytestmark = pytest.mark.usefixtures("probe")

(tests/conftest.py registers this module as a pytest plugin, which makes the fixture
visible everywhere under tests/.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio

import tre

__all__ = ["PROBE", "Probe", "allow", "call_code", "probe", "running", "wait_state"]


class Probe:
    """What the domains of one test saw. Each test module's domains use the fields they
    need; the rest stay empty. The recorded shapes differ between modules on purpose, so
    the lists that hold different things in different modules are typed ``list[Any]``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        # (domain, caller, body) in the call and notification tests; the bare body, or a
        # (service, body) pair, in the deadline and supervision tests
        self.seen: list[Any] = []
        self.isolated: list[Any] = []  # what an isolated domain's own call got
        self.cancelled: list[Any] = []  # (body, time) of each cancelled handler
        # (handler, time) in the shutdown tests; the handler's name in the supervision tests
        self.cleanup: list[Any] = []
        # (domain, generation) in the supervision tests; the instances themselves in the
        # hostile tests
        self.instances: list[Any] = []
        self.watch: list[tuple[str, str, Any]] = []  # (event, peer, detail) told to a watcher
        self.contexts: list[tre.Context] = []
        self.entered = trio.Event()  # a handler has started
        self.release = trio.Event()  # the test lets held handlers go on
        self.up = trio.Event()  # a watcher was told a peer is up again

    async def hold(self, seen: Any) -> None:
        """For a handler that blocks: record ``seen`` (in the module's own shape), tell the
        test a handler has started, and wait until the test sets :attr:`release`."""
        self.seen.append(seen)
        self.entered.set()
        await self.release.wait()


PROBE = Probe()


@pytest.fixture
def probe() -> Iterator[Probe]:
    """A fresh :data:`PROBE` for the test (use it via ``pytest.mark.usefixtures``)."""
    PROBE.reset()
    yield PROBE


def allow(cls: type[tre.Domain], *callers: str) -> dict[str, list[str]]:
    """Every service of ``cls`` allowed to ``callers``."""
    return {name: list(callers) for name in cls.service_names()}


async def call_code(ctx: tre.Context, domain: str, method: str, body: Any = None) -> str:
    """``"OK"`` if ``ctx.call(domain, method, body)`` replies, else its CallError's code."""
    try:
        await ctx.call(domain, method, body)
    except tre.CallError as exc:
        return exc.code
    return "OK"


async def wait_state(
    t: tre.TRE, domain: str, state: str, *, generation: int | None = None
) -> tre.DomainInfo:
    """``t.wait_for(...)``, failing the test if it takes over 60 s (of the test's clock)."""
    with trio.fail_after(60):
        return await t.wait_for(domain, state, generation=generation)


async def running(t: tre.TRE, domain: str, generation: int) -> tre.DomainInfo:
    """Wait (at most 60 s) until ``domain`` runs its generation ``generation`` or later."""
    return await wait_state(t, domain, "running", generation=generation)
