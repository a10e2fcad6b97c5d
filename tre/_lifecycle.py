"""Lifecycles as tables (h11 style): every legal move is listed here, nowhere else.

Three machines:

- :class:`TREState`, persistent: the device from the factory to its end of life;
- :class:`DomainLifecycle`, persistent: an installed domain (locked by tamper response);
- :class:`DomainState`, in memory: what the supervisor is doing with a domain right now.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

from ._errors import InternalError

__all__ = [
    "ACCEPTING",
    "DOMAIN_LIFECYCLE",
    "TRANSITIONS",
    "TRE_LIFECYCLE",
    "DomainLifecycle",
    "DomainState",
    "TREState",
    "check_move",
    "check_transition",
]


class TREState(enum.Enum):
    SECURED = "secured"  # provisioned at the factory; boots and runs
    LOCKED = "locked"  # tamper detected for the whole TRE: boots, but every domain is locked
    TERMINATED = "terminated"  # end of life: the device secret is erased; nothing boots


TRE_LIFECYCLE: dict[TREState, frozenset[TREState]] = {
    TREState.SECURED: frozenset({TREState.LOCKED, TREState.TERMINATED}),
    TREState.LOCKED: frozenset({TREState.TERMINATED}),
    TREState.TERMINATED: frozenset(),
}


class DomainLifecycle(enum.Enum):
    INSTALLED = "installed"  # installed, never booted
    ACTIVE = "active"  # has booted at least once
    LOCKED = "locked"  # tamper detected: does not run, its keys cannot be used
    REMOVED = "removed"  # removed (tre remove): keys crypto-erased; the row keeps its counter


#: Removal is always allowed (erasing never helps an attacker), locked domains included; a
#: removed domain comes back only by a new install (a fresh epoch: nothing of the old one).
DOMAIN_LIFECYCLE: dict[DomainLifecycle, frozenset[DomainLifecycle]] = {
    DomainLifecycle.INSTALLED: frozenset(
        {DomainLifecycle.ACTIVE, DomainLifecycle.LOCKED, DomainLifecycle.REMOVED}
    ),
    DomainLifecycle.ACTIVE: frozenset({DomainLifecycle.LOCKED, DomainLifecycle.REMOVED}),
    DomainLifecycle.LOCKED: frozenset({DomainLifecycle.REMOVED}),
    DomainLifecycle.REMOVED: frozenset({DomainLifecycle.INSTALLED}),
}


class DomainState(enum.Enum):
    INSTALLED = "installed"  # known to the kernel, not started yet
    BOOTING = "booting"  # instance built, setup() running; calls queue in the inbox
    RUNNING = "running"  # serving calls
    FAILED = "failed"  # faulted; in-flight callers aborted; the supervisor decides
    STOPPED = "stopped"  # final: stopped by its abort action, its budget, or shutdown
    LOCKED = "locked"  # final: tamper response; calls get LOCKED


_ANY_LIVE = {DomainState.STOPPED, DomainState.LOCKED}
TRANSITIONS: dict[DomainState, frozenset[DomainState]] = {
    DomainState.INSTALLED: frozenset({DomainState.BOOTING, *_ANY_LIVE}),
    DomainState.BOOTING: frozenset({DomainState.RUNNING, DomainState.FAILED, *_ANY_LIVE}),
    DomainState.RUNNING: frozenset({DomainState.FAILED, *_ANY_LIVE}),
    DomainState.FAILED: frozenset({DomainState.BOOTING, *_ANY_LIVE}),
    DomainState.STOPPED: frozenset({DomainState.LOCKED}),
    DomainState.LOCKED: frozenset(),
}

#: States in which a domain's inbox takes new calls.
ACCEPTING = frozenset({DomainState.BOOTING, DomainState.RUNNING})

E = TypeVar("E", bound=enum.Enum)


def check_move(table: Mapping[E, frozenset[E]], what: str, old: E, new: E) -> None:
    """Raise :class:`InternalError` unless ``table`` allows ``old -> new``."""
    if new not in table[old]:
        raise InternalError(f"{what}: illegal lifecycle move {old.value} -> {new.value}")


def check_transition(domain: str, old: DomainState, new: DomainState) -> None:
    check_move(TRANSITIONS, f"domain {domain!r}", old, new)
