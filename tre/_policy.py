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

Device ports (tre/_ports.py) follow the same rule: a domain may open a port only when its
manifest *claims* it and the config declares it and *grants* it to the domain.
:meth:`Policy.check_port` says whether and why (the kernel's :class:`PortRegistry` asks it
on every ``ctx.open_port``); its checks, in order, leak nothing about unclaimed ports:

1. the domain must be installed -> else NO_SUCH_DOMAIN (only for a grant to a domain that
   is not, in the listing of ``tre policy show``; a running domain is installed);
2. the manifest must claim the port -> else PORT_DENIED;
3. the config must declare it -> else NO_SUCH_PORT;
4. the config must grant it to the domain -> else PORT_DENIED.

Whether an exclusive port is free is not policy but state: the registry checks it after.

The digest (carried in attestation evidence) covers the effective policy: the allowed call
edges, the isolated domains and, per port someone may open, its exclusivity and the
domains that may open it. Offers, grants and claims nobody can use change nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import attrs
import msgpack

from ._config import PortSpec
from ._errors import CallError, Denied, NoSuchDomain, NoSuchMethod
from ._manifest import HOST, Manifest

__all__ = ["Decision", "Policy", "PortDecision"]


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
class PortDecision:
    """The result of :meth:`Policy.check_port`: may the domain open the port, and why.

    ``reason`` never names the port or the domain (the kernel records it next to a name it
    has shortened first: a hostile domain chooses the names it asks for)."""

    allowed: bool
    code: str  # "OK", "PORT_DENIED", "NO_SUCH_PORT" or "NO_SUCH_DOMAIN"
    reason: str


_PORT_OK = PortDecision(True, "OK", "claimed in its manifest and granted by the TRE config")
_NOT_INSTALLED = PortDecision(False, "NO_SUCH_DOMAIN", "granted to a domain that is not installed")
_NOT_CLAIMED = PortDecision(False, "PORT_DENIED", "not claimed in its manifest")
_NOT_DECLARED = PortDecision(False, "NO_SUCH_PORT", "not declared in the TRE config")
_NOT_GRANTED = PortDecision(False, "PORT_DENIED", "not granted by the TRE config")


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
    #: port name -> its declaration in the config (exclusivity, grant, buffer)
    ports: Mapping[str, PortSpec] = attrs.field(factory=dict)
    #: installed domain -> the ports its manifest claims
    port_claims: Mapping[str, frozenset[str]] = attrs.field(factory=dict)
    #: declared port -> the domains that may open it: they claim it and the config grants it
    port_access: Mapping[str, frozenset[str]] = attrs.field(factory=dict)

    @classmethod
    def compile(
        cls,
        manifests: Iterable[Manifest],
        host_calls: Mapping[str, frozenset[str]] | None = None,
        *,
        ports: Mapping[str, PortSpec] | None = None,
    ) -> Policy:
        """Compile the manifests of the installed domains, what the host may call, and the
        config's device ports (``config.ports``: port name -> :class:`~tre.PortSpec`)."""
        by_id = {m.id: m for m in manifests}
        declared_ports = dict(ports or {})
        for name, spec in declared_ports.items():
            if spec.name != name:
                raise ValueError(f"port {name!r} is declared with the name {spec.name!r}")
        port_claims = {m.id: frozenset(m.ports) for m in by_id.values()}
        port_access = {
            name: frozenset(d for d in spec.domains if name in port_claims.get(d, ()))
            for name, spec in declared_ports.items()
        }
        declared: dict[str, Mapping[str, frozenset[str]]] = {
            m.id: dict(m.calls) for m in by_id.values()
        }
        declared[HOST] = dict(host_calls or {})
        offered = {m.id: dict(m.services) for m in by_id.values()}
        isolated = frozenset(m.id for m in by_id.values() if m.isolated)
        policy = cls(
            frozenset(), declared, offered, isolated, declared_ports, port_claims, port_access
        )
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

    def check_port(self, domain: str, port: str) -> PortDecision:
        """Say whether ``domain`` may open the device port ``port``, and why (the order of
        the checks is in the module docstring)."""
        if domain in self.port_access.get(port, ()):
            return _PORT_OK
        claims = self.port_claims.get(domain)
        if claims is None:
            return _NOT_INSTALLED
        if port not in claims:
            return _NOT_CLAIMED
        if port not in self.ports:
            return _NOT_DECLARED
        return _NOT_GRANTED

    def port_matrix(self) -> list[tuple[str, str, PortDecision]]:
        """Every (domain, port) that a manifest claims or the config grants, with its
        decision, sorted."""
        pairs = {(domain, port) for domain, ports in self.port_claims.items() for port in ports}
        pairs |= {(domain, name) for name, spec in self.ports.items() for domain in spec.domains}
        return [(d, p, self.check_port(d, p)) for d, p in sorted(pairs)]

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical encoding of the effective policy; carried in
        attestation evidence. It covers the allowed call edges, the isolated set and, for
        each port that some domain may open, the port's name, whether it is exclusive and
        the domains that may open it. (With no such port the encoding is the one of the
        calls alone, as before ports were part of the policy: the digest of a device on
        which no domain may open a port did not change.)"""
        canon: list[object] = [sorted(self.edges), sorted(self.isolated)]
        grants = [
            (name, self.ports[name].exclusive, sorted(domains))
            for name, domains in sorted(self.port_access.items())
            if domains
        ]
        if grants:
            canon.append(grants)
        return hashlib.sha256(msgpack.packb(canon, use_bin_type=True)).hexdigest()
