"""The mediating kernel: routes, the call path, and the domains' worker tasks.

Mediation runs in the caller's task, like a system call: route lookup (policy compiled at
boot), re-entry check, quota checks, encode, then the frame goes into the callee's bounded
inbox with a one-shot reply slot and the caller parks on the slot. Nothing on this path
depends on how many domains are installed. Deadlines are enforced by one kernel task
(:mod:`._deadlines`), not a cancel scope per call.
"""

from __future__ import annotations

import collections
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import attrs
import trio

import ipc

from ._bucket import TokenBucket
from ._config import TREConfig
from ._deadlines import DeadlineQueue
from ._errors import (
    Aborted,
    Busy,
    CallTimeout,
    Denied,
    ServiceError,
    TooLarge,
    error_for_code,
)
from ._lifecycle import ACCEPTING, DomainState, check_transition
from ._loader import DomainSpec
from ._manifest import HOST
from ._policy import Policy
from ._slot import ReplySlot

__all__ = ["Caller", "DomainRuntime", "Kernel", "KernelEvent"]

log = logging.getLogger("tre.kernel")

#: The domains waiting in the current call chain, innermost last. Set by the worker for
#: each request it serves; a call to a domain already in it would deadlock, so it is refused.
CHAIN: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("tre_chain", default=())

#: The id the kernel uses as the sender of system notifications.
KERNEL_ID = "tre"
#: Largest ServiceError message passed to a caller (longer ones are cut).
MAX_ERROR_MESSAGE = 512
_SAFE_CODE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
#: Kernel events kept in memory for inspection (oldest dropped first).
EVENT_HISTORY = 1000

# An inbox item: (frame or None, reply slot or None, call chain, sender, system event)
Item = tuple[bytes | None, ReplySlot | None, tuple[str, ...], "Caller", tuple[str, str] | None]


@attrs.frozen
class KernelEvent:
    """Something the kernel did or saw: boot, fault, restart, stop, denial, overrun."""

    time: float
    kind: str
    domain: str
    detail: str = ""


class Route:
    """A caller's channel to one callee: the methods policy allows, and its rate bucket."""

    __slots__ = ("bucket", "methods", "target")

    def __init__(self, target: DomainRuntime, methods: frozenset[str], bucket: TokenBucket):
        self.target = target
        self.methods = methods
        self.bucket = bucket


class Caller:
    """Anything that calls: a domain, or the host."""

    __slots__ = ("generation", "id", "max_frame", "max_outstanding", "outstanding", "routes")

    def __init__(self, caller_id: str, max_outstanding: int, max_frame_bytes: int) -> None:
        self.id = caller_id
        self.generation = 0
        self.routes: dict[str, Route] = {}
        self.outstanding = 0
        self.max_outstanding = max_outstanding
        #: largest frame this caller accepts (requests to it, replies to it)
        self.max_frame = max_frame_bytes


class DomainRuntime(Caller):
    """The kernel's private record of one domain."""

    __slots__ = (
        "default_deadline",
        "faults",
        "inbox_recv",
        "inbox_send",
        "inflight",
        "last_fault",
        "nursery",
        "overruns",
        "restart_times",
        "served",
        "settings",
        "spec",
        "state",
        "watchers",
    )

    def __init__(self, spec: DomainSpec, settings: dict[str, Any]) -> None:
        m = spec.manifest
        super().__init__(m.id, m.quotas.max_outstanding, m.quotas.max_frame_bytes)
        self.spec = spec
        self.settings = settings
        self.state = DomainState.INSTALLED
        self.default_deadline = m.default_deadline
        self.inflight: set[ReplySlot] = set()
        self.watchers: set[DomainRuntime] = set()
        self.restart_times: collections.deque[float] = collections.deque()
        self.nursery: trio.Nursery | None = None
        self.faults = 0
        self.overruns = 0
        self.served = 0
        self.last_fault = ""
        self.inbox_send: trio.MemorySendChannel[Item]
        self.inbox_recv: trio.MemoryReceiveChannel[Item]
        self.new_inbox()

    def new_inbox(self) -> None:
        self.inbox_send, self.inbox_recv = trio.open_memory_channel[Item](
            self.spec.manifest.quotas.inbox_depth
        )


class Kernel:
    def __init__(self, config: TREConfig, specs: Iterable[DomainSpec]) -> None:
        self.config = config
        self.specs = list(specs)
        self.domains: dict[str, DomainRuntime] = {
            s.id: DomainRuntime(s, dict(config.settings.get(s.id, {}))) for s in self.specs
        }
        self.host = Caller(HOST, config.host.max_outstanding, ipc.DEFAULT_LIMITS.max_frame_bytes)
        self.policy = Policy.compile((s.manifest for s in self.specs), config.host.calls)
        self.events: collections.deque[KernelEvent] = collections.deque(maxlen=EVENT_HISTORY)
        self.deadlines = DeadlineQueue(self._expire)
        self.codec = ipc.LocalCodec()
        self.changed = trio.Event()
        self._msgid = 0

    # --- boot ----------------------------------------------------------------------------

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

    def record(self, kind: str, domain: str, detail: str = "") -> None:
        self.events.append(KernelEvent(trio.current_time(), kind, domain, detail))

    def set_state(self, rt: DomainRuntime, new: DomainState) -> None:
        check_transition(rt.id, rt.state, new)
        rt.state = new
        self.changed.set()
        self.changed = trio.Event()

    def domains_in_boot_order(self) -> list[DomainRuntime]:
        return [self.domains[s.id] for s in self.specs]

    # --- the call path -------------------------------------------------------------------

    def _refuse(self, caller: Caller, domain: str, method: str) -> Exception:
        decision = self.policy.evaluate(caller.id, domain, method)
        if decision.allowed:  # pragma: no cover - routes are built from the same policy
            return Denied("no route")
        self.record("denied", caller.id, f"{domain}.{method}: {decision.reason}")
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
        if generation != caller.generation:
            raise Aborted("this context belongs to an earlier generation of its domain")
        chain = CHAIN.get()
        if domain in chain:
            self.record("denied", caller.id, f"{domain}.{method}: re-entrant call")
            raise Denied(f"re-entrant call: {domain!r} is already in the call chain")
        callee = route.target
        if callee.state not in ACCEPTING:
            raise Aborted(f"{domain!r} is {callee.state.value}")
        if caller.outstanding >= caller.max_outstanding:
            raise Busy(f"{caller.id!r} has {caller.outstanding} calls outstanding")
        now = trio.current_time()
        if not route.bucket.take(now):
            raise Busy(f"call rate to {domain!r} exceeded")
        if timeout is None:
            timeout = callee.default_deadline
        elif not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        msgid = self._msgid = (self._msgid + 1) & 0xFFFFFFFF
        try:
            frame = self.codec.request(msgid, method, float(timeout), body, callee.max_frame)
        except ipc.InvalidFrame as exc:
            if exc.reason == "too_large":
                raise TooLarge(
                    f"request over {domain!r}'s limit of {callee.max_frame} bytes"
                ) from None
            raise
        slot = ReplySlot(now + timeout)
        item: Item = (frame, slot, (*chain, domain), caller, None)
        inflight = callee.inflight
        inflight.add(slot)
        try:
            callee.inbox_send.send_nowait(item)
        except trio.WouldBlock:
            if not wait:
                inflight.discard(slot)
                raise Busy(f"{domain!r}'s inbox is full") from None
            await self._send_slowly(callee, item, slot)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            inflight.discard(slot)
            raise Aborted(f"{domain!r} failed") from None
        deadlines = self.deadlines
        deadlines.add(slot)
        caller.outstanding += 1
        try:
            reply = await slot.wait()
        finally:
            caller.outstanding -= 1
            deadlines.prune()
        items = self.codec.unpack(reply)
        if items[0] == 1:
            return items[2]
        raise error_for_code(items[2], items[3])

    async def _send_slowly(self, callee: DomainRuntime, item: Item, slot: ReplySlot) -> None:
        """The inbox was full and the caller waits for room, at most until its deadline."""
        with trio.move_on_at(slot.deadline):
            try:
                await callee.inbox_send.send(item)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                callee.inflight.discard(slot)
                raise Aborted(f"{callee.id!r} failed") from None
            return
        callee.inflight.discard(slot)
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
        if generation != caller.generation:
            raise Aborted("this context belongs to an earlier generation of its domain")
        callee = route.target
        if callee.state not in ACCEPTING:
            raise Aborted(f"{domain!r} is {callee.state.value}")
        if not route.bucket.take(trio.current_time()):
            raise Busy(f"call rate to {domain!r} exceeded")
        try:
            frame = self.codec.notification(method, body, callee.max_frame)
        except ipc.InvalidFrame as exc:
            if exc.reason == "too_large":
                raise TooLarge(f"notification over {domain!r}'s frame limit") from None
            raise
        try:
            callee.inbox_send.send_nowait((frame, None, (domain,), caller, None))
        except trio.WouldBlock:
            raise Busy(f"{domain!r}'s inbox is full") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise Aborted(f"{domain!r} failed") from None

    def watch(self, rt: DomainRuntime, generation: int, peer: str) -> None:
        if generation != rt.generation:
            raise Aborted("this context belongs to an earlier generation of its domain")
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
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self.record("dropped", watcher.id, f"{event} of {rt.id} (inbox full)")

    def start_domain_task(
        self, rt: DomainRuntime, generation: int, fn: Callable[..., Awaitable[Any]], *args: Any
    ) -> None:
        if generation != rt.generation or rt.nursery is None:
            raise Aborted("this context belongs to an earlier generation of its domain")
        rt.nursery.start_soon(_with_chain, (rt.id,), fn, *args)

    # --- the callee side -------------------------------------------------------------------

    async def worker(self, rt: DomainRuntime, instance: Any, handlers: dict[str, Any]) -> None:
        """One of a domain's worker tasks: take requests from its inbox and serve them.

        A handler that raises :class:`ServiceError` answers with REMOTE_ERROR; any other
        exception propagates and fails the domain (the supervisor takes over)."""
        recv = rt.inbox_recv
        codec = self.codec
        inflight = rt.inflight
        while True:
            with trio.CancelScope() as scope:
                while True:
                    frame, slot, chain, caller, system = await recv.receive()
                    if slot is None:
                        await self._serve_notification(
                            rt, instance, handlers, frame, caller, system
                        )
                        continue
                    if slot.done:  # timed out or abandoned while queued
                        inflight.discard(slot)
                        continue
                    assert frame is not None
                    request = codec.unpack(frame)
                    msgid = request[1]
                    CHAIN.set(chain)
                    slot.serving = scope
                    try:
                        result = await handlers[request[2]](caller.id, request[4])
                    except ServiceError as exc:
                        reply = codec.error(msgid, "REMOTE_ERROR", _safe(exc))
                    else:
                        try:
                            reply = codec.response(msgid, result, caller.max_frame)
                        except ipc.InvalidFrame as exc:
                            reply = _bad_reply(codec, msgid, exc)
                    slot.serving = None
                    inflight.discard(slot)
                    rt.served += 1
                    slot.set(reply)
            # Our scope was cancelled: a handler overran its caller's deadline.
            rt.overruns += 1
            self.record("overrun", rt.id, "handler cancelled at its caller's deadline")

    async def _serve_notification(
        self,
        rt: DomainRuntime,
        instance: Any,
        handlers: dict[str, Any],
        frame: bytes | None,
        caller: Caller,
        system: tuple[str, str] | None,
    ) -> None:
        if system is not None:
            event, peer = system
            hook = instance.on_domain_down if event == "domain_down" else instance.on_domain_up
            CHAIN.set((rt.id,))
            await hook(peer)
            return
        assert frame is not None
        _, method, body = self.codec.unpack(frame)
        CHAIN.set((rt.id,))
        try:
            await handlers[method](caller.id, body)
        except ServiceError as exc:
            self.record("notification_error", rt.id, f"{method}: {exc.code}")
        rt.served += 1


def _safe(exc: ServiceError) -> str:
    code = exc.code if isinstance(exc.code, str) else ""
    if not code or len(code) > 48 or not set(code) <= _SAFE_CODE:
        code = "SERVICE_ERROR"
    message = str(exc.message)[:MAX_ERROR_MESSAGE]
    return f"{code}: {message}" if message else code


def _bad_reply(codec: ipc.LocalCodec, msgid: int, exc: ipc.InvalidFrame) -> bytes:
    if exc.reason == "too_large":
        return codec.error(msgid, TooLarge.code, "the reply is over the caller's frame limit")
    return codec.error(
        msgid, "REMOTE_ERROR", f"BAD_REPLY: the reply cannot be encoded ({exc.reason})"
    )


async def _with_chain(
    chain: tuple[str, ...], fn: Callable[..., Awaitable[Any]], *args: Any
) -> None:
    CHAIN.set(chain)
    await fn(*args)
