"""Post-issue domains: install, update, remove, transfer (tre/_install.py), end to end on a
provisioned state folder, booting the TRE to see what runs and what its keystore holds."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import attestation
import domains.oem
import tre
from tests.device_helpers import acli, db_rows
from tests.install_helpers import LEDGER, Site, ledger_files
from tre._install import install_package
from tre._measure import code_files


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


# --- a new domain after provisioning --------------------------------------------------------


async def test_a_post_issue_domain_installs_boots_and_is_in_policy_and_attestation(site: Site):
    result = site.install(1)
    assert result["action"] == "installed"
    assert (result["domain"], result["counter"], result["previous_counter"]) == (LEDGER, 1, None)
    assert site.row() == ("installed", 1, "package:domains/ledger/1", 1)
    async with site.boot() as t:
        assert await t.call(LEDGER, "version") == 1
        assert LEDGER in [d.id for d in t.domains()]
        assert t.policy.evaluate("host", LEDGER, "version").allowed
        assert not t.policy.evaluate("oem", LEDGER, "version").allowed
        # It has identities like any domain: an alias certificate chaining to the device,
        # naming its measurement, and evidence naming it.
        cert = t.alias_certificate(LEDGER)
        cert.verify_directly_issued_by(t.device_certificate)
        evidence = t.attest(os.urandom(16))
        assert LEDGER.encode() in evidence
        # ...and a keystore of its own.
        await t.call(LEDGER, "put", {"label": "r", "data": b"x", "policy": "owner"})
        assert await t.call(LEDGER, "get", "r") == b"x"
    assert site.row()[0] == "active"


async def test_the_installed_package_is_the_domains_integrity_reference(site: Site):
    site.install(1)
    code = site.state / "domains" / LEDGER / "1" / "ledger.py"
    code.write_bytes(code.read_bytes().replace(b"VERSION = 1", b"VERSION = 666"))
    async with site.boot() as t:
        assert t.domain(LEDGER).state == "locked"
        with pytest.raises(tre.Locked):
            await t.call(LEDGER, "version")
        assert t.domain("oem").state == "running"  # the rest boots


async def test_a_forged_stored_package_locks_the_domain(site: Site):
    site.install(1)
    other = Ed25519PrivateKey.generate()
    forged, _ = site.package(1, signers=[other])
    conn = sqlite3.connect(site.state / "tre.db")
    with conn:
        conn.execute("UPDATE domains SET package = ? WHERE id = ?", (forged, LEDGER))
    conn.close()
    # (the db's generation did not move: the edit is what an attacker with the file does)
    async with site.boot() as t:
        assert t.domain(LEDGER).state == "locked"


# --- updates ----------------------------------------------------------------------------------


async def test_an_update_keeps_owner_sealed_data_and_loses_measurement_sealed_data(site: Site):
    site.install(1)
    async with site.boot() as t:
        await t.call(LEDGER, "put", {"label": "o", "data": b"owner", "policy": "owner"})
        await t.call(LEDGER, "put", {"label": "m", "data": b"meas", "policy": "measurement"})
        owner_blob = await t.call(LEDGER, "seal", {"data": b"ob", "policy": "owner"})
        meas_blob = await t.call(LEDGER, "seal", {"data": b"mb", "policy": "measurement"})
    result = site.install(2)
    assert result["action"] == "updated"
    assert (result["keys_kept"], result["keys_migrated"], result["keys_erased"]) == (1, 0, 1)
    assert site.row() == ("active", 2, "package:domains/ledger/2", 1)
    assert not (site.state / "domains" / LEDGER / "1").exists()  # superseded code deleted
    async with site.boot() as t:
        assert await t.call(LEDGER, "version") == 2
        assert await t.call(LEDGER, "get", "o") == b"owner"
        with pytest.raises(tre.RemoteError) as info:
            await t.call(LEDGER, "get", "m")
        assert info.value.remote_code == "NO_SUCH_KEY"  # erased, not merely unreadable
        assert await t.call(LEDGER, "unseal", owner_blob) == b"ob"
        with pytest.raises(tre.RemoteError):  # lost by design: the README says so
            await t.call(LEDGER, "unseal", meas_blob)


async def test_migrate_owner_reseals_measurement_rows_to_the_new_code(site: Site):
    site.install(1)
    async with site.boot() as t:
        await t.call(LEDGER, "put", {"label": "m", "data": b"meas", "policy": "measurement"})
    result = site.install(2, migrate="owner")
    assert (result["keys_kept"], result["keys_migrated"], result["keys_erased"]) == (0, 1, 0)
    async with site.boot() as t:
        assert await t.call(LEDGER, "version") == 2
        assert await t.call(LEDGER, "get", "m") == b"meas"
    site.install(3)  # no migration this time: erased
    async with site.boot() as t:
        assert await t.call(LEDGER, "keys") == []


async def test_a_higher_svn_keeps_owner_rows_and_a_lower_one_cannot_open_them(site: Site):
    site.install(1, files=ledger_files(1, svn=2))
    async with site.boot() as t:
        await t.call(LEDGER, "put", {"label": "o", "data": b"v", "policy": "owner"})
    site.install(2, files=ledger_files(2, svn=3))
    async with site.boot() as t:
        assert await t.call(LEDGER, "get", "o") == b"v"
    site.install(3, files=ledger_files(3, svn=1))  # the counter moved on; the svn went back
    async with site.boot() as t:
        with pytest.raises(tre.RemoteError):
            await t.call(LEDGER, "get", "o")


# --- refusals: each changes nothing ------------------------------------------------------------


def _refused(site: Site, exc_type: type[Exception], envelope: bytes, files: dict[str, bytes]):
    before = site.snapshot()
    with pytest.raises(exc_type):
        install_package(site.state, envelope, files)
    assert site.snapshot() == before
    staging = site.state / "domains" / ".staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_downgrades_and_replays_are_refused(site: Site):
    site.install(5)
    for counter in (5, 4, 1, 0):
        _refused(site, attestation.Rollback, *site.package(counter))


def test_a_removed_domain_keeps_its_counter(site: Site):
    site.install(5)
    site.remove()
    _refused(site, attestation.Rollback, *site.package(5))
    assert site.install(6)["action"] == "installed"


def test_a_foreign_owners_package_is_refused(site: Site):
    meter_owner = site.factory_key("meter")
    _refused(site, attestation.MisScoped, *site.package(1, signers=[meter_owner]))
    _refused(site, attestation.BelowThreshold, *site.package(1, signers=[]))
    stranger = Ed25519PrivateKey.generate()
    _refused(site, attestation.BelowThreshold, *site.package(1, signers=[stranger]))


def test_packages_for_undelegated_domains_and_the_tre_are_refused(site: Site):
    files = ledger_files(1, domain_id="ghost")
    _refused(site, attestation.WrongTarget, *site.package(1, files, target="domain:ghost"))
    # The TRE's own code needs the root role: a domain owner's signature is mis-scoped.
    _refused(site, attestation.MisScoped, *site.package(1, target="tre"))


def test_expired_tampered_and_mismatched_packages_are_refused(site: Site):
    _refused(site, attestation.Expired, *site.package(1, expires=int(time.time()) - 1))
    envelope, files = site.package(1)
    tampered = dict(files, **{"ledger.py": files["ledger.py"] + b"\n# evil\n"})
    _refused(site, attestation.FileMismatch, envelope, tampered)
    _refused(site, attestation.FileMismatch, envelope, dict(files, extra=b"x"))
    _refused(site, attestation.FileMismatch, envelope, {"domain.toml": files["domain.toml"]})
    bad_path = dict(ledger_files(1), **{"../escape.py": b"x"})
    _refused(site, attestation.MalformedPackage, *site.package(1, bad_path))
    assert not (site.state / "domains" / "escape.py").exists()
    _refused(site, attestation.MalformedPackage, b"\xa0not a package", files)


def test_a_package_that_does_not_load_is_refused(site: Site):
    wrong_id = ledger_files(1, domain_id="other")
    _refused(site, tre.InstallRefused, *site.package(1, wrong_id))
    files = ledger_files(1)
    # The entry module is not in the package: it must not be imported from elsewhere.
    no_code = {"domain.toml": files["domain.toml"].replace(b"ledger:Ledger", b"os:Ledger")}
    _refused(site, tre.InstallRefused, *site.package(1, no_code))
    broken = dict(files, **{"ledger.py": b"raise RuntimeError('boom')\n"})
    _refused(site, tre.InstallRefused, *site.package(1, broken))
    # Bytecode in a package is refused: it would run without being measured.
    pyc = dict(files, **{"__pycache__/ledger.cpython-311.pyc": b"\x00" * 16})
    _refused(site, attestation.FileMismatch, *site.package(1, pyc))


def test_a_locked_domain_is_not_updated_in_place(site: Site):
    site.install(1)
    conn = sqlite3.connect(site.state / "tre.db")
    with conn:
        conn.execute("UPDATE domains SET state = 'locked' WHERE id = ?", (LEDGER,))
    conn.close()
    _refused(site, tre.InstallRefused, *site.package(2))
    site.remove()  # a locked domain can be removed (erased), then installed afresh
    assert site.install(3)["action"] == "installed"


async def test_nothing_installs_while_a_tre_runs_on_the_state(site: Site):
    async with site.boot():
        _refused(site, tre.StateBusy, *site.package(1))
        with pytest.raises(tre.StateBusy):
            site.remove("oem")
        with pytest.raises(tre.StateBusy):
            async with tre.open_tre(state=site.state):
                pass  # two TREs on one device
    site.install(1)


# --- removal ------------------------------------------------------------------------------------


async def test_remove_crypto_erases_the_keystore(site: Site):
    site.install(1)
    async with site.boot() as t:
        await t.call(LEDGER, "put", {"label": "o", "data": b"secret", "policy": "owner"})
        blob = await t.call(LEDGER, "seal", {"data": b"sealed", "policy": "owner"})
    (epoch_before,) = db_rows(site.state, "SELECT epoch FROM domains WHERE id = ?", LEDGER)[0]
    ((sealed,),) = db_rows(site.state, "SELECT sealed FROM keys WHERE domain = ?", LEDGER)
    result = site.remove()
    assert result["keys_erased"] == 1
    assert db_rows(site.state, "SELECT * FROM keys WHERE domain = ?", LEDGER) == []
    (epoch_after,) = db_rows(site.state, "SELECT epoch FROM domains WHERE id = ?", LEDGER)[0]
    assert epoch_after != epoch_before
    assert not (site.state / "domains" / LEDGER).exists()
    data = (site.state / "tre.db").read_bytes()
    # secure_delete + a truncating checkpoint: the row's bytes are gone from the files
    assert sealed not in data and not (site.state / "tre.db-wal").stat().st_size
    async with site.boot() as t:
        assert LEDGER not in [d.id for d in t.domains()]
        with pytest.raises(tre.NoSuchDomain):
            await t.call(LEDGER, "version")
    # The same owner installs it again: nothing of the old install opens.
    site.install(2)
    async with site.boot() as t:
        with pytest.raises(tre.RemoteError):
            await t.call(LEDGER, "get", "o")
        with pytest.raises(tre.RemoteError):
            await t.call(LEDGER, "unseal", blob)
    with pytest.raises(tre.InstallRefused):
        site.remove("ghost")


async def test_a_factory_domain_can_be_removed_and_stays_removed(site: Site):
    site.remove("oem")
    async with site.boot() as t:
        assert "oem" not in [d.id for d in t.domains()]
    with pytest.raises(tre.InstallRefused):
        site.remove("oem")


async def test_a_factory_domain_is_updated_by_its_owners_package(site: Site):
    folder = Path(domains.oem.__file__).parent
    files = {rel: p.read_bytes() for rel, p in code_files(folder)}
    oem_owner = site.factory_key("oem")
    envelope, files = site.package(1, files, signers=[oem_owner], target="domain:oem")
    assert install_package(site.state, envelope, files)["action"] == "updated"
    async with site.boot() as t:
        info = await t.call("oem", "info")
        assert info
        assert t.domain("oem").state == "running"
    assert site.row("oem")[2] == "package:domains/oem/1"


# --- ownership transfer --------------------------------------------------------------------------


async def test_transfer_needs_both_owners_and_gives_a_new_owner_secret(site: Site):
    site.install(1)
    async with site.boot() as t:
        await t.call(LEDGER, "put", {"label": "o", "data": b"old", "policy": "owner"})
        blob = await t.call(LEDGER, "seal", {"data": b"old-sealed", "policy": "owner"})
    new_owner = Ed25519PrivateKey.generate()
    both = [site.owner, new_owner]
    # Before the root delegates the domain to the new owner: refused.
    envelope, files = site.package(2, signers=both)
    with pytest.raises(tre.InstallRefused, match="rotate the root"):
        site.transfer(envelope, files)
    site.delegate(LEDGER, new_owner)
    before = site.snapshot()
    for signers, error in (
        ([new_owner], attestation.BelowThreshold),  # the old owner did not agree
        ([site.owner], attestation.BelowThreshold),  # the new owner did not sign
    ):
        envelope, files = site.package(2, signers=signers)
        with pytest.raises(error):
            site.transfer(envelope, files)
        assert site.snapshot() == before
    # A plain install by the new owner is not a transfer.
    with pytest.raises(tre.InstallRefused, match="tre transfer"):
        install_package(site.state, *site.package(2, signers=[new_owner]))
    result = site.transfer(*site.package(2, signers=both))
    assert result["action"] == "transferred" and result["keys_erased"] == 1
    async with site.boot() as t:
        assert await t.call(LEDGER, "version") == 2
        with pytest.raises(tre.RemoteError):  # the old owner's data is unreadable
            await t.call(LEDGER, "unseal", blob)
        assert await t.call(LEDGER, "keys") == []
    # From now on the new owner updates it, alone; the old owner no longer can.
    with pytest.raises(attestation.BelowThreshold):
        install_package(site.state, *site.package(3, signers=[site.owner]))
    assert site.install(3, signers=[new_owner])["action"] == "updated"


def test_transfer_of_a_domain_that_is_not_installed_is_refused(site: Site):
    with pytest.raises(tre.InstallRefused):
        site.transfer(*site.package(1))


async def test_installs_removals_and_transfers_reach_the_audit_log(
    site: Site, capsys: pytest.CaptureFixture[str]
):
    site.install(1)
    site.install(2)
    new_owner = Ed25519PrivateKey.generate()
    site.delegate(LEDGER, new_owner)
    site.transfer(*site.package(3, signers=[site.owner, new_owner]))
    site.remove()
    async with site.boot():
        pass
    kinds = [k for (k,) in db_rows(site.state, "SELECT kind FROM audit_entries ORDER BY seq")]
    for kind in (
        "root_rotated",
        "domain_installed",
        "domain_updated",
        "domain_transferred",
        "domain_removed",
    ):
        assert kind in kinds
    code, _, err = await acli(capsys, "audit", "verify", "--state", site.state)
    assert code == 0, err
