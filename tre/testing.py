"""Helpers for domain plugin authors' tests (pytest-trio).

Boot a small TRE around your domain and call it as the host::

    from tre.testing import open_test_tre, spec

    async def test_ping():
        async with open_test_tre(
            spec(Pinger, services={"ping": ["host"]}),
            host_calls={"pinger": ["ping"]},
        ) as t:
            assert await t.call("pinger", "ping", "x") == "x"

``spec`` builds a manifest in code (defaults for everything not given);
``load_domain_dir`` loads a real plugin folder with its ``domain.toml``.
Use pytest-trio's ``autojump_clock`` fixture to make deadlines and rate limits instant.

A domain that uses a device port claims it (``spec(..., ports=["modem"])``) and the test
declares and grants it, without a TOML config, then plays the device through
``t.port(name)``::

    async with open_test_tre(
        spec(Mno, ports=["modem"]),
        host_calls={"mno": ["signal"]},
        ports={"modem": ["mno"]},  # exclusive, granted to mno
    ) as t:
        ...
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from ._config import HostPolicy, PortSpec, TREConfig, parse_config
from ._errors import ConfigError
from ._loader import DomainSpec, check_spec, load_domain_dir
from ._manifest import parse_manifest
from ._plugin import Domain
from ._runtime import TRE, open_tre

__all__ = ["PortGrant", "load_domain_dir", "open_test_tre", "spec"]


def spec(
    cls: type[Domain],
    *,
    id: str | None = None,
    services: Mapping[str, Iterable[str]] | None = None,
    calls: Mapping[str, Iterable[str]] | None = None,
    **fields: Any,
) -> DomainSpec:
    """A :class:`~tre.DomainSpec` for ``cls`` with a manifest built in code.

    ``id`` defaults to the lower-cased class name; ``services`` maps each service to the
    callers it allows; ``calls`` maps callee ids to the methods called. Any other manifest
    key (``isolated``, ``quotas={...}``, ``abort={...}``, ``default_deadline``...) may be
    given as a keyword. The result is validated exactly like a ``domain.toml``.
    """
    data: dict[str, Any] = {
        "id": id or cls.__name__.lower(),
        "owner": "test",
        "version": "0.0.0",
        "svn": 0,
        # The class is handed over directly, so the entry is only a label: __name__ keeps it
        # valid for classes defined inside a test function.
        "entry": f"{cls.__module__}:{cls.__name__}",
    }
    if not (isinstance(cls, type) and issubclass(cls, Domain)):
        raise ConfigError(f"<spec {id or cls!r}>", "entry", f"{cls!r} is not a tre.Domain subclass")
    if services is None:
        services = {name: [] for name in cls.service_names()}
    data["services"] = {name: {"allow": list(allow)} for name, allow in services.items()}
    data["calls"] = [
        {"domain": callee, "methods": list(methods)} for callee, methods in (calls or {}).items()
    ]
    data.update(fields)
    return check_spec(parse_manifest(data, f"<spec {data['id']}>"), cls)


#: What ``open_test_tre(ports=...)`` takes for one port: the ids of the domains granted an
#: exclusive port, a ``[ports.NAME]`` table of the config, or a :class:`~tre.PortSpec`.
PortGrant = PortSpec | Mapping[str, Any] | Iterable[str]


def _port_table(name: str, grant: PortGrant) -> Mapping[str, Any]:
    if isinstance(grant, PortSpec):
        if grant.name != name:
            raise ConfigError("<test>", f"ports.{name}", f"is a PortSpec named {grant.name!r}")
        return {
            "exclusive": grant.exclusive,
            "domains": sorted(grant.domains),
            "description": grant.description,
            "buffer": grant.buffer,
        }
    if isinstance(grant, Mapping):
        return grant
    if isinstance(grant, str):  # one id is iterable too, as its letters: refuse it
        raise ConfigError("<test>", f"ports.{name}", "give a list of domain ids, not a str")
    return {"domains": list(grant)}


def _declare_ports(ports: Mapping[str, PortGrant]) -> dict[str, PortSpec]:
    """The ``[ports]`` of a TRE config from ``open_test_tre``'s forms, validated like a
    config file (a bad one raises :class:`~tre.ConfigError` naming the key)."""
    tables = {name: _port_table(name, grant) for name, grant in ports.items()}
    return dict(parse_config({"ports": tables}, "<test>").ports)


@contextlib.asynccontextmanager
async def open_test_tre(
    *domains: DomainSpec,
    host_calls: Mapping[str, Iterable[str]] | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    enable: Iterable[str] = (),
    ports: Mapping[str, PortGrant] | None = None,
) -> AsyncIterator[TRE]:
    """Boot a TRE holding just ``domains`` (plus installed plugins named in ``enable``).

    ``ports`` declares device ports, as a config's ``[ports.NAME]`` tables would: port
    name -> the ids of the domains it is granted to (an exclusive port with the default
    buffer), or a table with the config's keys (``{"exclusive": False, "domains":
    ["a", "b"], "buffer": 64}``), or a :class:`~tre.PortSpec` of that name. Each domain
    must still claim the port in its manifest (``spec(..., ports=["modem"])``).
    """
    config = TREConfig(
        name="test",
        path="<test>",
        enable=tuple(enable),
        host=HostPolicy(
            calls={d: frozenset(ms) for d, ms in (host_calls or {}).items()},
        ),
        settings=dict(settings or {}),
        ports=_declare_ports(ports or {}),
    )
    async with open_tre(config, domains=domains) as t:
        yield t
