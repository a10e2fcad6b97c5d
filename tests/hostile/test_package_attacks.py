"""The TUF attack table at the device: every row is a package (or a package plus the files
that come with it) that ``tre install`` must refuse with its typed error, changing nothing:
no row, no key, no file, no root. The pure decisions have their own, longer table in
tests/attestation/ (29 rows); this one goes through the whole install path of a device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

import attestation
import tre
from tests.install_helpers import LEDGER, Site, ledger_files
from tre._factory import load_root_keys
from tre._install import install_package
from tre._root import read_root, rotate_state

Attack = Callable[[Site], tuple[bytes, dict[str, bytes]]]


def _dup_signature(site: Site) -> tuple[bytes, dict[str, bytes]]:
    """A 2-of-2 owner role; one of its keys signs twice (under its own key id both times)."""
    second = Ed25519PrivateKey.generate()
    current = read_root(site.state)
    root_keys = list(load_root_keys(site.factory).values())
    owners = {
        d: ([_public(k) for k in sorted(role.keys)], role.threshold)
        for d, role in current.owners.items()
        if d != LEDGER
    }
    owners[LEDGER] = ([site.owner.public_key(), second.public_key()], 2)
    root = attestation.make_root(
        version=current.version + 1,
        expires=int(time.time()) + 86400,
        keys=[k.public_key() for k in root_keys[:3]],
        threshold=2,
        owners=owners,
        signers=root_keys[:2],
    )
    rotate_state(site.state, root, int(time.time()))
    return site.package(1, signers=[site.owner, site.owner])


def _public(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def _installed_then(counter: int) -> Attack:
    def attack(site: Site) -> tuple[bytes, dict[str, bytes]]:
        site.install(5)
        return site.package(counter)

    return attack


def _mix_and_match(site: Site) -> tuple[bytes, dict[str, bytes]]:
    """The metadata of version 2 with the files of version 1 (both genuinely signed)."""
    envelope, _ = site.package(2)
    _, old_files = site.package(1)
    return envelope, old_files


def _other_domain_target(site: Site) -> tuple[bytes, dict[str, bytes]]:
    """The meter owner's genuine package for meter, relabelled as nothing else: it targets
    meter, so it is checked against meter's owner -- and it installs ledger's code."""
    files = ledger_files(1)
    return site.package(1, files, signers=[site.factory_key("meter")], target="domain:meter")


ATTACKS: dict[str, tuple[Attack, type[Exception]]] = {
    "rollback: an older counter": (_installed_then(4), attestation.Rollback),
    "replay: the same counter again": (_installed_then(5), attestation.Rollback),
    "freeze: an expired package": (
        lambda s: s.package(1, expires=int(time.time()) - 60),
        attestation.Expired,
    ),
    "arbitrary package: unsigned": (lambda s: s.package(1, signers=[]), attestation.BelowThreshold),
    "arbitrary package: a stranger's key": (
        lambda s: s.package(1, signers=[Ed25519PrivateKey.generate()]),
        attestation.BelowThreshold,
    ),
    "a domain owner signing for another domain": (
        lambda s: s.package(1, signers=[s.factory_key("meter")]),
        attestation.MisScoped,
    ),
    "a domain owner signing for the TRE": (
        lambda s: s.package(1, signers=[s.owner], target="tre"),
        attestation.MisScoped,
    ),
    "mix-and-match: new metadata, old files": (_mix_and_match, attestation.FileMismatch),
    "a package for another domain, with this domain's code": (
        _other_domain_target,
        tre.InstallRefused,
    ),
    "threshold met by a duplicated signature": (_dup_signature, attestation.BelowThreshold),
    "a file name with ../ in it": (
        lambda s: s.package(1, dict(ledger_files(1), **{"../../uds.bin": b"x"})),
        attestation.MalformedPackage,
    ),
    "an absolute file name": (
        lambda s: s.package(1, dict(ledger_files(1), **{"/tmp/x.py": b"x"})),
        attestation.MalformedPackage,
    ),
    "a file swapped after signing": (
        lambda s: (s.package(1)[0], dict(ledger_files(1), **{"ledger.py": b"evil = 1\n"})),
        attestation.FileMismatch,
    ),
    "a truncated envelope": (
        lambda s: (s.package(1)[0][:-5], ledger_files(1)),
        attestation.MalformedPackage,
    ),
    "an oversized envelope": (
        lambda s: (b"\x00" * (attestation.MAX_ENVELOPE_SIZE + 1), ledger_files(1)),
        attestation.MalformedPackage,
    ),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_the_device_refuses(tmp_path: Path, name: str) -> None:
    site = Site(tmp_path)
    attack, error = ATTACKS[name]
    envelope, files = attack(site)
    before = site.snapshot()
    with pytest.raises(error):
        install_package(site.state, envelope, files)
    assert site.snapshot() == before
    assert not (tmp_path / "uds.bin").exists() and not Path("/tmp/x.py").exists()
    if attack is not _dup_signature:  # (that row made the role 2-of-2)
        # Nothing was poisoned: the owner's next genuine package installs.
        assert install_package(site.state, *site.package(9))["counter"] == 9
