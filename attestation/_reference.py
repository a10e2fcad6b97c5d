"""Reference values: what a verifier accepts for each domain, and for the TRE itself.

A reference file (TOML or JSON; the caller reads and parses it, this module only sees the
resulting mapping)::

    require_all = true                    # optional, default true: every domain in the
                                          # evidence needs an entry below
    tre_measurements = ["<64 hex>", ...]  # optional: accepted TRE code hashes
    policy_hashes = ["<64 hex>", ...]     # optional: accepted compiled-policy hashes

    [domains.oem]
    measurements = ["<64 hex>", ...]      # required, at least one: accepted measurements
    owner_hash = "<64 hex>"               # optional: the owner key hash it must have
    min_svn = 1                           # optional, default 0: lowest acceptable svn

:func:`parse_reference` is strict (unknown keys, wrong types and malformed hex are errors
that name the key, :class:`~attestation.InvalidReference`); :func:`reference_to_dict` writes
the same shape, so a reference taken from a known-good device round-trips.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from ._dice import DIGEST_SIZE, MAX_SVN, check_domain_id
from ._errors import InvalidIdentity, InvalidReference

__all__ = ["DomainReference", "Reference", "parse_reference", "reference_to_dict"]

_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_TOP_KEYS = frozenset({"domains", "require_all", "tre_measurements", "policy_hashes"})
_DOMAIN_KEYS = frozenset({"measurements", "owner_hash", "min_svn"})


def _is_digest(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == DIGEST_SIZE


def _digests(instance: object, attribute: attrs.Attribute[frozenset[bytes]], value: object) -> None:
    if not isinstance(value, frozenset) or not all(_is_digest(v) for v in value):
        raise InvalidReference(f"{attribute.name} must be a frozenset of {DIGEST_SIZE}-byte hashes")


def _optional_digest(
    instance: object, attribute: attrs.Attribute[bytes | None], value: object
) -> None:
    if value is not None and not _is_digest(value):
        raise InvalidReference(f"{attribute.name} must be None or a {DIGEST_SIZE}-byte hash")


def _svn(instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if type(value) is not int or not 0 <= value <= MAX_SVN:
        raise InvalidReference(f"{attribute.name} must be an int in 0..{MAX_SVN}")


def _domains(
    instance: object, attribute: attrs.Attribute[Mapping[str, DomainReference]], value: object
) -> None:
    if not isinstance(value, Mapping):
        raise InvalidReference("domains must be a mapping of domain id to DomainReference")
    for name, entry in value.items():
        try:
            check_domain_id(name)
        except InvalidIdentity as exc:
            raise InvalidReference(f"domains: {exc.message}") from None
        if not isinstance(entry, DomainReference):
            raise InvalidReference(f"domains[{name!r}] must be a DomainReference")


@attrs.frozen
class DomainReference:
    """What a verifier accepts for one domain."""

    #: Accepted measurements (:func:`attestation.measure_domain`); at least one.
    measurements: frozenset[bytes] = attrs.field(validator=_digests)
    #: The owner key hash the domain must have, or None to accept any owner.
    owner_hash: bytes | None = attrs.field(default=None, validator=_optional_digest)
    #: The lowest acceptable svn.
    min_svn: int = attrs.field(default=0, validator=_svn)

    def __attrs_post_init__(self) -> None:
        if not self.measurements:
            raise InvalidReference("measurements must name at least one measurement")


@attrs.frozen
class Reference:
    """Reference values for a verifier (see the module docstring)."""

    domains: Mapping[str, DomainReference] = attrs.field(validator=_domains)
    #: Every domain in the evidence must have an entry; one without is contraindicated.
    require_all: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    #: Accepted TRE code measurements; empty: not checked.
    tre_measurements: frozenset[bytes] = attrs.field(default=frozenset(), validator=_digests)
    #: Accepted compiled-policy hashes; empty: not checked.
    policy_hashes: frozenset[bytes] = attrs.field(default=frozenset(), validator=_digests)


# --- from and to plain data ---------------------------------------------------------------


def _hex(path: str, value: object) -> bytes:
    if not isinstance(value, str) or not _HEX_DIGEST.fullmatch(value):
        raise InvalidReference(f"{path}: expected {DIGEST_SIZE * 2} hex digits (a SHA-256 hash)")
    return bytes.fromhex(value)


def _hex_list(path: str, value: object, *, non_empty: bool) -> frozenset[bytes]:
    if not isinstance(value, list):
        raise InvalidReference(f"{path}: expected a list of hex strings")
    if non_empty and not value:
        raise InvalidReference(f"{path}: must list at least one value")
    return frozenset(_hex(f"{path}[{i}]", item) for i, item in enumerate(value))


def _table(path: str, value: object, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidReference(f"{path or 'the reference'}: expected a table (mapping)")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        where = f"{path}." if path else ""
        raise InvalidReference(
            f"unknown key(s) {', '.join(where + k for k in unknown)} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )
    return value


def _domain_entry(path: str, value: object) -> DomainReference:
    table = _table(path, value, _DOMAIN_KEYS)
    if "measurements" not in table:
        raise InvalidReference(f"{path}.measurements is required")
    measurements = _hex_list(f"{path}.measurements", table["measurements"], non_empty=True)
    owner = table.get("owner_hash")
    owner_hash = None if owner is None else _hex(f"{path}.owner_hash", owner)
    min_svn = table.get("min_svn", 0)
    if type(min_svn) is not int or not 0 <= min_svn <= MAX_SVN:
        raise InvalidReference(f"{path}.min_svn: expected an integer in 0..{MAX_SVN}")
    return DomainReference(measurements=measurements, owner_hash=owner_hash, min_svn=min_svn)


def parse_reference(data: Mapping[str, Any]) -> Reference:
    """A :class:`Reference` from a parsed TOML or JSON document (see the module docstring);
    :class:`~attestation.InvalidReference` naming the key for anything malformed."""
    table = _table("", data, _TOP_KEYS)
    if "domains" not in table:
        raise InvalidReference("domains is required (it may be an empty table)")
    domains_table = table["domains"]
    if not isinstance(domains_table, Mapping):
        raise InvalidReference("domains: expected a table (mapping) of domain id to entry")
    domains = {}
    for name, entry in domains_table.items():
        try:
            domain_id = check_domain_id(name)
        except InvalidIdentity as exc:
            raise InvalidReference(f"domains.{name}: {exc.message}") from None
        domains[domain_id] = _domain_entry(f"domains.{domain_id}", entry)
    require_all = table.get("require_all", True)
    if not isinstance(require_all, bool):
        raise InvalidReference("require_all: expected true or false")
    return Reference(
        domains=domains,
        require_all=require_all,
        tre_measurements=_hex_list(
            "tre_measurements", table.get("tre_measurements", []), non_empty=False
        ),
        policy_hashes=_hex_list("policy_hashes", table.get("policy_hashes", []), non_empty=False),
    )


def reference_to_dict(ref: Reference) -> dict[str, Any]:
    """``ref`` as plain data (lower-case hex, sorted lists) that :func:`parse_reference`
    reads back; ``owner_hash`` and the TRE-level lists are left out when unset. JSON-able,
    and TOML-able (no null)."""
    if not isinstance(ref, Reference):
        raise TypeError(f"ref must be a Reference, not {type(ref).__name__}")
    domains: dict[str, Any] = {}
    for name in sorted(ref.domains):
        entry = ref.domains[name]
        item: dict[str, Any] = {"measurements": sorted(m.hex() for m in entry.measurements)}
        if entry.owner_hash is not None:
            item["owner_hash"] = entry.owner_hash.hex()
        item["min_svn"] = entry.min_svn
        domains[name] = item
    out: dict[str, Any] = {"domains": domains, "require_all": ref.require_all}
    if ref.tre_measurements:
        out["tre_measurements"] = sorted(m.hex() for m in ref.tre_measurements)
    if ref.policy_hashes:
        out["policy_hashes"] = sorted(m.hex() for m in ref.policy_hashes)
    return out
