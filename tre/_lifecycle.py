"""The domain lifecycle as a table (h11 style): every legal move is listed here."""

from __future__ import annotations

import enum

from ._errors import InternalError

__all__ = ["ACCEPTING", "TRANSITIONS", "DomainState", "check_transition"]


class DomainState(enum.Enum):
    INSTALLED = "installed"  # known to the kernel, not started yet
    BOOTING = "booting"  # instance built, setup() running; calls queue in the inbox
    RUNNING = "running"  # serving calls
    FAILED = "failed"  # faulted; in-flight callers aborted; the supervisor decides
    STOPPED = "stopped"  # final: stopped by its abort action or past its restart budget


TRANSITIONS: dict[DomainState, frozenset[DomainState]] = {
    DomainState.INSTALLED: frozenset({DomainState.BOOTING, DomainState.STOPPED}),
    DomainState.BOOTING: frozenset({DomainState.RUNNING, DomainState.FAILED, DomainState.STOPPED}),
    DomainState.RUNNING: frozenset({DomainState.FAILED, DomainState.STOPPED}),
    DomainState.FAILED: frozenset({DomainState.BOOTING, DomainState.STOPPED}),
    DomainState.STOPPED: frozenset(),
}

#: States in which a domain's inbox takes new calls.
ACCEPTING = frozenset({DomainState.BOOTING, DomainState.RUNNING})


def check_transition(domain: str, old: DomainState, new: DomainState) -> None:
    if new not in TRANSITIONS[old]:
        raise InternalError(f"domain {domain!r}: illegal lifecycle move {old.value} -> {new.value}")
