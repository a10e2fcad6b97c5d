"""The domain plugin API: a base class and a decorator.

A stakeholder writes::

    class Meter(tre.Domain):
        @tre.service
        async def latest(self, caller: str, body: Any) -> Any:
            return {"kwh": self.kwh}

        async def run(self) -> None:          # optional long-running task
            while True:
                stamp = await self.ctx.call("oem", "time")
                ...

Handlers take the caller's id (stamped by the kernel, never read from the message) and
the decoded request body, and return a msgpack-encodable reply. Raising
:class:`~tre.ServiceError` answers the caller with an error; any other exception is a
fault of the domain and is handled by the supervisor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from ._context import Context

__all__ = ["Domain", "Handler", "service"]

Handler = Callable[[str, Any], Awaitable[Any]]
_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])
_MARK = "__tre_service__"


@overload
def service(fn: _F) -> _F: ...
@overload
def service(*, name: str | None = None) -> Callable[[_F], _F]: ...
def service(fn: _F | None = None, *, name: str | None = None) -> _F | Callable[[_F], _F]:
    """Mark an ``async def handler(self, caller, body)`` as the service ``name``
    (default: the method's name). Use as ``@service`` or ``@service(name="...")``."""

    def mark(f: _F) -> _F:
        setattr(f, _MARK, name or f.__name__)
        return f

    return mark(fn) if fn is not None else mark


class Domain:
    """Base class of every domain plugin. One instance per generation: a restart builds a
    fresh instance, so a fault never leaves half-updated state behind."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def setup(self) -> None:
        """Runs before the domain accepts calls (boot order is respected). Optional."""

    async def on_domain_down(self, peer: str) -> None:
        """A peer this domain watches (``ctx.watch``) failed or stopped. Optional."""

    async def on_domain_up(self, peer: str) -> None:
        """A watched peer is running again after a restart. Optional."""

    # ``run`` is deliberately not defined here: a domain that defines ``async def run(self)``
    # gets it started as a long-running task of its own task group.

    @classmethod
    def service_names(cls) -> dict[str, str]:
        """Service name -> attribute name, for every ``@service`` handler of the class."""
        by_attr: dict[str, str] = {}  # the most derived definition of each attribute wins
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                svc = getattr(value, _MARK, None)
                if isinstance(svc, str):
                    by_attr[attr] = svc  # an undecorated override keeps the service
        return {svc: attr for attr, svc in by_attr.items()}

    @classmethod
    def has_run(cls) -> bool:
        return callable(getattr(cls, "run", None))
