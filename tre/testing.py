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
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from ._config import HostPolicy, TREConfig
from ._errors import ConfigError
from ._loader import DomainSpec, check_spec, load_domain_dir
from ._manifest import parse_manifest
from ._plugin import Domain
from ._runtime import TRE, open_tre

__all__ = ["load_domain_dir", "open_test_tre", "spec"]


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


@contextlib.asynccontextmanager
async def open_test_tre(
    *domains: DomainSpec,
    host_calls: Mapping[str, Iterable[str]] | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    enable: Iterable[str] = (),
) -> AsyncIterator[TRE]:
    """Boot a TRE holding just ``domains`` (plus installed plugins named in ``enable``)."""
    config = TREConfig(
        name="test",
        path="<test>",
        enable=tuple(enable),
        host=HostPolicy(
            calls={d: frozenset(ms) for d, ms in (host_calls or {}).items()},
        ),
        settings=dict(settings or {}),
    )
    async with open_tre(config, domains=domains) as t:
        yield t
