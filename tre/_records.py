"""The kernel's private records: who calls (:class:`Caller`), what a domain is right now
(:class:`DomainRuntime`), a caller's channel to a callee (:class:`Route`), and the
inbox item and per-task call context that tie them together."""

from __future__ import annotations

import collections
import contextvars
import math
from typing import Any

import attrs
import trio

from ._bucket import TokenBucket
from ._keystore import DomainKeys
from ._lifecycle import DomainState
from ._loader import DomainSpec
from ._slot import ReplySlot

__all__ = ["CURRENT", "Caller", "DomainRuntime", "Item", "KernelEvent", "Route"]

#: For the task at hand: the domains waiting in its call chain (innermost last) and the
#: deadline of the call it serves. Set by the worker for each request; a call to a domain
#: already in the chain would deadlock and is refused, and a nested call never outlives
#: the call it serves (deadline propagation, as gRPC does).
CURRENT: contextvars.ContextVar[tuple[tuple[str, ...], float]] = contextvars.ContextVar(
    "tre_current", default=((), math.inf)
)

# An inbox item: (frame, reply slot (None for notifications), call chain, sender, system
# event (None, or ("domain_down" | "domain_up", peer))).
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

    def __init__(self, target: DomainRuntime, methods: frozenset[str], bucket: TokenBucket) -> None:
        self.target = target
        self.methods = methods
        self.bucket = bucket


class Caller:
    """Anything that calls: a domain, or the host."""

    __slots__ = (
        "generation",
        "id",
        "live",
        "max_frame",
        "max_outstanding",
        "outstanding",
        "routes",
        "user",
    )

    def __init__(self, caller_id: str, max_outstanding: int, max_frame_bytes: int) -> None:
        self.id = caller_id
        #: for the host: the user of a host session (None: the embedding device software)
        self.user: str | None = None
        #: 1 on first boot, +1 on each restart (0 for the host)
        self.generation = 0
        #: the generation whose context may act now; 0 once that generation failed or stopped
        self.live = 0
        self.routes: dict[str, Route] = {}
        self.outstanding = 0
        self.max_outstanding = max_outstanding
        #: largest frame this caller accepts (requests to it, replies to it)
        self.max_frame = max_frame_bytes


class DomainRuntime(Caller):
    """The kernel's record of one domain."""

    __slots__ = (
        "default_deadline",
        "faults",
        "inbox_recv",
        "inbox_send",
        "inflight",
        "keys",
        "last_fault",
        "nursery",
        "overruns",
        "restart_times",
        "scope",
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
        #: every call queued for or being served by the current generation
        self.inflight: set[ReplySlot] = set()
        self.watchers: set[DomainRuntime] = set()
        #: times of recent restarts (made on the first restart: most domains never need it)
        self.restart_times: collections.deque[float] | None = None
        self.nursery: trio.Nursery | None = None
        #: the supervisor's cancel scope (lock cancels it)
        self.scope: trio.CancelScope | None = None
        #: kernel-side key material (set at boot)
        self.keys: DomainKeys | None = None
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
