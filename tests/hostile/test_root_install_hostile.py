"""Hostile cases of the root role, packages and provisioning found in review: two
provisionings of one folder (the loser never deletes the winner's secret), a provisioning
that fails while sealing leaves nothing, an install racing a root rotation that revokes its
owner is refused, bad --expires-days and --out are usage errors that change nothing, and a
failed ``root new --keys`` leaves no key files behind."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import attestation
import tre
import tre._install as install_mod
import tre._provision as provision_mod
import tre._root as root_mod
from tests.device_helpers import db_rows, make_factory
from tests.install_helpers import LEDGER, Site, raw_public
from tre._cli import main
from tre._config import default_config
from tre._errors import ProvisioningError
from tre._provision import provision
from tre._root import new_root, rotate_state

DOMAIN_DIR = Path(__file__).resolve().parents[2] / "domains" / "oem"


# --- 1. provisioning: clean-up deletes files another provisioning created ----------------


def test_failed_provisioning_does_not_delete_a_device_secret_it_did_not_create(
    tmp_path, monkeypatch
):
    """Two `tre provision` on one folder: B passes the first 'already provisioned' check,
    A writes uds.bin meanwhile; B checks again under the state's lock and refuses, and its
    clean-up never touches A's secret (before the lock, it unlinked it)."""
    factory = make_factory(tmp_path / "factory")
    state = tmp_path / "dev"
    real_load_factory = provision_mod.load_factory  # type: ignore[attr-defined]

    def racing_load_factory(folder):
        # the other provisioning wins the race right after this one's checks
        state.mkdir(mode=0o700)
        (state / "uds.bin").write_bytes(b"A" * 32)
        return real_load_factory(folder)

    monkeypatch.setattr(provision_mod, "load_factory", racing_load_factory)
    with pytest.raises(ProvisioningError, match="already provisioned"):
        provision(state, factory, config=default_config())
    assert (state / "uds.bin").read_bytes() == b"A" * 32


# --- 2. provisioning: a failure while sealing leaves integrity/ behind --------------------


def test_failed_provisioning_leaves_nothing_behind_when_sealing_fails(tmp_path):
    factory = make_factory(tmp_path / "factory")
    (factory / "owners" / "oem.key").write_bytes(b"not a key\n")  # seal_integrity fails
    state = tmp_path / "dev"
    with pytest.raises(attestation.AttestationError):
        provision(state, factory, config=default_config())
    leftovers = (
        sorted(str(p.relative_to(tmp_path)) for p in state.rglob("*")) if state.exists() else []
    )
    assert not state.exists(), f"a failed provisioning left {leftovers}"


# --- 3. install vs root rotation: time-of-check / time-of-use ------------------------------


def test_install_racing_a_root_rotation_commits_an_owner_the_root_no_longer_delegates(
    tmp_path, monkeypatch
):
    """install_package verifies against the root read *before* staging; `tre root rotate`
    does not take the state lock, so a rotation that re-delegates the domain can commit
    meanwhile, and the install still commits the old owner's package."""
    site = Site(tmp_path)
    new_owner = Ed25519PrivateKey.generate()
    real_stage = install_mod._stage

    def stage_while_rotating(*args, **kwargs):
        # another process: the manufacturer re-delegates the ledger (old owner compromised)
        path = new_root(site.factory, add_owners={LEDGER: raw_public(new_owner)}, expires_days=365)
        rotate_state(site.state, path.read_bytes(), int(time.time()))
        return real_stage(*args, **kwargs)

    monkeypatch.setattr(install_mod, "_stage", stage_while_rotating)
    try:
        site.install(1)  # signed by the (now undelegated) old owner
    except (attestation.UpdateError, tre.InstallRefused):
        return  # refused: sound
    (stored_root,) = db_rows(site.state, "SELECT value FROM meta WHERE key = 'root'")[0]
    root = attestation.trusted_root(stored_root)
    (owner_keys,) = db_rows(site.state, "SELECT owner_keys FROM domains WHERE id = ?", LEDGER)[0]
    assert frozenset([bytes(owner_keys)]) == root.owners[LEDGER].keys, (
        "the device now runs a ledger owned by a key its root no longer delegates"
    )


# --- 4. tre package build --expires-days nan|inf: untyped exception ----------------------


@pytest.mark.parametrize("days", ["nan", "inf", "1e306"])
def test_package_build_bad_expires_days_is_a_usage_error(tmp_path, capsys, days):
    code = main(
        [
            "package",
            "build",
            "--domain-dir",
            str(DOMAIN_DIR),
            "--out",
            str(tmp_path / "p.pkg"),
            "--expires-days",
            days,
        ]
    )  # (it raised ValueError / OverflowError before --expires-days was checked)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("tre: error:")


# --- 5. tre root new --out DIR: exits 2 yet the factory's root moved to N+1 --------------


def test_root_new_with_a_bad_out_changes_nothing(tmp_path, capsys):
    factory = make_factory(tmp_path / "factory")
    out = tmp_path / "copy"
    out.mkdir()  # --out names an existing folder: its parent exists, so it passes the check
    code = main(["root", "new", "--factory", str(factory), "--out", str(out)])
    capsys.readouterr()
    assert code == 2
    assert not (factory / "root" / "2.cbor").exists(), "refused, but root v2 was written"


# --- 6. tre root new --keys: a failed write leaves key files that block every retry ------


def test_root_new_fresh_keys_failure_leaves_no_keys_behind(tmp_path, monkeypatch):
    factory = make_factory(tmp_path / "factory")
    real = root_mod.write_new_file  # type: ignore[attr-defined]

    def disk_full(path, data, mode=0o644):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(root_mod, "write_new_file", disk_full)
    with pytest.raises(OSError):
        new_root(factory, new_keys=3)
    monkeypatch.setattr(root_mod, "write_new_file", real)
    # the retry, once the disk has room again
    try:
        new_root(factory, new_keys=3)
    except ProvisioningError as exc:
        pytest.fail(f"retry blocked by leftovers of the failed attempt: {exc}")
