"""What a provisioned device boots: the config's domains, as changed by installs.

The config a device was provisioned with names its factory domains. Installs after that
(``tre install``) are recorded in the ``domains`` table: a row whose source is
``package:domains/<id>/<counter>`` runs the code of that folder of the state (replacing the
config's domain of the same id, if any), and a removed row (``tre remove``) keeps the
config's domain of that id from booting. Each installed package is also the domain's
integrity reference: the files it lists, re-checked against the signature of the owner
recorded at install.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import attestation

from ._config import TREConfig
from ._errors import ConfigError, StorageError
from ._integrity import check_folder
from ._lifecycle import DomainLifecycle
from ._loader import DomainSpec, load_domain_dir, load_plugin, resolve
from ._manifest import load_manifest, parse_manifest
from ._plugin import Domain

if TYPE_CHECKING:
    from ._device import DomainRecord

__all__ = [
    "PACKAGE_DIR",
    "PACKAGE_SOURCE",
    "device_specs",
    "package_folder",
    "package_references",
    "package_source",
    "record_spec",
    "untrusted_packages",
]

#: Installed packages live in ``STATE/domains/<id>/<counter>/``.
PACKAGE_DIR = "domains"
PACKAGE_SOURCE = "package:"


def package_source(domain_id: str, counter: int) -> str:
    return f"{PACKAGE_SOURCE}{PACKAGE_DIR}/{domain_id}/{counter}"


def package_folder(state_dir: Path, source: str) -> Path | None:
    """The folder of an installed package, or None for a factory domain."""
    if not source.startswith(PACKAGE_SOURCE):
        return None
    rel = source[len(PACKAGE_SOURCE) :]
    parts = rel.split("/")
    if (
        len(parts) != 3
        or parts[0] != PACKAGE_DIR
        or not (parts[2].isascii() and parts[2].isdigit())
    ):
        raise StorageError(f"the domains table holds a malformed source {source!r}")
    attestation.check_domain_id(parts[1])
    return Path(state_dir) / rel


def record_spec(state_dir: Path, record: DomainRecord) -> DomainSpec:
    """Load the code a domain record points at (package folder, plugin or config path)."""
    folder = package_folder(state_dir, record.source)
    if folder is not None:
        return load_domain_dir(folder, strict=True)
    kind, _, where = record.source.partition(":")
    if kind == "plugin":
        return load_plugin(where)
    if kind == "path":
        return load_domain_dir(where)
    raise StorageError(f"the domains table holds an unknown source {record.source!r}")


class _Untrusted(Domain):
    """Stands in for a domain whose code was not imported: it is locked at boot and never
    instantiated (see :func:`untrusted_packages`)."""


def _stand_in(folder: Path | None, record: DomainRecord) -> DomainSpec:
    """A spec for a domain whose code must not run: its manifest if that at least parses
    (a TOML file, no code), else a minimal one; the class is never instantiated."""
    try:
        if folder is None:
            raise ConfigError("<installed>", "", "no folder")
        manifest = load_manifest(folder / "domain.toml")
        if manifest.id != record.id:
            raise ConfigError(manifest.path, "id", "not the installed domain")
    except ConfigError:
        manifest = parse_manifest(
            {
                "id": record.id,
                "owner": record.owner,
                "version": "0",
                "svn": record.svn,
                "entry": "untrusted:Untrusted",
            },
            f"<{record.id}: untrusted>",
        )
    return DomainSpec(manifest, _Untrusted)


def _folder(state_dir: Path, record: DomainRecord) -> Path | None:
    try:
        return package_folder(state_dir, record.source)
    except (StorageError, attestation.AttestationError):
        return None


def untrusted_packages(state_dir: Path, records: Mapping[str, DomainRecord]) -> dict[str, str]:
    """Installed-package domains whose folder does not match its verified package, measured
    BEFORE any of their code is imported (importing runs a module's top level, which must
    not happen for code that fails the check): domain id -> why. Their code is never
    loaded; the boot locks them."""
    references, problems = package_references(records)
    untrusted = dict(problems)
    for domain_id, reference in references.items():
        record = records[domain_id]
        folder = _folder(state_dir, record)
        if folder is None:
            untrusted[domain_id] = "its recorded folder is malformed"
            continue
        try:
            problem = check_folder(domain_id, reference, folder)
        except OSError as exc:
            untrusted[domain_id] = f"its code cannot be read ({exc.strerror})"
            continue
        if problem is not None:
            untrusted[domain_id] = problem.describe()
    return untrusted


def device_specs(
    state_dir: Path,
    config: TREConfig,
    records: Mapping[str, DomainRecord],
    extra: Iterable[DomainSpec] = (),
    untrusted: Iterable[str] = (),
) -> list[DomainSpec]:
    """The specs a device boots, in boot order: the config's (plus ``extra``), minus removed
    domains, with installed packages in place of (or beside) the config's. An ``untrusted``
    package domain gets a stand-in spec: its code is not imported."""
    packaged: list[DomainSpec] = []
    skip: set[str] = set()
    untrusted = set(untrusted)
    for domain_id, record in sorted(records.items()):
        if record.state is DomainLifecycle.REMOVED:
            skip.add(domain_id)
        elif record.source.startswith(PACKAGE_SOURCE):
            skip.add(domain_id)
            if domain_id in untrusted or record.state is DomainLifecycle.LOCKED:
                packaged.append(_stand_in(_folder(state_dir, record), record))
            else:
                packaged.append(record_spec(state_dir, record))
    specs = [s for s in resolve(config, extra) if s.id not in skip]
    seen = {s.id: s.manifest.path for s in specs}
    for spec in packaged:
        if spec.id in seen:  # an ``extra`` spec built in code with the same id
            raise ConfigError(spec.manifest.path, "id", f"{spec.id!r} is also defined")
        specs.append(spec)
    return sorted(specs, key=lambda s: (s.manifest.boot_order, s.id))


def package_references(
    records: Mapping[str, DomainRecord],
) -> tuple[dict[str, dict[str, bytes]], dict[str, str]]:
    """The integrity reference of every domain installed from a package (path -> SHA-256,
    from the stored package, re-verified against the owner recorded at install), and the
    domains whose stored package no longer verifies (id -> why: they are locked)."""
    references: dict[str, dict[str, bytes]] = {}
    problems: dict[str, str] = {}
    for domain_id, record in records.items():
        if record.package is None or record.state is DomainLifecycle.REMOVED:
            continue
        role = record.role
        try:
            if role is None:
                raise attestation.MalformedPackage("no owner role recorded")
            package = attestation.installed_package(
                record.package, role, attestation.domain_target(domain_id)
            )
        except attestation.UpdateError as exc:
            problems[domain_id] = f"installed package: {exc.message}"
            continue
        references[domain_id] = {path: info.sha256 for path, info in package.files.items()}
    return references, problems
