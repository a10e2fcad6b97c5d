"""Packages of the TRE's own code (target "tre"): signed by a threshold of the root role,
they authorise the installed tre/ipc/attestation code and become the TRE's integrity
reference with a release counter (tre/_install.py, ``_install_tre``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import attestation
import tre
from tests.device_helpers import cli, status_json
from tests.install_helpers import Site
from tre._factory import load_factory, load_root_keys
from tre._install import install_package
from tre._integrity_seal import seal_integrity
from tre._measure import read_tree, tre_roots


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def _package(
    site: Site, counter: int, signers: list[Ed25519PrivateKey] | None = None, **files: bytes
) -> tuple[bytes, dict[str, bytes]]:
    code = dict(read_tree(tre_roots()))
    code.update({k.replace("__", "/"): v for k, v in files.items()})
    if signers is None:
        signers = list(load_root_keys(site.factory).values())[:2]  # the 2-of-3 root role
    return site.package(counter, code, signers=signers, target="tre")


def test_a_root_signed_package_authorises_the_installed_code(site: Site) -> None:
    result = install_package(site.state, *_package(site, 7))
    assert (result["action"], result["counter"], result["previous_counter"]) == ("authorised", 7, 0)

    async def boot() -> None:
        async with site.boot() as t:
            assert t.domain("oem").state == "running"

    trio.run(boot)
    before = site.snapshot()
    for counter in (7, 6):
        with pytest.raises(attestation.Rollback):
            install_package(site.state, *_package(site, counter))
    assert site.snapshot() == before


def test_refusals_change_nothing(site: Site) -> None:
    root_keys = list(load_root_keys(site.factory).values())
    before = site.snapshot()
    for (envelope, files), error in (
        (_package(site, 1, signers=root_keys[:1]), attestation.BelowThreshold),
        (_package(site, 1, signers=[site.owner]), attestation.MisScoped),
        (_package(site, 1, signers=[root_keys[0], root_keys[0]]), attestation.BelowThreshold),
        # The package lists code that is not what is installed.
        (_package(site, 1, tre__evil_py=b"evil = True\n"), attestation.FileMismatch),
    ):
        with pytest.raises(error):
            install_package(site.state, envelope, files)
        assert site.snapshot() == before
    with pytest.raises(attestation.WrongTarget):
        install_package(site.state, *_package(site, 1), domain="oem")


def test_after_a_tre_package_older_code_cannot_boot_even_with_a_signed_manifest(
    site: Site, tmp_path: Path
) -> None:
    copies = {}
    for name, root in tre_roots().items():
        copies[name] = tmp_path / "code" / name
        shutil.copytree(root, copies[name], ignore=shutil.ignore_patterns("__pycache__"))
    envelope, files = _package(site, 3)
    install_package(site.state, envelope, files, code_roots=copies)
    # "Older" code: one file differs. The factory even signs a manifest for it (what an
    # attacker with an old, genuine manifest has); the package is the reference now.
    kernel_file = copies["tre"] / "_kernel.py"
    kernel_file.write_bytes(kernel_file.read_bytes() + b"\n# an older release\n")
    seal_integrity(site.state, load_factory(site.factory), [], copies)

    async def boot() -> None:
        with trio.fail_after(30):
            async with tre.open_tre(state=site.state, code_roots=copies):
                pass  # pragma: no cover - refused

    with pytest.raises(tre.IntegrityError, match=r"_kernel\.py"):
        trio.run(boot)


def test_tre_package_through_the_cli(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    pkg = site.tmp / "tre.pkg"
    assert cli(capsys, "package", "build", "--tre", "--out", pkg, "--counter", "4")[0] == 0
    for key in sorted((site.factory / "root" / "keys").glob("*.key"))[:2]:
        assert cli(capsys, "package", "sign", "--key", key, pkg)[0] == 0
    code, out, err = cli(capsys, "install", "--state", site.state, pkg)
    assert code == 0, err
    assert "authorised the installed TRE code: counter 0 -> 4" in out
    assert status_json(capsys, site.state)["tre_counter"] == 4
    code, out, err = cli(capsys, "install", "--state", site.state, pkg)
    assert code == 3 and err.startswith("tre: error: UPDATE_ROLLBACK: ")
    code, _, err = cli(capsys, "package", "build", "--tre", "--domain-dir", ".", "--out", pkg)
    assert code == 2 and "not allowed with" in err
