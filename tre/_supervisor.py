"""Supervision: each domain runs in its own task group under a supervisor task.

A domain's exception never reaches the kernel's nursery. The moment a domain's code raises,
the kernel aborts its in-flight callers (ABORTED) and its context stops acting
(:meth:`Kernel.fault`); once its task group has torn down, the supervisor starts a fresh
inbox and a fresh generation (so late replies are dropped), tells watching peers
``domain_down``/``domain_up``, and applies the manifest's abort action: ``restart`` (at most
``max_restarts`` within ``period`` seconds, like OTP's one_for_one; past the budget the
domain is stopped), ``stop``, or ``propagate`` (raise :class:`~tre.DomainFailed` and bring
the TRE down). When the TRE itself shuts down, each domain is stopped and its callers
aborted, so no call is left waiting.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any

import trio

from ._context import Context
from ._errors import DomainFailed
from ._kernel import PASSTHROUGH, Kernel
from ._lifecycle import DomainState
from ._records import DomainRuntime
from ._worker import worker

__all__ = ["supervise"]

log = logging.getLogger("tre.supervisor")


_FINAL = frozenset({DomainState.LOCKED, DomainState.STOPPED})


def _split(exc: BaseException) -> tuple[BaseException | None, BaseException | None]:
    """(what must propagate: the TRE's cancellation and the like, the domain's own fault)."""
    if isinstance(exc, BaseExceptionGroup):
        own, rest = exc.split(PASSTHROUGH)
        fault: BaseException | None = rest
        while isinstance(fault, BaseExceptionGroup):  # the first leaf is the fault to report
            fault = fault.exceptions[0]
        return own, fault
    return (exc, None) if isinstance(exc, PASSTHROUGH) else (None, exc)


def _within_budget(rt: DomainRuntime, now: float) -> bool:
    policy = rt.spec.manifest.abort
    if rt.restart_times is None:
        rt.restart_times = collections.deque()
    times = rt.restart_times
    while times and times[0] <= now - policy.period:
        times.popleft()
    if len(times) >= policy.max_restarts:
        return False
    times.append(now)
    return True


async def _run_generation(
    kernel: Kernel, rt: DomainRuntime, on_running: Callable[[], None]
) -> None:
    """One generation of a domain: build, set up, serve. Ends only by raising."""
    cls = rt.spec.cls
    ctx = Context(kernel, rt)
    async with trio.open_nursery() as nursery:
        rt.nursery = nursery
        instance = cls(ctx)
        # A hung setup() must not hold up the rest of the boot.
        with trio.fail_after(rt.default_deadline):
            await instance.setup()
        handlers = {name: getattr(instance, attr) for name, attr in cls.service_names().items()}
        for _ in range(rt.spec.manifest.quotas.concurrency):
            nursery.start_soon(worker, kernel, rt, instance, handlers)
        if cls.has_run():
            nursery.start_soon(kernel.guarded, rt, instance.run)  # type: ignore[attr-defined]
        kernel.set_state(rt, DomainState.RUNNING)
        on_running()


async def supervise(
    kernel: Kernel, rt: DomainRuntime, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Keep ``rt`` running according to its abort action. ``task_status.started()`` is
    called once the first generation runs, or once it has failed, so that boot goes on
    either way (a restart then continues in the background). :meth:`Kernel.lock` ends it
    through ``rt.scope``."""
    with trio.CancelScope() as rt.scope:
        await _supervise(kernel, rt, task_status)


async def _supervise(kernel: Kernel, rt: DomainRuntime, task_status: Any) -> None:
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
        rt.live = rt.generation
        kernel.set_state(rt, DomainState.BOOTING)
        try:
            await _run_generation(kernel, rt, on_running)
            raise RuntimeError("the domain's task group ended")  # pragma: no cover
        except BaseException as exc:
            rt.nursery = None
            # Its port claims end with the generation, whatever ended it, before any restart.
            kernel.ports.release(rt)
            own, fault = _split(exc)
            if own is not None:  # the TRE is shutting down, or the domain was locked
                if rt.state is not DomainState.LOCKED:
                    kernel.stop(rt, "the TRE is shutting down")
                raise own from None
            if rt.state in _FINAL:  # locked or stopped on purpose: not a fault
                return
            assert fault is not None
        rt.faults += 1
        rt.last_fault = type(fault).__name__
        kernel.fault(rt)
        log.warning("domain %s failed (generation %d): %s", rt.id, rt.generation, rt.last_fault)
        kernel.record("fault", rt.id, f"generation {rt.generation}: {rt.last_fault}")
        kernel.abort_inflight(rt, f"{rt.id!r} failed while serving the call")
        rt.inbox_send.close()
        rt.inbox_recv.close()
        rt.new_inbox()
        kernel.announce(rt, "domain_down")
        release_boot()
        policy = rt.spec.manifest.abort
        if policy.action == "propagate":
            kernel.stop(rt, f"{rt.id!r} failed")
            kernel.record("propagate", rt.id, rt.last_fault)
            raise DomainFailed(rt.id, rt.last_fault) from fault
        if policy.action == "stop" or not _within_budget(rt, trio.current_time()):
            kernel.stop(rt, f"{rt.id!r} is stopped")
            why = "abort action is stop" if policy.action == "stop" else "restart budget spent"
            kernel.record("stop", rt.id, why)
            return
        kernel.record("restart", rt.id, f"generation {rt.generation + 1}")
