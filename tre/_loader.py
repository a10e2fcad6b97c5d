"""Finding domain plugins: the ``tre.domains`` entry-point group, or a folder.

Either way a plugin is a package (or a folder) holding ``domain.toml`` and the module
named by its ``entry = "module:Class"``. The loader checks that the class is a
:class:`~tre.Domain` whose ``@service`` handlers are exactly the manifest's services.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
from collections.abc import Iterable
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import attrs

from ._config import TREConfig
from ._errors import ConfigError
from ._manifest import Manifest, load_manifest
from ._plugin import Domain

__all__ = [
    "ENTRY_POINT_GROUP",
    "DomainSpec",
    "available_plugins",
    "load_domain_dir",
    "load_plugin",
    "resolve",
]

ENTRY_POINT_GROUP = "tre.domains"


@attrs.frozen
class DomainSpec:
    """A manifest together with the class it names: everything needed to boot a domain."""

    manifest: Manifest
    cls: type[Domain]

    @property
    def id(self) -> str:
        return self.manifest.id


def check_spec(manifest: Manifest, cls: object) -> DomainSpec:
    """Check that ``cls`` implements exactly the services ``manifest`` declares."""
    if not (isinstance(cls, type) and issubclass(cls, Domain)):
        raise ConfigError(manifest.path, "entry", f"{manifest.entry} is not a tre.Domain subclass")
    handlers = cls.service_names()
    for name, attr in handlers.items():
        if not inspect.iscoroutinefunction(getattr(cls, attr)):
            raise ConfigError(
                manifest.path, f"services.{name}", f"{cls.__name__}.{attr} must be an async def"
            )
    for name in manifest.services:
        if name not in handlers:
            raise ConfigError(
                manifest.path, f"services.{name}", f"{cls.__name__} has no @service handler for it"
            )
    for name in handlers:
        if name not in manifest.services:
            raise ConfigError(
                manifest.path,
                "services",
                f"{cls.__name__} has a handler {name!r} that the manifest does not declare",
            )
    return DomainSpec(manifest, cls)


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles a folder plugin's entry module from its source, every time: it never reads
    (or writes) a bytecode cache, so the code that runs is the code the integrity check
    measured, not a ``__pycache__`` file planted with a header that matches the source."""

    def get_code(self, fullname: str) -> Any:
        return self.source_to_code(self.get_data(self.path), self.path)


def _import_entry(manifest: Manifest, folder: Path | None, strict: bool = False) -> object:
    module_name, _, class_name = manifest.entry.partition(":")
    module = None
    if folder is not None:
        rel = Path(*module_name.split("."))
        candidates = [folder / rel.with_suffix(".py"), folder / rel / "__init__.py"]
        if strict:  # an installed package: its folder is the entry package itself
            candidates.append(folder / "__init__.py")
        for candidate in candidates:
            if candidate.is_file():
                unique = f"tre_plugin_{manifest.id.replace('-', '_')}"
                spec = importlib.util.spec_from_file_location(
                    unique,
                    candidate,
                    loader=_SourceOnlyLoader(unique, str(candidate)),
                    submodule_search_locations=[str(candidate.parent)]
                    if candidate.name == "__init__.py"
                    else None,
                )
                if spec is None or spec.loader is None:
                    break
                module = importlib.util.module_from_spec(spec)
                sys.modules[unique] = module
                try:
                    spec.loader.exec_module(module)
                except KeyboardInterrupt:
                    del sys.modules[unique]
                    raise
                except BaseException as exc:  # SystemExit from a module is not ours to obey
                    del sys.modules[unique]
                    raise ConfigError(
                        manifest.path, "entry", f"importing {candidate} failed: {exc!r}"
                    ) from exc
                break
    if module is None and strict:
        # Never fall back to an importable module of the same name: the code that runs
        # must be the code that was measured.
        raise ConfigError(
            manifest.path, "entry", f"the entry module {module_name} is not in {folder}"
        )
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                manifest.path, "entry", f"cannot import {module_name}: {exc}"
            ) from None
        except Exception as exc:  # the plugin's own code failed while importing
            raise ConfigError(
                manifest.path, "entry", f"importing {module_name} failed: {exc!r}"
            ) from exc
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise ConfigError(manifest.path, "entry", f"{module_name} has no {class_name}") from None


def load_domain_dir(folder: str | Path, *, strict: bool = False) -> DomainSpec:
    """Load a domain from a folder holding ``domain.toml`` and its entry module. With
    ``strict`` (an installed package), the entry module must be a file of the folder (or the
    folder's own ``__init__.py``): nothing is imported from elsewhere under its name."""
    folder = Path(folder)
    manifest = load_manifest(folder / "domain.toml")
    return check_spec(manifest, _import_entry(manifest, folder, strict))


def available_plugins() -> dict[str, metadata.EntryPoint]:
    """Installed plugins: entry-point name -> entry point."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load_plugin(name: str, where: str = "<config>") -> DomainSpec:
    """Load the plugin registered as ``name`` in the ``tre.domains`` entry-point group."""
    eps = available_plugins()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise ConfigError(
            where, "domains.enable", f"no installed domain plugin {name!r} (installed: {known})"
        )
    package = eps[name].value
    try:
        manifest_file = resources.files(package) / "domain.toml"
        with resources.as_file(manifest_file) as path:
            manifest = load_manifest(path)
    except ModuleNotFoundError as exc:
        raise ConfigError(where, "domains.enable", f"plugin {name!r}: {exc}") from None
    except ConfigError:
        raise
    except Exception as exc:  # the plugin package's own code failed while importing
        raise ConfigError(
            where, "domains.enable", f"plugin {name!r}: importing {package} failed: {exc!r}"
        ) from exc
    return check_spec(manifest, _import_entry(manifest, None))


def resolve(config: TREConfig, extra: Iterable[DomainSpec] = ()) -> list[DomainSpec]:
    """Every domain a config names, plus ``extra`` specs, in boot order. Ids must be unique."""
    specs = [load_plugin(name, config.path) for name in config.enable]
    specs += [load_domain_dir(p) for p in config.paths]
    specs += list(extra)
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.id in seen:
            raise ConfigError(
                spec.manifest.path, "id", f"{spec.id!r} is also defined by {seen[spec.id]}"
            )
        seen[spec.id] = spec.manifest.path
    return sorted(specs, key=lambda s: (s.manifest.boot_order, s.id))
