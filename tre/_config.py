"""The TRE config: which domains to boot, what the host may call, per-domain settings.

A config is a small TOML file (see ``examples/tre.toml``)::

    [tre]
    name = "m2m-demo"

    [domains]
    enable = ["oem", "meter", "mno", "vault"]   # plugins from the tre.domains entry points
    paths = ["my_domains/foo"]                  # folders holding a domain.toml

    [[host.calls]]                              # what the device outside the TRE may call
    domain = "oem"
    methods = ["info"]

    [settings.meter]                            # handed to the domain as ctx.settings
    interval = 0.5

    [ports.modem]                               # a device port (see tre/_ports.py)
    exclusive = true
    domains = ["mno"]                           # who may open it (it must claim it too)

Relative paths are resolved against the config file's folder. With no config at all the
embedded default (:func:`default_config`) boots every installed reference domain.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ._errors import ConfigError
from ._manifest import ID_RE, METHOD_RE, RESERVED_IDS

__all__ = [
    "HostPolicy",
    "PortSpec",
    "TREConfig",
    "default_config",
    "load_config",
    "parse_config",
]


@attrs.frozen
class HostPolicy:
    """What the host (the device outside the TRE) may call, and its quota."""

    calls: Mapping[str, frozenset[str]] = attrs.field(factory=dict)
    max_outstanding: int = 64
    #: (domain, method) pairs that only read: the most a user of role "reader" may be
    #: granted (``[host] readonly = ["oem.info", ...]``); only pairs of ``calls`` count
    readonly: frozenset[tuple[str, str]] = frozenset()


#: Bytes a port buffers in each direction unless its table says ``buffer = N``.
PORT_BUFFER = 4096
#: The largest ``buffer`` a port may have.
MAX_PORT_BUFFER = 1 << 20


@attrs.frozen
class PortSpec:
    """A device port declared in the config (``[ports.NAME]``): a physical interface of the
    device (modem, sensor, GPIO) that domains open through the kernel (see tre/_ports.py)."""

    name: str
    #: at most one claim holds the port at a time (else several granted domains share it)
    exclusive: bool = True
    #: the grant: domains that may open it (each must also claim it in its manifest)
    domains: frozenset[str] = frozenset()
    description: str = ""
    #: bytes buffered in each direction (device to domains, domains to device)
    buffer: int = PORT_BUFFER


@attrs.frozen
class TREConfig:
    name: str = "tre"
    path: str = "<default>"
    #: entry-point names in the ``tre.domains`` group
    enable: tuple[str, ...] = ()
    #: folders holding a ``domain.toml``
    paths: tuple[Path, ...] = ()
    host: HostPolicy = HostPolicy()
    #: domain id -> settings table handed to that domain (read-only)
    settings: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    #: when the code base is re-checked (seconds): interval, dormancy_after, max_age
    integrity: Mapping[str, float] = attrs.field(factory=dict)
    #: record every inter-domain call in the audit log ([audit] calls = true)
    audit_calls: bool = False
    #: port name -> its declaration ([ports.NAME])
    ports: Mapping[str, PortSpec] = attrs.field(factory=dict)


REFERENCE_DOMAINS = ("oem", "meter", "mno", "vault")
#: The keys of the [integrity] table (see tre/_integrity.py, IntegritySettings).
INTEGRITY_KEYS = ("interval", "dormancy_after", "max_age")


def default_config() -> TREConfig:
    """The embedded default: the reference domains, the host allowed their public services."""
    return TREConfig(
        name="tre-default",
        enable=REFERENCE_DOMAINS,
        host=HostPolicy(
            calls={
                "oem": frozenset({"info", "time"}),
                "meter": frozenset({"latest", "history", "selftest", "backup"}),
                "mno": frozenset(
                    {
                        "status",
                        "mid_key",
                        "install_package",
                        "mids",
                        "enable",
                        "disable",
                        "delete",
                        "authenticate",
                    }
                ),
            },
            readonly=frozenset(
                {
                    ("oem", "info"),
                    ("oem", "time"),
                    ("meter", "latest"),
                    ("meter", "history"),
                    ("mno", "status"),
                    ("mno", "mids"),
                }
            ),
        ),
    )


def parse_config(data: Mapping[str, Any], path: str = "<memory>") -> TREConfig:
    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(path, key, problem)

    def table(value: Any, key: str, allowed: set[str] | None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise fail(key, "must be a table")
        if allowed is not None:
            for k in value:
                if k not in allowed:
                    where = f"{key}.{k}" if key else k
                    raise fail(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def str_list(value: Any, key: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise fail(key, "must be a list of non-empty strings")
        return value

    top = table(
        dict(data), "", {"tre", "domains", "host", "settings", "integrity", "audit", "ports"}
    )
    tre_t = table(top.get("tre", {}), "tre", {"name"})
    name = tre_t.get("name", "tre")
    if not isinstance(name, str) or not name:
        raise fail("tre.name", "must be a non-empty string")

    dom_t = table(top.get("domains", {}), "domains", {"enable", "paths"})
    enable = str_list(dom_t.get("enable", []), "domains.enable")
    base = Path(path).parent if path not in ("<memory>", "<default>") else Path.cwd()
    paths = tuple((base / p) for p in str_list(dom_t.get("paths", []), "domains.paths"))

    host_t = table(top.get("host", {}), "host", {"calls", "max_outstanding", "readonly"})
    calls: dict[str, frozenset[str]] = {}
    raw_calls = host_t.get("calls", [])
    if not isinstance(raw_calls, list):
        raise fail("host.calls", "must be an array of tables ([[host.calls]])")
    for i, entry in enumerate(raw_calls):
        key = f"host.calls[{i}]"
        entry = table(entry, key, {"domain", "methods"})
        callee = entry.get("domain")
        if not isinstance(callee, str) or not ID_RE.fullmatch(callee) or callee in RESERVED_IDS:
            raise fail(f"{key}.domain", "must be a domain id")
        methods = str_list(entry.get("methods", []), f"{key}.methods")
        if not methods:
            raise fail(f"{key}.methods", "must name at least one method")
        for j, m in enumerate(methods):
            if not METHOD_RE.fullmatch(m):
                raise fail(f"{key}.methods[{j}]", f"{m!r} is not a method name")
        calls[callee] = calls.get(callee, frozenset()) | frozenset(methods)
    max_out = host_t.get("max_outstanding", 64)
    if type(max_out) is not int or not 1 <= max_out <= 65536:
        raise fail("host.max_outstanding", "must be an integer from 1 to 65536")
    readonly: set[tuple[str, str]] = set()
    for j, pair in enumerate(str_list(host_t.get("readonly", []), "host.readonly")):
        callee, _, method = pair.partition(".")
        if not ID_RE.fullmatch(callee) or not METHOD_RE.fullmatch(method):
            raise fail(f"host.readonly[{j}]", f"{pair!r} is not DOMAIN.METHOD")
        readonly.add((callee, method))  # (a pair host.calls lacks grants nothing)

    settings_t = table(top.get("settings", {}), "settings", None)
    settings: dict[str, Mapping[str, Any]] = {}
    for dom, values in settings_t.items():
        settings[dom] = table(values, f"settings.{dom}", None)

    integrity_t = table(top.get("integrity", {}), "integrity", set(INTEGRITY_KEYS))
    integrity: dict[str, float] = {}
    for key, value in integrity_t.items():
        if type(value) not in (int, float) or not 0.001 <= value <= 365 * 86400:
            raise fail(f"integrity.{key}", "must be a number of seconds from 0.001 to a year")
        integrity[key] = float(value)

    audit_t = table(top.get("audit", {}), "audit", {"calls"})
    audit_calls = audit_t.get("calls", False)
    if type(audit_calls) is not bool:
        raise fail("audit.calls", "must be true or false")

    ports: dict[str, PortSpec] = {}
    for port, values in table(top.get("ports", {}), "ports", None).items():
        key = f"ports.{port}"
        if not ID_RE.fullmatch(port):
            raise fail(key, f"port name {port!r} does not match {ID_RE.pattern}")
        values = table(values, key, {"exclusive", "domains", "description", "buffer"})
        exclusive = values.get("exclusive", True)
        if type(exclusive) is not bool:
            raise fail(f"{key}.exclusive", "must be true or false")
        granted = str_list(values.get("domains", []), f"{key}.domains")
        for j, domain in enumerate(granted):
            if not ID_RE.fullmatch(domain) or domain in RESERVED_IDS:
                raise fail(f"{key}.domains[{j}]", f"{domain!r} is not a domain id")
        description = values.get("description", "")
        if not isinstance(description, str):
            raise fail(f"{key}.description", "must be a string")
        buffer = values.get("buffer", PORT_BUFFER)
        if type(buffer) is not int or not 1 <= buffer <= MAX_PORT_BUFFER:
            raise fail(f"{key}.buffer", f"must be an integer from 1 to {MAX_PORT_BUFFER}")
        ports[port] = PortSpec(port, exclusive, frozenset(granted), description, buffer)

    return TREConfig(
        name=name,
        path=path,
        enable=tuple(enable),
        paths=paths,
        host=HostPolicy(calls=calls, max_outstanding=max_out, readonly=frozenset(readonly)),
        settings=settings,
        integrity=integrity,
        audit_calls=audit_calls,
        ports=ports,
    )


def load_config(path: str | Path) -> TREConfig:
    """Read and validate a TRE config file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(p), "", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(p), "", "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), "", f"invalid TOML: {exc}") from None
    return parse_config(data, str(p))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise ConfigError("<config>", "", f"a {type(value).__name__} cannot be stored with the device")


def config_to_toml(config: TREConfig) -> str:
    """A config as TOML, with every path absolute (so it can be stored elsewhere)."""
    lines = [
        "# Written by tre provision: the config this device was provisioned with.",
        "[tre]",
        f"name = {_toml_value(config.name)}",
        "",
        "[domains]",
        f"enable = {_toml_value(list(config.enable))}",
        f"paths = {_toml_value([str(p.resolve()) for p in config.paths])}",
        "",
        "[host]",
        f"max_outstanding = {config.host.max_outstanding}",
        f"readonly = {_toml_value(sorted(f'{d}.{m}' for d, m in config.host.readonly))}",
    ]
    for domain, methods in sorted(config.host.calls.items()):
        lines += ["", "[[host.calls]]", f"domain = {_toml_value(domain)}"]
        lines.append(f"methods = {_toml_value(sorted(methods))}")
    if config.audit_calls:
        lines += ["", "[audit]", "calls = true"]
    if config.integrity:
        lines += ["", "[integrity]"]
        lines += [f"{key} = {value!r}" for key, value in sorted(config.integrity.items())]
    for name, port in sorted(config.ports.items()):
        header = name if ID_RE.fullmatch(name) else _toml_value(name)
        lines += ["", f"[ports.{header}]", f"exclusive = {_toml_value(port.exclusive)}"]
        lines.append(f"domains = {_toml_value(sorted(port.domains))}")
        lines.append(f"buffer = {port.buffer}")
        if port.description:
            lines.append(f"description = {_toml_value(port.description)}")
    for domain, values in sorted(config.settings.items()):
        lines += ["", f"[settings.{domain}]"]
        for key, value in values.items():
            try:
                lines.append(f"{json.dumps(key)} = {_toml_value(value)}")
            except ConfigError as exc:
                raise ConfigError(config.path, f"settings.{domain}.{key}", exc.problem) from None
    return "\n".join(lines) + "\n"
