"""tre package build|sign|show: an owner packages and signs a domain folder; the envelope
verifies against a root that delegates that owner, and the bundled files match it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import attestation
from tre._cli import main
from tre._cli_package import read_bundle

HELLO = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "hello"


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def owner(tmp_path: Path) -> tuple[Ed25519PrivateKey, Path]:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "owner.key"
    path.write_bytes(attestation.private_key_pem(key))
    return key, path


def root_for(owner: Ed25519PrivateKey) -> attestation.Root:
    root_key = Ed25519PrivateKey.generate()
    envelope = attestation.make_root(
        version=1,
        expires=int(time.time()) + 3600,
        keys=[root_key.public_key()],
        threshold=1,
        owners={"hello": ([owner.public_key()], 1)},
        signers=[root_key],
    )
    return attestation.trusted_root(envelope)


def test_build_sign_show_and_verify(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, owner: tuple[Ed25519PrivateKey, Path]
) -> None:
    key, key_file = owner
    pkg = tmp_path / "hello.pkg"
    code, out, err = cli(capsys, "package", "build", "--domain-dir", HELLO, "--out", pkg,
                         "--counter", "7")  # fmt: skip
    assert code == 0, err
    assert "unsigned" in out
    code, out, err = cli(capsys, "package", "sign", "--key", key_file, pkg)
    assert code == 0, err
    code, out, err = cli(capsys, "package", "show", pkg, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["target"] == "domain:hello" and shown["counter"] == 7
    assert set(shown["files"]) == set(shown["bundled_files"]) == {"domain.toml", "hello.py"}
    assert len(shown["signatures"]) == 1

    envelope, files = read_bundle(pkg)
    root = root_for(key)
    package = attestation.verify_package(
        root, envelope, target="domain:hello", last_counter=6, now=int(time.time())
    )
    attestation.check_files(package, files)  # the bundled files are what was signed
    with pytest.raises(attestation.Rollback):
        attestation.verify_package(
            root, envelope, target="domain:hello", last_counter=7, now=int(time.time())
        )


def test_an_unsigned_or_foreign_package_does_not_verify(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, owner: tuple[Ed25519PrivateKey, Path]
) -> None:
    key, _ = owner
    pkg = tmp_path / "hello.pkg"
    assert cli(capsys, "package", "build", "--domain-dir", HELLO, "--out", pkg)[0] == 0
    envelope, _ = read_bundle(pkg)
    with pytest.raises(attestation.BelowThreshold):
        attestation.verify_package(
            root_for(key), envelope, target="domain:hello", last_counter=0, now=int(time.time())
        )
    other = tmp_path / "other.key"
    other.write_bytes(attestation.private_key_pem(Ed25519PrivateKey.generate()))
    assert cli(capsys, "package", "sign", "--key", other, pkg)[0] == 0
    envelope, _ = read_bundle(pkg)
    with pytest.raises(attestation.UpdateError):
        attestation.verify_package(
            root_for(key), envelope, target="domain:hello", last_counter=0, now=int(time.time())
        )


def test_a_file_changed_in_the_bundle_is_caught(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, owner: tuple[Ed25519PrivateKey, Path]
) -> None:
    key, key_file = owner
    pkg = tmp_path / "hello.pkg"
    assert cli(capsys, "package", "build", "--domain-dir", HELLO, "--out", pkg)[0] == 0
    assert cli(capsys, "package", "sign", "--key", key_file, pkg)[0] == 0
    bundle = msgpack.unpackb(pkg.read_bytes(), raw=False)
    bundle["files"]["hello.py"] += b"\n# changed\n"
    pkg.write_bytes(msgpack.packb(bundle, use_bin_type=True))
    envelope, files = read_bundle(pkg)
    package = attestation.verify_package(
        root_for(key), envelope, target="domain:hello", last_counter=0, now=int(time.time())
    )
    with pytest.raises(attestation.FileMismatch):
        attestation.check_files(package, files)


@pytest.mark.parametrize(
    "argv",
    [
        ("package", "build", "--domain-dir", "/nonexistent", "--out", "x.pkg"),
        ("package", "sign", "--key", "/nonexistent.key", "x.pkg"),
        ("package", "show", "/nonexistent.pkg"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("tre: error: ")


def test_a_symlink_cannot_be_packaged(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "hello"
    shutil.copytree(HELLO, folder)
    (folder / "link.py").symlink_to(folder / "hello.py")
    code, _, err = cli(capsys, "package", "build", "--domain-dir", folder, "--out",
                       tmp_path / "x.pkg")  # fmt: skip
    assert code == 2 and "symbolic link" in err
