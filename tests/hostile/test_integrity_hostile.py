"""Attacks on code-base integrity (issue 5, R13): forged and swapped manifests, changes that
try to look unchanged, code the interpreter would run that the check does not measure,
files that vanish while a check reads them, and file names that try to forge output.

Every device here is a :func:`tests.tre.test_integrity.make_rig`: its TRE code is a set
of copies of the installed ``tre``, ``ipc`` and ``attestation`` folders in ``tmp_path``
(the installed packages are never touched). Boots run on the real clock, bounded.
"""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import py_compile
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

import tre
from tests.device_helpers import acli, assert_one_line_error
from tests.tre.test_integrity import (
    OTHER,
    D,
    Rig,
    assert_only_d_locked,
    boot_refused,
    booted,
    keystore,
    last_check,
    lifecycles,
    make_rig,
    monitor_of,
    tamper_and_measure,
    use_code_copies,
)
from tests.tre.test_keystore import CODE_FILE, ks
from tre import _integrity, _measure
from tre._factory import load_factory
from tre._integrity import manifest_path, write_manifest

# --- manifests -----------------------------------------------------------------------------------


def _target(scope: str) -> str:
    """The manifest a case attacks: the TRE's, or ksdomain's."""
    return "tre" if scope == "tre" else D


def _edit_record(path: Path, edit: Callable[[dict[str, object]], object]) -> None:
    record = json.loads(path.read_text(encoding="utf-8"))
    edit(record)
    path.write_text(json.dumps(record), encoding="utf-8")


def resign_by_manufacturer(rig: Rig, scope: str) -> str:
    """The domain's code changed and its manifest signed again with the manufacturer's key,
    although the domain has an owner key (only the owner may vouch for its code)."""
    _, files = tamper_and_measure(rig, D)
    write_manifest(rig.state, D, files, load_factory(rig.factory).ca_key)
    return "signature is invalid"


def edit_without_signing(rig: Rig, scope: str) -> str:
    """The code changed and the manifest's digest edited to match, without a new signature."""
    name, actual = tamper_and_measure(rig, _target(scope))

    def edit(record: dict[str, object]) -> None:
        document = record["document"]
        assert isinstance(document, dict)
        document["files"][name] = actual[name].hex()

    _edit_record(manifest_path(rig.state, _target(scope)), edit)
    return "signature is invalid"


def strip_signature(rig: Rig, scope: str) -> str:
    _edit_record(manifest_path(rig.state, _target(scope)), lambda record: record.pop("signature"))
    return "malformed"


def garbage(rig: Rig, scope: str) -> str:
    manifest_path(rig.state, _target(scope)).write_bytes(b"\x00not json{")
    return "malformed"


def emptied_file_list(rig: Rig, scope: str) -> str:
    """A manifest that lists nothing (signed by a stranger: no key the device trusts)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    write_manifest(rig.state, _target(scope), {}, Ed25519PrivateKey.generate())
    return "signature is invalid"


def swap_scopes(rig: Rig, scope: str) -> str:
    """Another scope's genuine manifest, signed by the same (manufacturer) key, put in
    place: the TRE's replaced by a domain's, or one domain's by another's."""
    source = manifest_path(rig.state, OTHER)
    manifest_path(rig.state, _target(scope)).write_bytes(source.read_bytes())
    return "malformed"


MANIFEST_ATTACKS = [
    pytest.param(edit_without_signing, "tre", True, id="tre-edited-not-signed"),
    pytest.param(strip_signature, "tre", True, id="tre-signature-stripped"),
    pytest.param(garbage, "tre", True, id="tre-garbage"),
    pytest.param(emptied_file_list, "tre", True, id="tre-empty-list-by-stranger"),
    pytest.param(swap_scopes, "tre", False, id="tre-replaced-by-a-domain-manifest"),
    pytest.param(resign_by_manufacturer, "domain", True, id="domain-signed-by-manufacturer"),
    pytest.param(edit_without_signing, "domain", True, id="domain-edited-not-signed"),
    pytest.param(strip_signature, "domain", True, id="domain-signature-stripped"),
    pytest.param(garbage, "domain", True, id="domain-garbage"),
    pytest.param(emptied_file_list, "domain", True, id="domain-empty-list-by-stranger"),
    pytest.param(swap_scopes, "domain", False, id="domain-replaced-by-another-domains"),
]


@pytest.mark.parametrize(("attack", "scope", "owner_keys"), MANIFEST_ATTACKS)
async def test_a_manifest_attack_refuses_the_boot_or_locks_the_domain(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    attack: Callable[[Rig, str], str],
    scope: str,
    owner_keys: bool,
) -> None:
    """Without owner keys every manifest is signed by the manufacturer's one key, so a
    swap is a validly signed document: only its ``scope`` field gives it away."""
    rig = make_rig(tmp_path, owner_keys=owner_keys)
    expected = attack(rig, scope)
    if scope == "tre":
        await boot_refused(rig, match=expected)
        assert lifecycles(capsys, rig.state)[0] == "secured"
        return
    async with booted(rig) as t:
        assert_only_d_locked(t)
        with pytest.raises(tre.KeystoreLocked):
            keystore(t, D).list()
        assert await ks(t, OTHER, "list") == []
    (detail,) = last_check(capsys, rig.state)["detail"]
    assert detail.startswith(f"{D}: ") and expected in detail


# --- changes that try to look unchanged ----------------------------------------------------------


def same_size_same_mtime(path: Path) -> None:
    """One byte changed, size and modification time put back as they were."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size


def symlink_elsewhere(path: Path) -> None:
    """The file replaced by a symlink to a file with other contents."""
    other = path.parent.parent / f"elsewhere-{path.name}"
    other.write_bytes(path.read_bytes() + b"\n# evil\n")
    path.unlink()
    path.symlink_to(other)


def dangling_symlink(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.parent / "does-not-exist")


def directory_in_its_place(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inner.py").write_text("x = 1\n")


DISGUISES = [
    pytest.param(same_size_same_mtime, ("changed",), id="same-size-and-mtime"),
    pytest.param(symlink_elsewhere, ("changed",), id="symlink-to-other-content"),
    pytest.param(dangling_symlink, ("changed",), id="dangling-symlink"),  # a link is measured
    pytest.param(directory_in_its_place, ("added", "missing"), id="directory-in-its-place"),
]


@pytest.mark.parametrize(("disguise", "kinds"), DISGUISES)
async def test_a_disguised_change_to_the_tre_code_is_caught(
    tmp_path: Path, disguise: Callable[[Path], None], kinds: tuple[str, ...]
) -> None:
    rig = make_rig(tmp_path)
    victim = "ipc/_limits.py"
    disguise(rig.root / "code" / victim)
    error = await boot_refused(rig)
    for kind in kinds:
        assert f"{kind}: {victim}" in str(error)
    assert victim in error.files


@pytest.mark.parametrize(("disguise", "kinds"), DISGUISES)
async def test_a_disguised_change_to_a_domain_is_caught(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    disguise: Callable[[Path], None],
    kinds: tuple[str, ...],
) -> None:
    rig = make_rig(tmp_path)
    victim = "helpers.py"  # nobody imports it: the domain still loads
    disguise(rig.plugins[D] / victim)
    async with booted(rig) as t:
        assert_only_d_locked(t)
    (detail,) = last_check(capsys, rig.state)["detail"]
    for kind in kinds:
        assert f"{kind}: {victim}" in detail


# --- code the interpreter runs but the check skips -------------------------------------------


def _pyc_for(source: Path) -> Path:
    """Write ``source``'s cache file exactly as Python would (timestamp-validated)."""
    cfile = Path(importlib.util.cache_from_source(str(source)))
    py_compile.compile(
        str(source),
        cfile=str(cfile),
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP,
    )
    return cfile


def tampered_pycache(package: Path, tag: str) -> str:
    """``__pycache__/_limits.*.pyc`` rewritten with other code behind the original header
    (source mtime and size): Python loads it instead of the untouched source."""
    source = package / "_limits.py"
    cfile = _pyc_for(source)
    header = cfile.read_bytes()[:16]
    code = compile(source.read_text() + f"\nTAMPERED = {tag!r}\n", str(source), "exec")
    cfile.write_bytes(header + marshal.dumps(code))
    return "_limits"


def sourceless_module(package: Path, tag: str) -> str:
    """A module that is only a ``.pyc`` in the package folder (importable without source)."""
    source = package / "_extra.py"
    source.write_text(f"TAMPERED = {tag!r}\n")
    py_compile.compile(str(source), cfile=str(package / "_extra.pyc"), doraise=True)
    source.unlink()
    return "_extra"


def symlinked_package(package: Path, tag: str) -> str:
    """A sub-package that is a symlink to a folder elsewhere."""
    elsewhere = package.parent.parent / "elsewhere-pkg"
    elsewhere.mkdir()
    (elsewhere / "__init__.py").write_text(f"TAMPERED = {tag!r}\n")
    (package / "extra").symlink_to(elsewhere, target_is_directory=True)
    return "extra"


UNMEASURED = [
    pytest.param(tampered_pycache, id="tampered-pycache"),
    pytest.param(sourceless_module, id="sourceless-pyc-module"),
    pytest.param(symlinked_package, id="symlinked-subpackage"),
]


@pytest.mark.parametrize("plant", UNMEASURED)
def test_python_runs_such_code_from_a_copied_package(
    tmp_path: Path, plant: Callable[[Path, str], str]
) -> None:
    """The threat is real: a fresh interpreter importing the copied ``ipc`` runs it."""
    rig_code = tmp_path / "code"
    rig_code.mkdir()
    package = rig_code / "ipc"
    ipc_source = Path(_measure.tre_roots()["ipc"])
    shutil.copytree(ipc_source, package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    module = plant(package, "planted")
    program = (
        f"import ipc, ipc.{module} as m; print(ipc.__file__); print(getattr(m, 'TAMPERED', None))"
    )
    env = {**os.environ, "PYTHONPATH": str(rig_code), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    )
    where, tampered = result.stdout.split()
    assert Path(where).is_relative_to(package)
    assert tampered == "planted"


@pytest.mark.parametrize("plant", UNMEASURED)
async def test_boot_refuses_tre_code_python_would_run_but_the_manifest_lacks(
    tmp_path: Path, plant: Callable[[Path, str], str]
) -> None:
    rig = make_rig(tmp_path)
    plant(rig.code["ipc"], "planted")
    await boot_refused(rig)


async def test_a_folder_domains_entry_module_never_runs_from_its_pycache(
    tmp_path: Path,
) -> None:
    """A tampered ``__pycache__`` file with a header that matches the untouched source:
    the loader of folder domains compiles the entry module from its source every time, so
    the planted code never runs; and the check finds the cache file Python would run for
    other imports, and locks the domain."""
    rig = make_rig(tmp_path)
    source = rig.plugins[D] / CODE_FILE
    cfile = _pyc_for(source)
    header = cfile.read_bytes()[:16]
    code = compile(source.read_text() + "\nTAMPERED = True\n", str(source), "exec")
    cfile.write_bytes(header + marshal.dumps(code))
    async with booted(rig) as t:
        module = sys.modules[t._kernel.domains[D].spec.cls.__module__]
        assert getattr(module, "TAMPERED", False) is False
        assert t.domain(D).state == "locked"


# --- a file that vanishes while a check reads it -------------------------------------------------


@pytest.fixture
def vanishing(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Paths listed here are deleted between the check's walk and its read of them."""
    victims: list[Path] = []
    walk = _measure.code_files

    def racing(root: Path) -> Iterator[tuple[str, Path]]:
        for rel, path in walk(root):
            if path in victims:
                path.unlink()
            yield rel, path

    monkeypatch.setattr(_measure, "code_files", racing)
    monkeypatch.setattr(_integrity, "code_files", racing)
    yield victims


@pytest.mark.parametrize("scope", ["domain", "tre"])
async def test_a_file_vanishing_during_a_check_locks_the_domain_or_the_tre(
    tmp_path: Path, vanishing: list[Path], scope: str
) -> None:
    """A domain's file: that domain is locked; a file of the TRE's code: the whole TRE."""
    rig = make_rig(tmp_path)
    async with booted(rig) as t:
        if scope == "domain":
            vanishing.append(rig.plugins[D] / "helpers.py")
        else:
            vanishing.append(rig.code["ipc"] / "_limits.py")
        assert await monitor_of(t).check("scheduled") is False
        if scope == "domain":
            assert_only_d_locked(t)
        else:
            assert t.device.lifecycle == "locked"


# --- file names that try to forge output ----------------------------------------------------


async def test_a_file_name_with_a_newline_cannot_forge_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig(tmp_path)
    forged = "x.py\ntre: ipc: 10 domains booted"
    (rig.code["ipc"] / forged).write_text("")
    use_code_copies(monkeypatch, rig)
    with trio.fail_after(30):
        code, out, err = await acli(capsys, "run", "--state", rig.state, "--duration", "0")
    detail = last_check(capsys, rig.state)["detail"]
    assert len(detail) == 1, detail
    assert_one_line_error(code, out, err, "refuses to boot")
