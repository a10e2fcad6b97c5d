"""Device ports (R2, physical interfaces): the device's hardware, lent out by the kernel.

A port is a named physical interface of the device (``modem``, ``sensor``, ``gpio``)
declared in the TRE config (``[ports.NAME]``). A domain opens one with
``ctx.open_port(name)`` and gets a :class:`Port`; the kernel checks, in this order:

1. the domain's manifest claims the port (``ports = ["modem"]``), else :class:`PortDenied`;
2. the config declares it, else :class:`NoSuchPort`;
3. the config grants it to the domain (``domains = [...]``), else :class:`PortDenied`;
4. an exclusive port is not held by another live claim (one of this domain's included),
   else :class:`PortBusy`. A shared port (``exclusive = false``) may be held by several.

Checks 1 to 3 are the compiled policy's (:meth:`tre.Policy.check_port`): the registry is
built from that policy and keeps no grants of its own, so what ``tre policy show`` lists
and the attestation evidence's policy digest covers is what the kernel enforces.

The claim is checked first, as in the call policy: a domain learns nothing about ports it
did not claim. A claim ends when its handle is closed, or when the generation that opened
it ends: the domain faults, is stopped or locked, or the TRE shuts down. It ends at once: a
claim whose context is no longer live is dead, so another domain (or the restarted
generation) can open the port before the supervisor has finished tearing the failed
generation down. Every operation on an ended handle raises :class:`PortClosed`.

The device model: each port is a pair of bounded byte pipes between the domains holding it
and the device software outside the TRE, which plays the hardware through the host's
:class:`PortEnd` (``t.port(name)``): what a domain writes the host reads, what the host
writes a domain reads. Each direction buffers at most the port's ``buffer`` bytes; a write
waits for room (with ``wait=False`` it raises :class:`PortFull` and writes nothing). Bytes
on their way to the domains are dropped when the last claim ends, so no domain reads what
the device sent to an earlier holder. A shared port is a shared line: each byte the device
sends is read by whichever holder reads it first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ipc import TREError

from ._config import PortSpec
from ._errors import Aborted
from ._policy import Policy

if TYPE_CHECKING:
    from ._records import DomainRuntime

__all__ = [
    "NoSuchPort",
    "Port",
    "PortBusy",
    "PortClosed",
    "PortDenied",
    "PortEnd",
    "PortError",
    "PortFull",
    "PortRegistry",
]


class PortError(TREError):
    """Base of the device-port errors. They are not call outcomes: one that escapes a
    handler is a fault of the domain, like any other exception, so catch what you expect."""

    code = "PORT"


class NoSuchPort(PortError):
    """The TRE config declares no port of that name (the domain did claim it)."""

    code = "NO_SUCH_PORT"


class PortDenied(PortError):
    """The domain's manifest does not claim the port, or the TRE config does not grant it to
    the domain. Retrying never helps; differs from :class:`PortBusy`."""

    code = "PORT_DENIED"


class PortBusy(PortError):
    """The port is exclusive and another claim holds it now (perhaps one of this domain's
    own). Retrying after that claim ends may succeed."""

    code = "PORT_BUSY"


class PortFull(PortBusy):
    """A write with ``wait=False`` does not fit in the port's buffer now: nothing was
    written. (A write that waits blocks until there is room instead.)"""

    code = "PORT_FULL"


class PortClosed(PortError):
    """The handle was closed, the claim that opened it ended (the domain failed, stopped or
    was locked), or the TRE shut down."""

    code = "PORT_CLOSED"


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"a port carries bytes, not {type(data).__name__}")
    return bytes(data)


def _limit(max_bytes: int | None) -> int | None:
    if max_bytes is not None and (type(max_bytes) is not int or max_bytes < 1):
        raise ValueError("max_bytes must be a positive integer (or None: all there is)")
    return max_bytes


class _Claim:
    """One opening of a port by one generation of a domain."""

    __slots__ = ("ended", "generation", "rt")

    def __init__(self, rt: DomainRuntime, generation: int) -> None:
        self.rt = rt
        self.generation = generation
        self.ended = False

    def live(self) -> bool:
        return not self.ended and self.rt.live == self.generation


class _Line:
    """A declared port: who holds it and the two bounded pipes."""

    __slots__ = ("changed", "end", "holders", "inbound", "outbound", "spec")

    def __init__(self, spec: PortSpec) -> None:
        self.spec = spec
        self.holders: list[_Claim] = []
        #: device -> domains (the host writes, a domain reads)
        self.inbound = bytearray()
        #: domains -> device (a domain writes, the host reads)
        self.outbound = bytearray()
        #: set (and replaced) on every change: what blocked readers and writers wait for
        self.changed = trio.Event()
        self.end: PortEnd | None = None

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def put(
        self, pipe: bytearray, data: bytes, wait: bool, alive: Callable[[], None]
    ) -> None:
        await trio.lowlevel.checkpoint()
        alive()
        capacity = self.spec.buffer
        if not wait and len(data) > capacity - len(pipe):
            raise PortFull(
                f"port {self.spec.name!r}: {len(data)} bytes do not fit "
                f"({capacity - len(pipe)} of {capacity} free)"
            )
        while True:
            room = capacity - len(pipe)
            if room > 0 and data:
                pipe += data[:room]
                data = data[room:]
                self.wake()
            if not data:
                return
            await self.changed.wait()
            alive()

    async def take(
        self, pipe: bytearray, max_bytes: int | None, wait: bool, alive: Callable[[], None]
    ) -> bytes:
        await trio.lowlevel.checkpoint()
        alive()
        while not pipe:
            if not wait:
                return b""
            await self.changed.wait()
            alive()
        n = len(pipe) if max_bytes is None else max_bytes
        out = bytes(pipe[:n])
        del pipe[:n]
        self.wake()
        return out


class Port:
    """A domain's open device port (from ``ctx.open_port``). Bytes written go to the device
    (the host's :class:`PortEnd` reads them); bytes the device sends are read here."""

    __slots__ = ("__claim", "__line", "__registry", "name")

    def __init__(self, registry: PortRegistry, line: _Line, claim: _Claim) -> None:
        self.__registry = registry
        self.__line = line
        self.__claim = claim
        #: the port's name in the TRE config
        self.name: str = line.spec.name

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Port {self.name!r} of {self.__claim.rt.id!r} ({state})>"

    @property
    def closed(self) -> bool:
        """True once the handle was closed or its claim ended (it never opens again)."""
        return not self.__claim.live()

    def _alive(self) -> None:
        if not self.__claim.live():
            raise PortClosed(f"port {self.name!r} is closed")

    async def write(self, data: bytes | bytearray | memoryview, *, wait: bool = True) -> None:
        """Send ``data`` to the device. Waits while the buffer towards the device is full
        (a cancelled write may have sent part of ``data``). With ``wait=False`` all of
        ``data`` is buffered at once or :class:`PortFull` is raised and nothing is."""
        line = self.__line
        await line.put(line.outbound, _as_bytes(data), wait, self._alive)

    async def read(self, max_bytes: int | None = None, *, wait: bool = True) -> bytes:
        """Up to ``max_bytes`` bytes the device sent (None: all that are buffered), waiting
        until there is at least one; with ``wait=False``, ``b""`` when there is none."""
        line = self.__line
        return await line.take(line.inbound, _limit(max_bytes), wait, self._alive)

    def close(self) -> None:
        """End this claim (idempotent). An exclusive port can then be opened again."""
        self.__registry.end_claim(self.__line, self.__claim)


class PortEnd:
    """The device's side of a port, for the software outside the TRE that plays the
    hardware (``t.port(name)``): what it writes the domains holding the port read; it
    reads what they write. Its operations raise :class:`PortClosed` once the TRE is down."""

    __slots__ = ("__line", "__registry", "description", "exclusive", "name")

    def __init__(self, registry: PortRegistry, line: _Line) -> None:
        self.__registry = registry
        self.__line = line
        self.name: str = line.spec.name
        self.exclusive: bool = line.spec.exclusive
        self.description: str = line.spec.description

    def __repr__(self) -> str:
        return f"<PortEnd {self.name!r}>"

    @property
    def holders(self) -> tuple[str, ...]:
        """The domains holding the port now (a domain once per open handle)."""
        self.__registry.prune(self.__line)
        return tuple(c.rt.id for c in self.__line.holders)

    def _alive(self) -> None:
        if self.__registry.closed:
            raise PortClosed(f"port {self.name!r} is closed: the TRE has shut down")
        self.__registry.prune(self.__line)

    async def write(self, data: bytes | bytearray | memoryview, *, wait: bool = True) -> None:
        """Send ``data`` to the domains (buffered even while nobody holds the port, for the
        next holder; dropped when the last claim ends). Waits for room like
        :meth:`Port.write`; ``wait=False`` raises :class:`PortFull` instead."""
        line = self.__line
        await line.put(line.inbound, _as_bytes(data), wait, self._alive)

    async def read(self, max_bytes: int | None = None, *, wait: bool = True) -> bytes:
        """Up to ``max_bytes`` bytes the domains wrote, as :meth:`Port.read`."""
        line = self.__line
        return await line.take(line.outbound, _limit(max_bytes), wait, self._alive)


class PortRegistry:
    """The kernel's record of the declared ports and who holds them. The ports, and who may
    open each, are those of the compiled ``policy``."""

    def __init__(self, policy: Policy, record: Callable[[str, str, str], None]) -> None:
        self._policy = policy
        self._lines = {name: _Line(spec) for name, spec in policy.ports.items()}
        self._record = record
        #: set once the TRE shuts down: every claim has ended and nothing opens again
        self.closed = False

    def open(self, rt: DomainRuntime, generation: int, name: str) -> Port:
        """Open ``name`` for ``rt``'s generation ``generation`` (see the module docstring
        for the checks and their order)."""
        if generation != rt.live:
            raise Aborted(f"this context of {rt.id!r} is no longer live")
        if not isinstance(name, str):
            raise TypeError(f"a port name is a str, not {type(name).__name__}")
        # A plain copy: a str subclass of the domain's could hash and compare one way when
        # the policy is asked and another when the port is looked up.
        name = str.__str__(name)
        if self.closed:
            raise PortClosed("the TRE is shutting down")
        label = repr(name[:32]) + ("..." if len(name) > 32 else "")
        decision = self._policy.check_port(rt.id, name)
        if not decision.allowed:
            self._record("denied", rt.id, f"port {label}: {decision.reason}")
            error = NoSuchPort if decision.code == "NO_SUCH_PORT" else PortDenied
            raise error(f"{rt.id!r} may not open port {label}: {decision.reason}")
        line = self._lines[name]
        self.prune(line)
        if line.spec.exclusive and line.holders:
            raise PortBusy(f"port {label} is exclusive and in use")
        claim = _Claim(rt, generation)
        line.holders.append(claim)
        self._record("port", rt.id, f"opened {name}")
        return Port(self, line, claim)

    def end(self, name: str) -> PortEnd:
        """The device's side of port ``name`` (:class:`NoSuchPort` if not declared)."""
        line = self._lines.get(name) if isinstance(name, str) else None
        if line is None:
            raise NoSuchPort(f"the TRE config declares no port {name!r}")
        if line.end is None:
            line.end = PortEnd(self, line)
        return line.end

    def end_claim(self, line: _Line, claim: _Claim) -> None:
        """End one claim: ``closed`` if its generation still runs (the domain closed the
        handle), else ``released``."""
        if claim.ended:
            return
        self._end(line, claim, "closed" if claim.live() else "released")

    def prune(self, line: _Line) -> None:
        """Drop the claims of generations that are no longer live."""
        for claim in [c for c in line.holders if not c.live()]:
            self._end(line, claim, "released")

    def release(self, rt: DomainRuntime) -> None:
        """End every claim of ``rt`` (the supervisor, when a generation ends for any
        reason, before a restart)."""
        for line in self._lines.values():
            for claim in [c for c in line.holders if c.rt is rt]:
                self._end(line, claim, "released")

    def close(self) -> None:
        """The TRE shuts down: end every claim and wake every waiter."""
        self.closed = True
        for line in self._lines.values():
            for claim in list(line.holders):
                self._end(line, claim, "released")
            line.wake()

    def _end(self, line: _Line, claim: _Claim, verb: str) -> None:
        claim.ended = True
        if claim in line.holders:
            line.holders.remove(claim)
            self._record("port", claim.rt.id, f"{verb} {line.spec.name}")
        if not line.holders:
            line.inbound.clear()  # nobody reads what was meant for an earlier holder
        line.wake()
