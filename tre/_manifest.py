"""Domain manifests (``domain.toml``): parsing and validation.

A manifest is what a stakeholder declares about its domain: who owns it, which code runs,
which services it offers and to whom, which services of others it calls, its quotas and
what the supervisor does when it fails. Unknown keys and bad values raise
:class:`~tre.ConfigError` naming the file and the dotted key, so a plugin author sees
``domains/oem/domain.toml: quotas.inbox_depth: must be an integer from 1 to 65536``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from ._errors import ConfigError

__all__ = [
    "HOST",
    "RESERVED_IDS",
    "AbortPolicy",
    "Manifest",
    "Quotas",
    "load_manifest",
    "parse_manifest",
]

#: The caller id of the device outside the TRE (the embedding application, later the
#: host socket). It has no manifest; its calls are granted in the TRE config.
HOST = "host"
#: Ids no domain may take: the host and the kernel's own name for system notifications.
RESERVED_IDS = frozenset({HOST, "tre", "kernel"})

# Always used with fullmatch (a trailing "$" would accept a final newline).
ID_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
METHOD_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
ENTRY_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")

AbortAction = Literal["restart", "stop", "propagate"]


@attrs.frozen
class Quotas:
    """Per-domain resource limits. Each default is chosen for a small M2M domain."""

    #: Largest request this domain accepts and largest reply it accepts back (bytes).
    max_frame_bytes: int = 64 * 1024
    #: Requests queued for this domain before callers wait (or get BUSY with wait=False).
    inbox_depth: int = 64
    #: Calls this domain may have in flight at once as a caller.
    max_outstanding: int = 64
    #: Calls per second each *other* domain may make to this one (token bucket refill).
    calls_per_second: float = 5000.0
    #: Bucket size: how many calls a caller may make at once after being idle.
    burst: int = 500
    #: Handlers of this domain that may run at the same time (worker tasks).
    concurrency: int = 1
    #: Keys this domain may hold in its keystore.
    max_keys: int = 64
    #: Bytes of sealed key rows (secrets and public keys) this domain may hold.
    max_key_bytes: int = 64 * 1024


@attrs.frozen
class AbortPolicy:
    """What the supervisor does when the domain fails (OTP one_for_one style)."""

    action: AbortAction = "restart"
    #: Restarts allowed within ``period`` seconds before the domain is stopped instead.
    max_restarts: int = 3
    period: float = 60.0


@attrs.frozen
class Manifest:
    """A validated ``domain.toml``."""

    id: str
    owner: str
    version: str
    svn: int
    entry: str
    path: str = "<memory>"
    description: str = ""
    isolated: bool = False
    boot_order: int = 100
    default_deadline: float = 5.0
    #: service name -> callers allowed to call it (domain ids or "host").
    services: Mapping[str, frozenset[str]] = attrs.field(factory=dict)
    #: callee domain id -> methods of it this domain calls.
    calls: Mapping[str, frozenset[str]] = attrs.field(factory=dict)
    quotas: Quotas = Quotas()
    abort: AbortPolicy = AbortPolicy()
    #: device ports this domain claims (``ports = ["modem"]``); the TRE config must also
    #: declare each and grant it to this domain before ``ctx.open_port`` succeeds
    ports: frozenset[str] = frozenset()

    @property
    def directory(self) -> Path | None:
        """The folder holding the manifest, or None for a manifest built in code
        (whose ``path`` is a label in angle brackets)."""
        return None if self.path.startswith("<") else Path(self.path).parent


# --- validation -------------------------------------------------------------------------

_TOP_KEYS = {
    "id",
    "owner",
    "version",
    "svn",
    "entry",
    "description",
    "isolated",
    "boot_order",
    "default_deadline",
    "services",
    "calls",
    "quotas",
    "abort",
    "ports",
}
_QUOTA_RANGES: dict[str, tuple[type, float, float]] = {
    "max_frame_bytes": (int, 64, 1 << 20),
    "inbox_depth": (int, 1, 65536),
    "max_outstanding": (int, 1, 65536),
    "calls_per_second": (float, 0.001, 1e9),
    "burst": (int, 1, 1_000_000_000),
    "concurrency": (int, 1, 64),
    "max_keys": (int, 0, 100_000),
    "max_key_bytes": (int, 0, 1 << 30),
}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


class _Reader:
    """Pulls typed values out of a TOML table, naming file and key on every error."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.path, key, problem)

    def table(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        for k in value:
            if k not in allowed:
                where = f"{key}.{k}" if key else k
                raise self.fail(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def string(self, value: Any, key: str, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, "must be a non-empty string")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(key, f"{value!r} does not match {pattern.pattern}")
        return value

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise self.fail(key, "must be a string")
        return value

    def integer(self, value: Any, key: str, lo: float, hi: float) -> int:
        if type(value) is not int or not lo <= value <= hi:
            raise self.fail(key, f"must be an integer from {_num(lo)} to {_num(hi)}")
        return value

    def number(self, value: Any, key: str, lo: float, hi: float) -> float:
        problem = f"must be a number from {_num(lo)} to {_num(hi)}"
        if type(value) not in (int, float) or not lo <= value <= hi:  # NaN fails too
            raise self.fail(key, problem)
        return float(value)  # in range, so finite and never an overflow

    def boolean(self, value: Any, key: str) -> bool:
        if type(value) is not bool:
            raise self.fail(key, "must be true or false")
        return value

    def id_list(self, value: Any, key: str, *, allow_host: bool) -> frozenset[str]:
        if not isinstance(value, list):
            raise self.fail(key, "must be a list of domain ids")
        out = set()
        for i, item in enumerate(value):
            name = self.string(item, f"{key}[{i}]")
            if not (
                ID_RE.fullmatch(name)
                and (name not in RESERVED_IDS or (allow_host and name == HOST))
            ):
                raise self.fail(f"{key}[{i}]", f"{name!r} is not a valid caller id")
            out.add(name)
        return frozenset(out)


def parse_manifest(data: Mapping[str, Any], path: str = "<memory>") -> Manifest:
    """Validate a manifest already parsed from TOML (or built in code by tests)."""
    r = _Reader(path)
    data = r.table(dict(data), "", _TOP_KEYS)
    for required in ("id", "owner", "version", "svn", "entry"):
        if required not in data:
            raise r.fail(required, "is required")
    domain_id = r.string(data["id"], "id", ID_RE)
    if domain_id in RESERVED_IDS:
        raise r.fail("id", f"{domain_id!r} is reserved")
    isolated = r.boolean(data.get("isolated", False), "isolated")

    services: dict[str, frozenset[str]] = {}
    raw_services = data.get("services", {})
    if not isinstance(raw_services, dict):
        raise r.fail("services", "must be a table of [services.NAME] tables")
    for name, spec in raw_services.items():
        key = f"services.{name}"
        if not METHOD_RE.fullmatch(name):
            raise r.fail(key, f"service name {name!r} does not match {METHOD_RE.pattern}")
        spec = r.table(spec, key, {"allow"})
        allow = r.id_list(spec.get("allow", []), f"{key}.allow", allow_host=True)
        if domain_id in allow:
            raise r.fail(f"{key}.allow", "a domain cannot list itself as a caller")
        if isolated and allow:
            raise r.fail(f"{key}.allow", "an isolated domain cannot allow callers")
        services[name] = allow

    calls: dict[str, frozenset[str]] = {}
    raw_calls = data.get("calls", [])
    if not isinstance(raw_calls, list):
        raise r.fail("calls", "must be an array of tables ([[calls]])")
    if isolated and raw_calls:
        raise r.fail("calls", "an isolated domain cannot call other domains")
    for i, entry in enumerate(raw_calls):
        key = f"calls[{i}]"
        entry = r.table(entry, key, {"domain", "methods"})
        if "domain" not in entry or "methods" not in entry:
            raise r.fail(key, "needs both 'domain' and 'methods'")
        callee = r.string(entry["domain"], f"{key}.domain", ID_RE)
        if callee in RESERVED_IDS or callee == domain_id:
            raise r.fail(f"{key}.domain", f"{callee!r} cannot be called")
        methods = entry["methods"]
        if not isinstance(methods, list) or not methods:
            raise r.fail(f"{key}.methods", "must be a non-empty list of method names")
        names = {r.string(m, f"{key}.methods[{j}]", METHOD_RE) for j, m in enumerate(methods)}
        calls[callee] = calls.get(callee, frozenset()) | names

    quotas = Quotas()
    if "quotas" in data:
        q = r.table(data["quotas"], "quotas", set(_QUOTA_RANGES))
        values: dict[str, Any] = {}
        for name, (kind, lo, hi) in _QUOTA_RANGES.items():
            if name in q:
                reader = r.integer if kind is int else r.number
                values[name] = reader(q[name], f"quotas.{name}", lo, hi)
        quotas = Quotas(**values)

    abort = AbortPolicy()
    if "abort" in data:
        a = r.table(data["abort"], "abort", {"action", "max_restarts", "period"})
        action = a.get("action", "restart")
        if action not in ("restart", "stop", "propagate"):
            raise r.fail("abort.action", "must be one of restart, stop, propagate")
        abort = AbortPolicy(
            action=action,
            max_restarts=r.integer(a.get("max_restarts", 3), "abort.max_restarts", 0, 1000),
            period=r.number(a.get("period", 60.0), "abort.period", 0.001, 86400 * 365),
        )

    ports: set[str] = set()
    raw_ports = data.get("ports", [])
    if not isinstance(raw_ports, list):
        raise r.fail("ports", "must be a list of port names")
    for i, item in enumerate(raw_ports):
        ports.add(r.string(item, f"ports[{i}]", ID_RE))

    return Manifest(
        id=domain_id,
        owner=r.string(data["owner"], "owner"),
        version=r.string(data["version"], "version"),
        svn=r.integer(data["svn"], "svn", 0, 2**31 - 1),
        entry=r.string(data["entry"], "entry", ENTRY_RE),
        path=path,
        description=r.text(data.get("description", ""), "description"),
        isolated=isolated,
        boot_order=r.integer(data.get("boot_order", 100), "boot_order", 0, 1_000_000),
        default_deadline=r.number(
            data.get("default_deadline", 5.0), "default_deadline", 0.001, 3600
        ),
        services=services,
        calls=calls,
        quotas=quotas,
        abort=abort,
        ports=frozenset(ports),
    )


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a ``domain.toml`` file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), "", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(p), "", "is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), "", f"invalid TOML: {exc}") from None
    return parse_manifest(data, str(p))
