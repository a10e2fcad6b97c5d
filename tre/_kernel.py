"""The mediating kernel: routes, the call path, faults.

Mediation runs in the caller's task, like a system call: route lookup (policy compiled at
boot), liveness and re-entry checks, quotas, encode, then the frame goes into the callee's
bounded inbox with a one-shot reply slot and the caller parks on the slot. Nothing on this
path depends on how many domains are installed. Deadlines are enforced by one kernel task
(:mod:`._deadlines`), not a cancel scope per call. The callee side is in :mod:`._worker`.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

import ipc

from ._bucket import TokenBucket
from ._config import TREConfig
from ._deadlines import DeadlineQueue
from ._device import Device, TREEvent
from ._errors import Aborted, Busy, CallTimeout, Denied, Locked, TooLarge, error_for_code
from ._evidence import EvidenceMaker
from ._integrity import IntegrityMonitor
from ._lifecycle import ACCEPTING, DomainState, check_transition
from ._loader import DomainSpec
from ._manifest import HOST
from ._policy import Policy
from ._ports import PortRegistry
from ._records import CURRENT, Caller, DomainRuntime, Item, KernelEvent, Route
from ._slot import ReplySlot

__all__ = ["PASSTHROUGH", "Kernel"]

log = logging.getLogger("tre.kernel")

#: Kernel events kept in memory for inspection (oldest dropped first).
EVENT_HISTORY = 1000
#: Exceptions that are never a domain's fault: they belong to the TRE (its shutdown) or
#: to the process, and pass through supervision untouched.
PASSTHROUGH = (trio.Cancelled, KeyboardInterrupt, SystemExit, GeneratorExit)
_DISCONNECTED = (trio.BrokenResourceError, trio.ClosedResourceError)


def _not_live(caller: Caller) -> Aborted:
    return Aborted(
        f"this context of {caller.id!r} is no longer live (failed, restarted or stopped)"
    )


def _not_accepting(callee: DomainRuntime) -> Aborted | Locked:
    if callee.state is DomainState.LOCKED:
        return Locked(f"{callee.id!r} is locked")
    return Aborted(f"{callee.id!r} is {callee.state.value}")


class Kernel:
    def __init__(self, config: TREConfig, specs: Iterable[DomainSpec], device: Device) -> None:
        self.config = config
        self.device = device
        self.specs = list(specs)
        self.domains: dict[str, DomainRuntime] = {
            s.id: DomainRuntime(s, dict(config.settings.get(s.id, {}))) for s in self.specs
        }
        self.host = Caller(HOST, config.host.max_outstanding, ipc.DEFAULT_LIMITS.max_frame_bytes)
        self.policy = Policy.compile(
            (s.manifest for s in self.specs), config.host.calls, ports=config.ports
        )
        self.events: collections.deque[KernelEvent] = collections.deque(maxlen=EVENT_HISTORY)
        self.deadlines = DeadlineQueue(self._expire)
        self.codec = ipc.LocalCodec()
        #: made at boot, once the domains' keys are ready (see tre/_evidence.py)
        self.evidence: EvidenceMaker
        self.changed = trio.Event()
        self._msgid = 0
        #: trio time of the latest call or notification (the integrity monitor's dormancy)
        self.last_call = trio.current_time()
        #: [audit] calls = true: every inter-domain call goes to the audit log
        self.audit_calls = config.audit_calls
        #: set at boot on a provisioned device (see tre/_integrity.py)
        self.integrity: IntegrityMonitor | None = None
        #: the device ports of the policy and their claims (see tre/_ports.py)
        self.ports = PortRegistry(self.policy, self.record)

    # --- state ---------------------------------------------------------------------------

    def build_routes(self) -> None:
        """Turn the compiled policy into per-caller routes (done once, at boot)."""
        now = trio.current_time()
        callers: list[Caller] = [self.host, *self.domains.values()]
        for caller in callers:
            caller.routes = {}
            for callee_id, methods in self.policy.routes(caller.id).items():
                target = self.domains[callee_id]
                q = target.spec.manifest.quotas
                bucket = TokenBucket(q.calls_per_second, q.burst, now)
                caller.routes[callee_id] = Route(target, methods, bucket)

    def domains_in_boot_order(self) -> list[DomainRuntime]:
        return [self.domains[s.id] for s in self.specs]

    def record(self, kind: str, domain: str, detail: str = "") -> None:
        """Keep a kernel event in memory and hand it to the device's event hooks."""
        self.events.append(KernelEvent(trio.current_time(), kind, domain, detail))
        self.device.emit(TREEvent(time.time(), kind, domain, detail))

    def set_state(self, rt: DomainRuntime, new: DomainState) -> None:
        check_transition(rt.id, rt.state, new)
        rt.state = new
        self.changed.set()
        self.changed = trio.Event()

    def abort_inflight(self, rt: DomainRuntime, why: str) -> None:
        """Fail every call queued for or served by ``rt``'s current generation."""
        inflight = list(rt.inflight)
        rt.inflight.clear()
        for slot in inflight:
            slot.fail(Aborted(why))
            if slot.serving is not None:
                slot.serving.cancel()

    def fault(self, rt: DomainRuntime) -> None:
        """Called the moment a domain's own code raised: from then on nothing of this
        generation answers a caller (its in-flight callers get ABORTED now, not when its
        task group has finished tearing down) and its context stops acting."""
        if rt.live == 0:
            return
        rt.live = 0
        if rt.state is not DomainState.FAILED:
            self.set_state(rt, DomainState.FAILED)
        self.abort_inflight(rt, f"{rt.id!r} failed while serving the call")

    def lock(self, rt: DomainRuntime, why: str) -> None:
        """Tamper response: the domain stops at once for good, its callers get LOCKED and
        its unsealed keys are forgotten."""
        if rt.state is DomainState.LOCKED:
            return
        rt.live = 0
        self.set_state(rt, DomainState.LOCKED)
        inflight = list(rt.inflight)
        rt.inflight.clear()
        for slot in inflight:
            slot.fail(Locked(f"{rt.id!r} is locked: {why}"))
            if slot.serving is not None:
                slot.serving.cancel()
        if rt.keys is not None:
            rt.keys.lock()
        rt.inbox_send.close()
        rt.inbox_recv.close()
        if rt.scope is not None:
            rt.scope.cancel()
        self.record("locked", rt.id, why)

    def stop(self, rt: DomainRuntime, why: str) -> None:
        """Make ``rt`` STOPPED for good: abort its callers and close its inbox."""
        rt.live = 0
        if rt.state is not DomainState.STOPPED:
            self.set_state(rt, DomainState.STOPPED)
        self.abort_inflight(rt, why)
        rt.inbox_send.close()
        rt.inbox_recv.close()

    # --- the call path -------------------------------------------------------------------

    def _refuse(self, caller: Caller, domain: str, method: str) -> Exception:
        decision = self.policy.evaluate(caller.id, domain, method)
        if decision.allowed:  # pragma: no cover - routes are built from the same policy
            return Denied("no route")
        user = f" (user {caller.user!r})" if caller.user is not None else ""
        self.record("denied", caller.id, f"{domain}.{method}: {decision.reason}{user}")
        return decision.error()

    async def call(
        self,
        caller: Caller,
        generation: int,
        domain: str,
        method: str,
        body: Any,
        timeout: float | None,
        wait: bool,
    ) -> Any:
        route = caller.routes.get(domain)
        if route is None or method not in route.methods:
            raise self._refuse(caller, domain, method)
        if generation != caller.live:
            raise _not_live(caller)
        chain, outer = CURRENT.get()
        if domain in chain:
            self.record("denied", caller.id, f"{domain}.{method}: re-entrant call")
            raise Denied(f"re-entrant call: {domain!r} is already in the call chain")
        callee = route.target
        if callee.state not in ACCEPTING:
            raise _not_accepting(callee)
        if caller.outstanding >= caller.max_outstanding:
            raise Busy(f"{caller.id!r} has {caller.outstanding} calls outstanding")
        if timeout is None:
            timeout = callee.default_deadline
        elif not 0 < timeout < math.inf:
            raise ValueError("timeout must be a positive, finite number of seconds")
        now = self.last_call = trio.current_time()
        deadline = now + timeout
        if deadline > outer:  # never outlive the call being served
            deadline = outer
            if deadline <= now:
                raise CallTimeout("the deadline of the call being served has passed")
        msgid = self._msgid = (self._msgid + 1) & 0xFFFFFFFF
        try:
            frame = self.codec.request(msgid, method, deadline - now, body, callee.max_frame)
        except ipc.InvalidFrame as exc:
            if exc.reason == "too_large":
                raise TooLarge(
                    f"request over {domain!r}'s limit of {callee.max_frame} bytes"
                ) from None
            raise
        if not route.bucket.take(now):
            raise Busy(f"call rate to {domain!r} exceeded")
        if self.audit_calls:
            user = f" (user {caller.user!r})" if caller.user is not None else ""
            self.record("call", caller.id, f"{domain}.{method}{user}")
        slot = ReplySlot(deadline)
        item: Item = (frame, slot, (*chain, domain), caller, None)
        inflight = callee.inflight
        inflight.add(slot)
        caller.outstanding += 1
        deadlines = self.deadlines
        try:
            try:
                callee.inbox_send.send_nowait(item)
            except trio.WouldBlock:
                if not wait:
                    raise Busy(f"{domain!r}'s inbox is full") from None
                await self._send_slowly(callee, item, deadline)
            except _DISCONNECTED:
                raise _not_accepting(callee) from None
            deadlines.add(slot)
            reply = await slot.wait()
        except BaseException:
            inflight.discard(slot)
            raise
        finally:
            caller.outstanding -= 1
            deadlines.prune()
        items = self.codec.unpack(reply)
        if items[0] == 1:
            return items[2]
        raise error_for_code(items[2], items[3])

    async def _send_slowly(self, callee: DomainRuntime, item: Item, deadline: float) -> None:
        """The inbox was full and the caller waits for room, at most until its deadline."""
        with trio.move_on_at(deadline):
            try:
                await callee.inbox_send.send(item)
            except _DISCONNECTED:
                raise Aborted(f"{callee.id!r} failed") from None
            return
        raise CallTimeout(f"{callee.id!r}'s inbox stayed full until the deadline")

    def _expire(self, slot: ReplySlot) -> None:
        slot.fail(CallTimeout("the deadline passed before a reply"))
        serving = slot.serving
        if serving is not None:
            # Nobody waits for this handler's result any more: cancel it (the worker's scope
            # catches the cancellation and the worker goes on with the next request).
            serving.cancel()

    def notify(self, caller: Caller, generation: int, domain: str, method: str, body: Any) -> None:
        route = caller.routes.get(domain)
        if route is None or method not in route.methods:
            raise self._refuse(caller, domain, method)
        if generation != caller.live:
            raise _not_live(caller)
        callee = route.target
        if callee.state not in ACCEPTING:
            raise _not_accepting(callee)
        try:
            frame = self.codec.notification(method, body, callee.max_frame)
        except ipc.InvalidFrame as exc:
            if exc.reason == "too_large":
                raise TooLarge(f"notification over {domain!r}'s frame limit") from None
            raise
        now = self.last_call = trio.current_time()
        if not route.bucket.take(now):
            raise Busy(f"call rate to {domain!r} exceeded")
        try:
            callee.inbox_send.send_nowait((frame, None, (domain,), caller, None))
        except trio.WouldBlock:
            raise Busy(f"{domain!r}'s inbox is full") from None
        except _DISCONNECTED:
            raise Aborted(f"{domain!r} failed") from None

    def watch(self, rt: DomainRuntime, generation: int, peer: str) -> None:
        if generation != rt.live:
            raise _not_live(rt)
        route = rt.routes.get(peer)
        if route is None:
            raise Denied(f"{rt.id!r} has no channel to {peer!r}, so it cannot watch it")
        route.target.watchers.add(rt)

    def announce(self, rt: DomainRuntime, event: str) -> None:
        """Tell the domains watching ``rt`` that it went down or came back up."""
        for watcher in list(rt.watchers):
            if watcher.state not in ACCEPTING:
                continue
            try:
                watcher.inbox_send.send_nowait(
                    (None, None, (watcher.id,), self.host, (event, rt.id))
                )
            except (trio.WouldBlock, *_DISCONNECTED):
                self.record("dropped", watcher.id, f"{event} of {rt.id} (inbox full)")

    def start_domain_task(
        self, rt: DomainRuntime, generation: int, fn: Callable[..., Awaitable[Any]], *args: Any
    ) -> None:
        if generation != rt.live or rt.nursery is None:
            raise _not_live(rt)
        rt.nursery.start_soon(self.guarded, rt, fn, *args)

    async def guarded(
        self, rt: DomainRuntime, fn: Callable[..., Awaitable[Any]], *args: Any
    ) -> None:
        """Run a task of ``rt``'s own (``run()``, ``ctx.start_soon``): outside any call
        chain, and a fault of the domain if it raises."""
        CURRENT.set(((rt.id,), math.inf))
        try:
            await fn(*args)
        except PASSTHROUGH:
            raise
        except BaseException:
            self.fault(rt)
            raise
