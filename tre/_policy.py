"""The TRE's security policy (R7): default deny, both manifests must agree.

A channel (caller, callee, method) exists only when the caller's manifest declares the call
*and* the callee's manifest offers the method to that caller; a domain marked
``isolated = true`` has no channel at all. The policy is compiled once (at boot, and again
on each install or update) into frozensets; the kernel's call path only looks up the
per-caller routes derived from it.

``evaluate`` inspects and returns a :class:`Decision` that says why; ``enforce`` raises the
matching call error. The order of the checks is fixed so that a caller learns nothing about
domains it did not declare:

1. the caller must declare (callee, method) in its own manifest -> else DENIED;
2. the callee must be installed -> else NO_SUCH_DOMAIN;
3. the callee must not be isolated -> else DENIED;
4. the callee must offer the method -> else NO_SUCH_METHOD;
5. the callee must allow this caller for that method -> else DENIED.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import attrs
import msgpack

from ._errors import CallError, Denied, NoSuchDomain, NoSuchMethod
from ._manifest import HOST, Manifest

__all__ = ["Decision", "Policy"]


@attrs.frozen
class Decision:
    """The result of :meth:`Policy.evaluate`: allowed or not, the outcome code, and why."""

    allowed: bool
    code: str  # "OK", "DENIED", "NO_SUCH_DOMAIN" or "NO_SUCH_METHOD"
    reason: str

    def error(self) -> CallError:
        cls = {"NO_SUCH_DOMAIN": NoSuchDomain, "NO_SUCH_METHOD": NoSuchMethod}.get(
            self.code, Denied
        )
        return cls(self.reason)


_OK = Decision(True, "OK", "both manifests agree")


@attrs.frozen
class Policy:
    """A compiled policy. Build it with :meth:`compile`."""

    #: every allowed (caller, callee, method)
    edges: frozenset[tuple[str, str, str]]
    #: caller -> callee -> methods it declares (its manifest, or the host grants)
    declared: Mapping[str, Mapping[str, frozenset[str]]]
    #: callee -> method -> allowed callers
    offered: Mapping[str, Mapping[str, frozenset[str]]]
    isolated: frozenset[str]

    @classmethod
    def compile(
        cls, manifests: Iterable[Manifest], host_calls: Mapping[str, frozenset[str]] | None = None
    ) -> Policy:
        by_id = {m.id: m for m in manifests}
        declared: dict[str, Mapping[str, frozenset[str]]] = {
            m.id: dict(m.calls) for m in by_id.values()
        }
        declared[HOST] = dict(host_calls or {})
        offered = {m.id: dict(m.services) for m in by_id.values()}
        isolated = frozenset(m.id for m in by_id.values() if m.isolated)
        policy = cls(frozenset(), declared, offered, isolated)
        edges = {
            (caller, callee, method)
            for caller, calls in declared.items()
            for callee, methods in calls.items()
            for method in methods
            if policy._check(caller, callee, method).allowed
        }
        return attrs.evolve(policy, edges=frozenset(edges))

    def _check(self, caller: str, callee: str, method: str) -> Decision:
        if caller in self.isolated:
            return Decision(False, "DENIED", f"{caller!r} is isolated")
        if method not in self.declared.get(caller, {}).get(callee, ()):
            return Decision(False, "DENIED", f"{caller!r} does not declare {callee}.{method}")
        if callee not in self.offered:
            return Decision(False, "NO_SUCH_DOMAIN", f"no domain {callee!r} is installed")
        if callee in self.isolated:
            return Decision(False, "DENIED", f"{callee!r} is isolated")
        allowed = self.offered[callee].get(method)
        if allowed is None:
            return Decision(False, "NO_SUCH_METHOD", f"{callee!r} offers no service {method!r}")
        if caller not in allowed:
            return Decision(False, "DENIED", f"{callee}.{method} does not allow {caller!r}")
        return _OK

    def evaluate(self, caller: str, callee: str, method: str) -> Decision:
        """Say whether ``caller`` may call ``callee.method``, and why."""
        if (caller, callee, method) in self.edges:
            return _OK
        return self._check(caller, callee, method)

    def enforce(self, caller: str, callee: str, method: str) -> None:
        """Raise the call error :meth:`evaluate` implies, or return if allowed."""
        decision = self.evaluate(caller, callee, method)
        if not decision.allowed:
            raise decision.error()

    def routes(self, caller: str) -> dict[str, frozenset[str]]:
        """callee -> methods ``caller`` may call: what the kernel's hot path looks up."""
        out: dict[str, set[str]] = {}
        for c, callee, method in self.edges:
            if c == caller:
                out.setdefault(callee, set()).add(method)
        return {k: frozenset(v) for k, v in out.items()}

    def callers(self) -> list[str]:
        return sorted(self.declared, key=lambda c: (c != HOST, c))

    def matrix(self) -> list[tuple[str, str, str, Decision]]:
        """Every declared or offered (caller, callee, method) with its decision, sorted."""
        triples = {
            (caller, callee, method)
            for caller, calls in self.declared.items()
            for callee, methods in calls.items()
            for method in methods
        }
        triples |= {
            (caller, callee, method)
            for callee, services in self.offered.items()
            for method, callers in services.items()
            for caller in callers
        }
        return [(a, b, m, self.evaluate(a, b, m)) for a, b, m in sorted(triples)]

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical encoding of the allowed edges and isolated set;
        later carried in attestation evidence."""
        canon = msgpack.packb([sorted(self.edges), sorted(self.isolated)], use_bin_type=True)
        return hashlib.sha256(canon).hexdigest()
