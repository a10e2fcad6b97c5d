"""Supervision: each domain runs in its own task group under a supervisor task.

A domain's exception never reaches the kernel's nursery. The supervisor catches it, aborts
the domain's in-flight callers (ABORTED), starts a fresh inbox and a fresh generation so
late replies are dropped, tells watching peers ``domain_down``/``domain_up``, and applies
the manifest's abort action: ``restart`` (within ``max_restarts`` per ``period`` seconds, as
OTP's one_for_one; past the budget the domain is stopped), ``stop``, or ``propagate``
(raise :class:`~tre.DomainFailed` and bring the TRE down).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from ._context import Context
from ._errors import Aborted, DomainFailed
from ._kernel import CHAIN, DomainRuntime, Kernel
from ._lifecycle import DomainState

__all__ = ["supervise"]

log = logging.getLogger("tre.supervisor")


def _fault_of(exc: BaseException) -> Exception | None:
    """The domain's own failure inside ``exc``, or None when ``exc`` must propagate
    (cancellation of the TRE, KeyboardInterrupt, SystemExit...)."""
    if isinstance(exc, BaseExceptionGroup):
        leaves: list[BaseException] = []
        stack: list[BaseException] = [exc]
        while stack:
            e = stack.pop()
            if isinstance(e, BaseExceptionGroup):
                stack.extend(e.exceptions)
            else:
                leaves.append(e)
        if any(not isinstance(e, Exception) for e in leaves):
            return None
        return next((e for e in leaves if isinstance(e, Exception)), None)
    return exc if isinstance(exc, Exception) else None


def _within_budget(rt: DomainRuntime, now: float) -> bool:
    policy = rt.spec.manifest.abort
    times = rt.restart_times
    while times and times[0] <= now - policy.period:
        times.popleft()
    if len(times) >= policy.max_restarts:
        return False
    times.append(now)
    return True


async def _run_domain(kernel: Kernel, rt: DomainRuntime, on_running: Callable[[], None]) -> None:
    """One generation of a domain: build, set up, serve. Returns only by raising."""
    cls = rt.spec.cls
    ctx = Context(kernel, rt)
    async with trio.open_nursery() as nursery:
        rt.nursery = nursery
        CHAIN.set((rt.id,))
        instance = cls(ctx)
        await instance.setup()
        handlers = {name: getattr(instance, attr) for name, attr in cls.service_names().items()}
        for _ in range(rt.spec.manifest.quotas.concurrency):
            nursery.start_soon(kernel.worker, rt, instance, handlers)
        if cls.has_run():
            nursery.start_soon(instance.run)  # type: ignore[attr-defined]
        kernel.set_state(rt, DomainState.RUNNING)
        on_running()


async def supervise(
    kernel: Kernel, rt: DomainRuntime, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Keep ``rt`` running according to its abort action. ``task_status.started()`` is
    called once the first generation runs, or once it has failed, so that boot goes on
    either way (a restart then continues in the background)."""
    booted = False

    def release_boot() -> bool:
        nonlocal booted
        if booted:
            return False
        booted = True
        task_status.started()
        return True

    def on_running() -> None:
        if not release_boot():
            kernel.announce(rt, "domain_up")

    while True:
        rt.generation += 1
        kernel.set_state(rt, DomainState.BOOTING)
        try:
            await _run_domain(kernel, rt, on_running)
            fault: Exception = RuntimeError("task group ended")  # pragma: no cover
        except BaseException as exc:
            rt.nursery = None
            caught = _fault_of(exc)
            if caught is None:
                raise
            fault = caught
        rt.faults += 1
        rt.last_fault = type(fault).__name__
        kernel.set_state(rt, DomainState.FAILED)
        log.warning("domain %s failed (generation %d): %s", rt.id, rt.generation, rt.last_fault)
        kernel.record("fault", rt.id, f"generation {rt.generation}: {rt.last_fault}")
        _abort_inflight(rt)
        kernel.announce(rt, "domain_down")
        release_boot()
        policy = rt.spec.manifest.abort
        if policy.action == "propagate":
            kernel.set_state(rt, DomainState.STOPPED)
            kernel.record("propagate", rt.id, rt.last_fault)
            raise DomainFailed(rt.id, rt.last_fault) from fault
        if policy.action == "stop" or not _within_budget(rt, trio.current_time()):
            kernel.set_state(rt, DomainState.STOPPED)
            why = "abort action is stop" if policy.action == "stop" else "restart budget spent"
            kernel.record("stop", rt.id, why)
            return
        kernel.record("restart", rt.id, f"generation {rt.generation + 1}")


def _abort_inflight(rt: DomainRuntime) -> None:
    """Fail every queued or running call of the failed generation; start a fresh inbox."""
    for slot in list(rt.inflight):
        slot.fail(Aborted(f"{rt.id!r} failed while serving the call"))
    rt.inflight.clear()
    rt.inbox_send.close()
    rt.inbox_recv.close()
    rt.new_inbox()
