"""tre/_policy.py: default deny, both manifests must agree, isolated domains have no channel."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from typing import Any

import attrs
import pytest

import tre
from tre import HOST, Decision, Manifest, Policy


def manifest(domain_id: str, **fields: Any) -> Manifest:
    data: dict[str, Any] = {
        "id": domain_id,
        "owner": "t",
        "version": "1",
        "svn": 0,
        "entry": "m:C",
        **fields,
    }
    return tre.parse_manifest(data, f"<{domain_id}>")


def svc(**allow: Iterable[str]) -> dict[str, Any]:
    return {name: {"allow": list(callers)} for name, callers in allow.items()}


def calls(**methods: Iterable[str]) -> list[dict[str, Any]]:
    return [{"domain": d, "methods": list(ms)} for d, ms in methods.items()]


def world() -> list[Manifest]:
    return [
        manifest(
            "oem",
            services=svc(
                info=["host", "meter", "mno"],
                time=["host", "meter"],
                timestamp=["meter"],
                secret=[],
            ),
        ),
        manifest(
            "meter",
            services=svc(latest=["host"], history=["host", "mno"]),
            calls=calls(oem=["info", "timestamp", "reboot", "secret"], ghost=["x"], vault=["peek"]),
        ),
        manifest("mno", services=svc(status=["host"]), calls=calls(oem=["info", "timestamp"])),
        manifest("vault", isolated=True, services=svc(peek=[])),
        manifest("lonely"),  # offers nothing, calls nothing, not isolated
    ]


HOST_CALLS = {
    "oem": frozenset({"info", "timestamp"}),
    "meter": frozenset({"latest", "history"}),
    "vault": frozenset({"peek"}),
    "ghost": frozenset({"x"}),
    "mno": frozenset({"reboot"}),
}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.compile(world(), HOST_CALLS)


ERRORS: dict[str, type[tre.CallError]] = {
    "DENIED": tre.Denied,
    "NO_SUCH_DOMAIN": tre.NoSuchDomain,
    "NO_SUCH_METHOD": tre.NoSuchMethod,
}

# (caller, callee, method, expected code, substring of the reason)
TABLE: list[tuple[str, str, str, str, str]] = [
    # allowed: both sides agree
    ("meter", "oem", "info", "OK", "both manifests agree"),
    ("meter", "oem", "timestamp", "OK", "both manifests agree"),
    ("mno", "oem", "info", "OK", "both manifests agree"),
    # the caller does not declare it (even though the callee would allow it)
    ("meter", "oem", "time", "DENIED", "'meter' does not declare oem.time"),
    ("mno", "meter", "history", "DENIED", "'mno' does not declare meter.history"),
    ("meter", "meter", "latest", "DENIED", "does not declare meter.latest"),
    ("lonely", "oem", "info", "DENIED", "'lonely' does not declare oem.info"),
    ("stranger", "oem", "info", "DENIED", "'stranger' does not declare oem.info"),
    ("oem", HOST, "anything", "DENIED", "does not declare host.anything"),
    # declared, but the callee is not installed
    ("meter", "ghost", "x", "NO_SUCH_DOMAIN", "no domain 'ghost' is installed"),
    # declared, but the callee is isolated
    ("meter", "vault", "peek", "DENIED", "'vault' is isolated"),
    # the caller is isolated
    ("vault", "oem", "info", "DENIED", "'vault' is isolated"),
    ("vault", "vault", "peek", "DENIED", "'vault' is isolated"),
    # declared, but the callee does not offer the method
    ("meter", "oem", "reboot", "NO_SUCH_METHOD", "'oem' offers no service 'reboot'"),
    # declared and offered, but the callee does not allow this caller
    ("mno", "oem", "timestamp", "DENIED", "oem.timestamp does not allow 'mno'"),
    ("meter", "oem", "secret", "DENIED", "oem.secret does not allow 'meter'"),
    # the host: granted by the config ...
    (HOST, "oem", "info", "OK", "both manifests agree"),
    (HOST, "meter", "latest", "OK", "both manifests agree"),
    (HOST, "meter", "history", "OK", "both manifests agree"),
    # ... granted, but the callee's manifest does not allow the host
    (HOST, "oem", "timestamp", "DENIED", "oem.timestamp does not allow 'host'"),
    # ... not granted, although the callee allows the host
    (HOST, "oem", "time", "DENIED", "'host' does not declare oem.time"),
    (HOST, "mno", "status", "DENIED", "'host' does not declare mno.status"),
    # ... granted to an isolated, a missing domain, a missing method
    (HOST, "vault", "peek", "DENIED", "'vault' is isolated"),
    (HOST, "ghost", "x", "NO_SUCH_DOMAIN", "no domain 'ghost' is installed"),
    (HOST, "mno", "reboot", "NO_SUCH_METHOD", "'mno' offers no service 'reboot'"),
]


@pytest.mark.parametrize(
    ("caller", "callee", "method", "code", "reason"),
    [pytest.param(*row, id="{}->{}.{}".format(*row[:3])) for row in TABLE],
)
def test_policy_table(
    policy: Policy, caller: str, callee: str, method: str, code: str, reason: str
) -> None:
    d = policy.evaluate(caller, callee, method)
    assert isinstance(d, Decision)
    assert d.code == code
    assert d.allowed is (code == "OK")
    assert reason in d.reason
    assert ((caller, callee, method) in policy.edges) is d.allowed
    if d.allowed:
        policy.enforce(caller, callee, method)  # returns without raising
        assert method in policy.routes(caller).get(callee, ())
    else:
        err = d.error()
        assert type(err) is ERRORS[code]
        assert err.code == code
        with pytest.raises(ERRORS[code]) as info:
            policy.enforce(caller, callee, method)
        assert type(info.value) is ERRORS[code]
        assert str(info.value) == d.reason
        assert method not in policy.routes(caller).get(callee, ())


def test_table_covers_every_outcome() -> None:
    assert {row[3] for row in TABLE} == {"OK", "DENIED", "NO_SUCH_DOMAIN", "NO_SUCH_METHOD"}


def test_fast_path_agrees_with_the_full_check(policy: Policy) -> None:
    for caller, callee, method, _, _ in TABLE:
        assert policy.evaluate(caller, callee, method) == policy._check(caller, callee, method)


@pytest.mark.parametrize(
    ("callee", "method"),
    [
        ("oem", "time"),  # exists, offers it, allows others
        ("oem", "timestamp"),  # exists, does not allow the prober
        ("oem", "nope"),  # exists, no such method
        ("vault", "peek"),  # isolated
        ("ghost", "x"),  # not installed
        ("never-heard-of", "y"),  # not installed, not mentioned anywhere
        (HOST, "info"),
    ],
)
def test_undeclared_probe_learns_nothing(policy: Policy, callee: str, method: str) -> None:
    """A caller that did not declare (callee, method) gets the same answer, with a reason
    made only of what it asked, whether or not the target exists."""
    d = policy.evaluate("lonely", callee, method)
    assert d == Decision(False, "DENIED", f"'lonely' does not declare {callee}.{method}")
    with pytest.raises(tre.Denied) as info:
        policy.enforce("lonely", callee, method)
    assert not isinstance(info.value, tre.NoSuchDomain | tre.NoSuchMethod)


def test_decision_error_classes() -> None:
    assert type(Decision(False, "NO_SUCH_DOMAIN", "r").error()) is tre.NoSuchDomain
    assert type(Decision(False, "NO_SUCH_METHOD", "r").error()) is tre.NoSuchMethod
    assert type(Decision(False, "DENIED", "r").error()) is tre.Denied
    assert str(Decision(False, "DENIED", "why").error()) == "why"
    for cls in (tre.Denied, tre.NoSuchDomain, tre.NoSuchMethod):
        assert issubclass(cls, tre.CallError)


def test_edges_are_exactly_the_allowed_triples(policy: Policy) -> None:
    assert policy.edges == {
        ("meter", "oem", "info"),
        ("meter", "oem", "timestamp"),
        ("mno", "oem", "info"),
        (HOST, "oem", "info"),
        (HOST, "meter", "latest"),
        (HOST, "meter", "history"),
    }
    assert policy.isolated == {"vault"}


def test_routes(policy: Policy) -> None:
    assert policy.routes("meter") == {"oem": frozenset({"info", "timestamp"})}
    assert policy.routes("mno") == {"oem": frozenset({"info"})}
    assert policy.routes(HOST) == {
        "oem": frozenset({"info"}),
        "meter": frozenset({"latest", "history"}),
    }
    assert policy.routes("oem") == {}
    assert policy.routes("vault") == {}
    assert policy.routes("lonely") == {}
    assert policy.routes("stranger") == {}
    # nobody has a route to the isolated domain
    assert all("vault" not in policy.routes(c) for c in policy.callers())


def test_callers_host_first(policy: Policy) -> None:
    assert policy.callers() == [HOST, "lonely", "meter", "mno", "oem", "vault"]


def test_matrix_lists_declared_and_offered_triples(policy: Policy) -> None:
    rows = policy.matrix()
    triples = [(a, b, m) for a, b, m, _ in rows]
    assert triples == sorted(triples)
    assert len(set(triples)) == len(triples)
    declared = {("meter", "oem", m) for m in ("info", "timestamp", "reboot", "secret")} | {
        ("meter", "ghost", "x"),
        ("meter", "vault", "peek"),
        ("mno", "oem", "info"),
        ("mno", "oem", "timestamp"),
        (HOST, "oem", "info"),
        (HOST, "oem", "timestamp"),
        (HOST, "meter", "latest"),
        (HOST, "meter", "history"),
        (HOST, "vault", "peek"),
        (HOST, "ghost", "x"),
        (HOST, "mno", "reboot"),
    }
    offered = {
        (HOST, "oem", "info"),
        ("meter", "oem", "info"),
        ("mno", "oem", "info"),
        (HOST, "oem", "time"),
        ("meter", "oem", "time"),
        ("meter", "oem", "timestamp"),
        (HOST, "meter", "latest"),
        (HOST, "meter", "history"),
        ("mno", "meter", "history"),
        (HOST, "mno", "status"),
    }
    assert set(triples) == declared | offered
    for a, b, m, d in rows:
        assert d == policy.evaluate(a, b, m)
    allowed = {(a, b, m) for a, b, m, d in rows if d.allowed}
    assert allowed == policy.edges


def test_no_host_calls() -> None:
    p = Policy.compile(world())
    assert p.routes(HOST) == {}
    assert p.evaluate(HOST, "oem", "info").code == "DENIED"
    assert Policy.compile(world(), {}).digest() == p.digest()


def test_empty_policy_denies_everything() -> None:
    p = Policy.compile([])
    assert p.edges == frozenset()
    assert p.matrix() == []
    assert p.evaluate(HOST, "oem", "info").code == "DENIED"
    assert Policy.compile([], {"oem": frozenset({"info"})}).evaluate(HOST, "oem", "info").code == (
        "NO_SUCH_DOMAIN"
    )


# --- digest -----------------------------------------------------------------------------------


def test_digest_is_sha256_hex(policy: Policy) -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", policy.digest())


def test_digest_stable_regardless_of_order() -> None:
    ms = world()
    reference = Policy.compile(ms, HOST_CALLS).digest()
    rng = random.Random(1)
    for _ in range(10):
        shuffled = ms[:]
        rng.shuffle(shuffled)
        host = dict(rng.sample(sorted(HOST_CALLS.items()), len(HOST_CALLS)))
        assert Policy.compile(shuffled, host).digest() == reference
    # freshly parsed manifests (new objects, same content) give the same digest
    assert Policy.compile(world(), HOST_CALLS).digest() == reference


def _edit(ms: list[Manifest], domain_id: str, **changes: Any) -> list[Manifest]:
    return [attrs.evolve(m, **changes) if m.id == domain_id else m for m in ms]


@pytest.mark.parametrize(
    "change",
    [
        "callee drops a caller",
        "caller drops a call",
        "callee allows one more caller",
        "host grant removed",
        "host grant added",
        "domain becomes isolated",
        "isolated domain no longer isolated",
    ],
)
def test_digest_changes_with_one_edge(change: str) -> None:
    ms = world()
    host = dict(HOST_CALLS)
    oem = next(m for m in ms if m.id == "oem")
    mno = next(m for m in ms if m.id == "mno")
    if change == "callee drops a caller":
        ms = _edit(ms, "oem", services={**oem.services, "info": frozenset({"host", "meter"})})
    elif change == "caller drops a call":
        ms = _edit(ms, "mno", calls={"oem": frozenset({"timestamp"})})
    elif change == "callee allows one more caller":
        ms = _edit(ms, "oem", services={**oem.services, "timestamp": frozenset({"meter", "mno"})})
        assert "timestamp" in mno.calls["oem"]
    elif change == "host grant removed":
        host["meter"] = frozenset({"latest"})
    elif change == "host grant added":
        host["mno"] = frozenset({"reboot", "status"})
    elif change == "domain becomes isolated":
        ms = _edit(ms, "lonely", isolated=True)
    elif change == "isolated domain no longer isolated":
        ms = _edit(ms, "vault", isolated=False)
    before = Policy.compile(world(), HOST_CALLS)
    after = Policy.compile(ms, host)
    assert after.digest() != before.digest()


def test_digest_ignores_offers_nobody_takes() -> None:
    """The digest covers the effective policy (edges and isolation), not dead offers."""
    ms = world()
    oem = next(m for m in ms if m.id == "oem")
    ms = _edit(ms, "oem", services={**oem.services, "time": frozenset({"host", "meter", "mno"})})
    assert Policy.compile(ms, HOST_CALLS).digest() == Policy.compile(world(), HOST_CALLS).digest()


def test_policy_is_immutable(policy: Policy) -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.edges = frozenset()  # type: ignore[misc]
    assert isinstance(policy.edges, frozenset)
    assert isinstance(policy.isolated, frozenset)
