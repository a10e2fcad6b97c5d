"""The TUF-style root role on the device: the factory's root keys and root v1, the root
provisioning stores, ``tre root new|rotate|show`` and ``tre package keygen``.

A root the device refuses exits 3 with one ``tre: error: <CODE>: ...`` line and changes
nothing: the stored root bytes, the database generation and the events stay as they were.
Real state folders do their SQLite I/O in worker threads: these tests use the real clock.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

import attestation
from tests.device_helpers import (
    assert_one_line_error,
    cli,
    db_rows,
    make_factory,
    provision_device,
    secret_forms,
    status_json,
)

REFERENCE = ["meter", "mno", "oem", "vault"]
YEAR = 365 * 86400


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_key(path: Path) -> Ed25519PrivateKey:
    return attestation.load_private_key_pem(path.read_bytes())


def root_keys(factory: Path, pattern: str = "root-[0-9]*.key") -> list[Ed25519PrivateKey]:
    """The factory's root keys matching ``pattern``, in numeric order."""
    paths = sorted(
        (factory / "root" / "keys").glob(pattern), key=lambda p: int(p.stem.rsplit("-", 1)[1])
    )
    return [load_key(p) for p in paths]


def owner_raw(pem_file: Path) -> bytes:
    return load_pem_public_key(pem_file.read_bytes()).public_bytes(Encoding.Raw, PublicFormat.Raw)


def meta_value(state: Path, key: str) -> Any:
    rows = db_rows(state, "SELECT value FROM meta WHERE key = ?", key)
    return rows[0][0] if rows else None


def snapshot(state: Path) -> tuple[Any, ...]:
    """What a refused rotation must leave exactly as it was."""
    return (
        meta_value(state, "root"),
        meta_value(state, "generation"),
        db_rows(state, "SELECT seq, kind, detail FROM events ORDER BY seq"),
    )


def show(capsys: pytest.CaptureFixture[str], state: Path) -> dict[str, Any]:
    code, out, err = cli(capsys, "root", "show", "--state", state, "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def new(capsys: pytest.CaptureFixture[str], factory: Path, *extra: str | Path) -> Path:
    """``tre root new``: the path of the root it wrote."""
    code, out, err = cli(capsys, "root", "new", "--factory", factory, *extra)
    assert code == 0, err
    version = len(list((factory / "root").glob("*.cbor")))
    assert out.startswith(f"root v{version}: "), out
    path = factory / "root" / f"{version}.cbor"
    assert str(path) in out
    return path


def rotate(capsys: pytest.CaptureFixture[str], state: Path, root: Path) -> str:
    code, out, err = cli(capsys, "root", "rotate", "--state", state, root)
    assert code == 0, err
    return out


def assert_refused(
    capsys: pytest.CaptureFixture[str], state: Path, root_file: Path, error: str
) -> None:
    """``tre root rotate`` exits 3, says why in one line, and changes nothing."""
    before = snapshot(state)
    version = show(capsys, state)["version"]
    code, out, err = cli(capsys, "root", "rotate", "--state", state, root_file)
    assert code == 3, (code, out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tre: error: {error}: "), err
    assert "Traceback" not in err
    assert snapshot(state) == before
    assert show(capsys, state)["version"] == version


@pytest.fixture
def factory(tmp_path: Path) -> Path:
    """A factory of its own per test: ``tre root new`` adds to it."""
    return make_factory(tmp_path / "factory")


@pytest.fixture
def state(tmp_path: Path, factory: Path) -> Path:
    state = tmp_path / "dev"
    provision_device(state, factory)
    return state


def signed_root(
    factory: Path,
    *,
    version: int,
    keys: list[Ed25519PrivateKey],
    threshold: int = 2,
    signers: list[Ed25519PrivateKey],
    expires: int | None = None,
) -> bytes:
    """A root with the factory's owners, built directly (for the roots tools never make)."""
    owners = {
        p.stem: ([load_pem_public_key(p.read_bytes())], 1)
        for p in sorted((factory / "owners").glob("*.pub"))
    }
    return attestation.make_root(
        version=version,
        expires=int(time.time()) + YEAR if expires is None else expires,
        keys=[k.public_key() for k in keys],
        threshold=threshold,
        owners=owners,  # type: ignore[arg-type]
        signers=signers,
    )


# --- the factory --------------------------------------------------------------------------------


def test_factory_init_makes_a_2_of_3_root(capsys, tmp_path):
    folder = tmp_path / "factory"
    code, out, err = cli(capsys, "factory", "init", "--factory", folder)
    assert code == 0, err
    assert str(folder / "root" / "1.cbor") in out
    key_files = sorted((folder / "root" / "keys").iterdir())
    assert [p.name for p in key_files] == ["root-1.key", "root-2.key", "root-3.key"]
    assert all(mode(p) == 0o600 for p in key_files)
    keys = [load_key(p) for p in key_files]
    assert len({raw(k) for k in keys}) == 3

    envelope = (folder / "root" / "1.cbor").read_bytes()
    root = attestation.trusted_root(envelope)
    assert root.version == 1
    assert root.role == attestation.Role(frozenset(raw(k) for k in keys), 2)
    assert abs(root.expires - (time.time() + 10 * 365 * 86400)) < 3 * 86400
    assert dict(root.owners) == {
        o: attestation.Role(frozenset({owner_raw(folder / "owners" / f"{o}.pub")}), 1)
        for o in REFERENCE
    }
    # Signed by exactly the first two keys: a threshold, no more.
    signatures = cbor2.loads(envelope)["signatures"]
    assert [s["keyid"] for s in signatures] == [attestation.key_id(raw(k)) for k in keys[:2]]
    for key in keys:
        for form in secret_forms(key.private_bytes_raw()):
            assert form not in out + err
    assert "PRIVATE KEY" not in out + err


def test_factory_init_root_options(capsys, tmp_path):
    folder = tmp_path / "factory"
    code, out, err = cli(
        capsys, "factory", "init", "--factory", folder, "--root-keys", "5", "--root-threshold", "3"
    )
    assert code == 0, err
    assert "3 of 5 keys" in out
    root = attestation.trusted_root((folder / "root" / "1.cbor").read_bytes())
    assert (len(root.role.keys), root.role.threshold) == (5, 3)
    assert len(list((folder / "root" / "keys").iterdir())) == 5


@pytest.mark.parametrize(
    "options",
    [
        ["--root-keys", "3", "--root-threshold", "4"],
        ["--root-threshold", "4"],  # above the default 3 keys
        ["--root-keys", "0"],
        ["--root-keys", "17"],
        ["--root-threshold", "0"],
        ["--root-keys", "two"],
        ["--root-keys", "-1"],
    ],
)
def test_factory_init_refuses_a_bad_root_role(capsys, tmp_path, options):
    folder = tmp_path / "factory"
    code, out, err = cli(capsys, "factory", "init", "--factory", folder, *options)
    assert_one_line_error(code, out, err)
    assert not folder.exists()  # refused before anything was made


def test_factory_init_api_checks_the_root_role(tmp_path):
    from tre._errors import ProvisioningError
    from tre._factory import factory_init

    with pytest.raises(ProvisioningError):
        factory_init(tmp_path / "f", root_keys=2, root_threshold=3)
    with pytest.raises(ProvisioningError):
        factory_init(tmp_path / "f", root_keys=17, root_threshold=1)
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("damage", ["no-root", "garbage", "below-threshold", "wrong-number"])
def test_provisioning_refuses_a_factory_without_a_good_root(capsys, tmp_path, factory, damage):
    if damage == "no-root":
        shutil.rmtree(factory / "root")
        fragments = ["tre factory init"]
    elif damage == "garbage":
        (factory / "root" / "1.cbor").write_bytes(b"\xa1not a root")
        fragments = ["1.cbor", "not a valid root"]
    elif damage == "below-threshold":
        keys = root_keys(factory)
        bad = signed_root(factory, version=1, keys=keys, signers=keys[:1])
        (factory / "root" / "1.cbor").write_bytes(bad)
        fragments = ["not a valid root", "threshold"]
    else:  # a root v1 filed as root 2
        (factory / "root" / "1.cbor").rename(factory / "root" / "2.cbor")
        fragments = ["2.cbor", "version 1, not 2"]
    state = tmp_path / "dev"
    code, out, err = cli(capsys, "provision", "--state", state, "--factory", factory)
    assert_one_line_error(code, out, err, *fragments)
    assert not state.exists()  # refused before anything was written


# --- provisioning and show ----------------------------------------------------------------------


def test_provisioning_stores_the_factory_root(capsys, factory, state):
    envelope = (factory / "root" / "1.cbor").read_bytes()
    assert meta_value(state, "root") == envelope
    assert meta_value(state, "tre_counter") == 0
    shown = show(capsys, state)
    root = attestation.trusted_root(envelope)
    assert shown["version"] == 1
    assert shown["expires"] == root.expires
    assert shown["threshold"] == 2
    assert shown["keys"] == sorted(attestation.key_id(raw(k)) for k in root_keys(factory))
    assert sorted(shown["owners"]) == REFERENCE
    for owner, entry in shown["owners"].items():
        pub = owner_raw(factory / "owners" / f"{owner}.pub")
        assert entry == {"keys": [attestation.key_id(pub)], "threshold": 1}
    assert status_json(capsys, state)["root_version"] == 1

    code, out, err = cli(capsys, "root", "show", "--state", state)
    assert code == 0, err
    assert out.startswith("root v1, expires ")
    assert "threshold 2 of 3 keys" in out
    code, out, err = cli(capsys, "status", "--state", state)
    assert code == 0, err
    assert "root:       v1" in out


def test_a_state_without_a_root(capsys, state):
    """A state provisioned before the root role (or whose root row was removed)."""
    conn = sqlite3.connect(state / "tre.db")
    with conn:
        conn.execute("DELETE FROM meta WHERE key = 'root'")
    conn.close()
    assert status_json(capsys, state)["root_version"] is None
    code, out, err = cli(capsys, "root", "show", "--state", state)
    assert_one_line_error(code, out, err, "no root of trust")


def test_a_damaged_stored_root_is_a_storage_error(capsys, factory, state):
    keys = root_keys(factory)
    forged = signed_root(factory, version=9, keys=keys, signers=keys[:1])  # below threshold
    conn = sqlite3.connect(state / "tre.db")
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'root'", (forged,))
    conn.close()
    before = snapshot(state)
    for argv in (
        ["root", "show", "--state", state],
        ["status", "--state", state, "--json"],
        ["root", "rotate", "--state", state, factory / "root" / "1.cbor"],
    ):
        code, out, err = cli(capsys, *argv)
        assert_one_line_error(code, out, err, "stored root of trust is unusable")
    assert snapshot(state) == before


@pytest.mark.parametrize("what", ["missing", "empty-folder"])
def test_root_show_and_rotate_need_a_state(capsys, tmp_path, factory, what):
    target = tmp_path / "x"
    if what == "empty-folder":
        target.mkdir()
    for argv in (
        ["root", "show", "--state", target],
        ["root", "rotate", "--state", target, factory / "root" / "1.cbor"],
    ):
        code, out, err = cli(capsys, *argv)
        assert_one_line_error(code, out, err, "not a provisioned TRE state")


# --- rotation -----------------------------------------------------------------------------------


def test_rotate_to_v2_then_v3(capsys, tmp_path, factory, state):
    outputs = []
    copy = tmp_path / "root-2.cbor"
    v2 = new(capsys, factory, "--out", copy)
    assert copy.read_bytes() == v2.read_bytes()
    outputs.append(rotate(capsys, state, copy))
    assert "v1 -> v2" in outputs[-1]
    assert show(capsys, state)["version"] == 2
    assert meta_value(state, "root") == v2.read_bytes()

    old_keys = root_keys(factory)
    v3 = new(capsys, factory, "--keys", "4", "--threshold", "3", "--expires-days", "30")
    new_files = sorted((factory / "root" / "keys").glob("root-v3-*.key"))
    assert [p.name for p in new_files] == [f"root-v3-{i}.key" for i in range(1, 5)]
    assert all(mode(p) == 0o600 for p in new_files)
    assert [raw(k) for k in root_keys(factory)] == [raw(k) for k in old_keys]  # kept as they were
    outputs.append(rotate(capsys, state, v3))
    shown = show(capsys, state)
    assert shown["version"] == 3
    assert shown["threshold"] == 3
    assert shown["keys"] == sorted(attestation.key_id(raw(load_key(p))) for p in new_files)
    assert abs(shown["expires"] - (time.time() + 30 * 86400)) < 3600
    assert status_json(capsys, state)["root_version"] == 3
    events = db_rows(state, "SELECT kind, domain, detail FROM events WHERE kind = 'root_rotated'")
    assert events == [("root_rotated", "tre", "v1 -> v2"), ("root_rotated", "tre", "v2 -> v3")]

    # v4 from v3 needs the v3 keys: the factory finds them by their public keys.
    v4 = new(capsys, factory)
    outputs.append(rotate(capsys, state, v4))
    assert show(capsys, state)["version"] == 4

    # A device provisioned now starts from the factory's current root.
    fresh = tmp_path / "dev2"
    provision_device(fresh, factory)
    assert show(capsys, fresh)["version"] == 4
    for key in old_keys + [load_key(p) for p in new_files]:
        for form in secret_forms(key.private_bytes_raw()):
            assert all(form not in out for out in outputs)


def test_new_root_keeps_keys_and_owners_by_default(capsys, factory):
    v2 = new(capsys, factory, "--threshold", "3")
    current = attestation.trusted_root((factory / "root" / "1.cbor").read_bytes())
    root = attestation.rotate_root(current, v2.read_bytes(), int(time.time()))
    assert root.role.keys == current.role.keys
    assert root.role.threshold == 3
    assert root.owners == current.owners


def test_rotation_refuses_a_skipped_version(capsys, factory, state):
    new(capsys, factory)
    v3 = new(capsys, factory)  # correctly signed, but the device is still at v1
    assert_refused(capsys, state, v3, "UPDATE_BAD_ROOT_ROTATION")


@pytest.mark.parametrize("signed_by", ["old-keys-only", "new-keys-only"])
def test_rotation_to_new_keys_needs_old_and_new_thresholds(
    capsys, tmp_path, factory, state, signed_by
):
    good = new(capsys, factory, "--keys", "3")  # v2 at the factory, with fresh keys
    old, fresh = root_keys(factory), root_keys(factory, "root-v2-*.key")
    assert len(fresh) == 3 and not {raw(k) for k in old} & {raw(k) for k in fresh}
    signers = old[:2] if signed_by == "old-keys-only" else fresh
    bad = tmp_path / "bad.cbor"
    bad.write_bytes(signed_root(factory, version=2, keys=fresh, signers=signers))
    assert_refused(capsys, state, bad, "UPDATE_BAD_ROOT_ROTATION")
    rotate(capsys, state, good)  # the factory's own v2 carries both thresholds
    assert show(capsys, state)["version"] == 2


def test_rotation_refuses_an_expired_root(capsys, tmp_path, factory, state):
    keys = root_keys(factory)
    bad = tmp_path / "expired.cbor"
    expires = int(time.time()) - 1
    bad.write_bytes(signed_root(factory, version=2, keys=keys, signers=keys, expires=expires))
    assert_refused(capsys, state, bad, "UPDATE_EXPIRED")


def test_rotation_refuses_replayed_roots(capsys, factory, state):
    v1 = factory / "root" / "1.cbor"
    assert_refused(capsys, state, v1, "UPDATE_ROLLBACK")  # the root it already has
    v2 = new(capsys, factory)
    rotate(capsys, state, v2)
    assert_refused(capsys, state, v2, "UPDATE_ROLLBACK")
    assert_refused(capsys, state, v1, "UPDATE_ROLLBACK")


def test_one_key_signing_twice_is_not_a_threshold(capsys, tmp_path, factory, state):
    keys = root_keys(factory)
    once = signed_root(factory, version=2, keys=keys, signers=[keys[0]])
    twice = attestation.sign(once, keys[0])
    assert len(cbor2.loads(twice)["signatures"]) == 2
    bad = tmp_path / "twice.cbor"
    bad.write_bytes(twice)
    assert_refused(capsys, state, bad, "UPDATE_BAD_ROOT_ROTATION")
    bad.write_bytes(once)  # and one signature alone is short of 2 as well
    assert_refused(capsys, state, bad, "UPDATE_BAD_ROOT_ROTATION")


def test_a_foreign_factory_root_is_refused(capsys, tmp_path, state):
    other = make_factory(tmp_path / "other")
    keys = root_keys(other)
    bad = tmp_path / "foreign.cbor"
    bad.write_bytes(signed_root(other, version=2, keys=keys, signers=keys))
    assert_refused(capsys, state, bad, "UPDATE_BAD_ROOT_ROTATION")


@pytest.mark.parametrize("content", ["garbage", "truncated", "empty", "oversized", "package"])
def test_rotation_refuses_a_malformed_file(capsys, tmp_path, factory, state, content):
    v2 = new(capsys, factory).read_bytes()
    data = {
        "garbage": b"this is not CBOR \xff\x00",
        "truncated": v2[:-7],
        "empty": b"",
        "oversized": v2 + bytes(attestation.MAX_ENVELOPE_SIZE),
        "package": attestation.make_package(
            target="tre",
            counter=1,
            expires=int(time.time()) + YEAR,
            files={"a": b"x"},
            signers=root_keys(factory),
        ),
    }[content]
    bad = tmp_path / "bad.cbor"
    bad.write_bytes(data)
    assert_refused(capsys, state, bad, "UPDATE_MALFORMED")


def test_unreadable_root_files_and_bad_usage_exit_2(capsys, tmp_path, factory, state):
    before = snapshot(state)
    for argv in (
        ["root", "rotate", "--state", state, tmp_path / "missing.cbor"],
        ["root", "rotate", "--state", state, tmp_path],  # a folder
        ["root", "rotate", "--state", state],
        ["root", "rotate", factory / "root" / "1.cbor"],
        ["root"],
        ["root", "show"],
    ):
        code, out, err = cli(capsys, *argv)
        assert_one_line_error(code, out, err)
    assert snapshot(state) == before


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--threshold", "4"], "threshold"),  # 3 keys kept
        (["--keys", "2", "--threshold", "3"], "threshold"),
        (["--keys", "0"], "--keys"),
        (["--keys", "17"], "--keys"),
        (["--threshold", "x"], "--threshold"),
        (["--expires-days", "0"], "--expires-days"),
        (["--expires-days", "nan"], "--expires-days"),
        (["--expires-days", "1e9"], "validity"),
        (["--owner", "meter"], "ID=PUBFILE"),
        (["--owner", "meter=/no/such.pub"], "cannot read"),
        (["--owner", "Bad Id=PUB"], "owner"),
        (["--drop-owner", "nobody"], "nobody"),
        (["--owner", "meter=PUB", "--drop-owner", "meter"], "both added and dropped"),
        (["--owner", "meter=PUB", "--owner", "meter=PUB"], "twice"),
        (["--owner", "meter=NOTAKEY"], "not an Ed25519 public key"),
        (["--out", "/no/such/folder/root.cbor"], "folder"),
    ],
)
def test_root_new_refuses_bad_options(capsys, tmp_path, factory, options, fragment):
    pub = tmp_path / "k.pub"
    pub.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    notakey = tmp_path / "notakey.pub"
    notakey.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    argv = [o.replace("=PUB", f"={pub}").replace("NOTAKEY", str(notakey)) for o in options]
    before = sorted(p.relative_to(factory) for p in factory.rglob("*"))
    code, out, err = cli(capsys, "root", "new", "--factory", factory, *argv)
    assert_one_line_error(code, out, err, fragment)
    assert sorted(p.relative_to(factory) for p in factory.rglob("*")) == before


def test_root_new_needs_the_root_keys(capsys, factory):
    (factory / "root" / "keys" / "root-1.key").unlink()
    (factory / "root" / "keys" / "root-2.key").unlink()
    code, out, err = cli(capsys, "root", "new", "--factory", factory)
    assert_one_line_error(code, out, err, "holds 1 of the 2 keys")
    assert not (factory / "root" / "2.cbor").exists()


# --- owners -------------------------------------------------------------------------------------


def test_redelegating_and_dropping_owners(capsys, tmp_path, factory, state):
    key_file = tmp_path / "meter-new.key"
    code, out, err = cli(capsys, "package", "keygen", "--out", key_file)
    assert code == 0, err
    new_owner = owner_raw(Path(str(key_file) + ".pub"))
    old_owners = show(capsys, state)["owners"]

    v2 = new(
        capsys, factory, "--owner", f"meter={key_file}.pub", "--drop-owner", "vault"
    )  # the manufacturer re-delegates meter to a new owner and drops vault
    rotate(capsys, state, v2)
    owners = show(capsys, state)["owners"]
    assert sorted(owners) == ["meter", "mno", "oem"]
    assert owners["meter"] == {"keys": [attestation.key_id(new_owner)], "threshold": 1}
    assert owners["meter"] != old_owners["meter"]
    assert owners["oem"] == old_owners["oem"] and owners["mno"] == old_owners["mno"]
    code, out, err = cli(capsys, "root", "show", "--state", state)
    assert code == 0, err
    assert attestation.key_id(new_owner)[:16] in out and "vault" not in out

    # The factory's owner folder follows the root: meter's new public key, vault's retired;
    # private owner keys stay (meter's previous owner still signs the transfer).
    owners_dir = factory / "owners"
    old_meter = owners_dir / "meter.key"
    assert owner_raw(owners_dir / "meter.pub") == new_owner
    assert raw(load_key(old_meter)) != new_owner
    assert attestation.key_id(raw(load_key(old_meter))) == old_owners["meter"]["keys"][0]
    assert not (owners_dir / "vault.pub").exists()
    assert (owners_dir / "vault.pub.retired-v2").is_file()
    assert (owners_dir / "vault.key").is_file()
    fresh = tmp_path / "dev2"
    provision_device(fresh, factory)
    meter = {d["id"]: d for d in status_json(capsys, fresh)["domains"]}["meter"]
    assert meter["owner_key"] == new_owner.hex()


def test_adding_an_owner_for_a_new_domain(capsys, tmp_path, factory, state):
    key_file = tmp_path / "acme.key"
    assert cli(capsys, "package", "keygen", "--out", key_file)[0] == 0
    rotate(capsys, state, new(capsys, factory, "--owner", f"acme={key_file}.pub"))
    owners = show(capsys, state)["owners"]
    assert sorted(owners) == sorted([*REFERENCE, "acme"])
    assert owners["acme"]["keys"] == [attestation.key_id(owner_raw(Path(f"{key_file}.pub")))]


# --- keygen -------------------------------------------------------------------------------------


def test_package_keygen(capsys, tmp_path):
    out_file = tmp_path / "owner.key"
    code, out, err = cli(capsys, "package", "keygen", "--out", out_file)
    assert code == 0, err
    pub_file = tmp_path / "owner.key.pub"
    assert mode(out_file) == 0o600
    key = load_key(out_file)
    assert pub_file.read_bytes() == key.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    assert str(out_file) in out and str(pub_file) in out
    assert attestation.key_id(raw(key)) in out
    assert "PRIVATE KEY" not in out + err
    for form in secret_forms(key.private_bytes_raw()):
        assert form not in out + err

    before = out_file.read_bytes(), pub_file.read_bytes()
    code, out, err = cli(capsys, "package", "keygen", "--out", out_file)
    assert_one_line_error(code, out, err, "already exists")
    assert (out_file.read_bytes(), pub_file.read_bytes()) == before


def test_package_keygen_refuses_an_existing_public_key_file(capsys, tmp_path):
    out_file = tmp_path / "owner.key"
    (tmp_path / "owner.key.pub").write_text("mine")
    code, out, err = cli(capsys, "package", "keygen", "--out", out_file)
    assert_one_line_error(code, out, err, "owner.key.pub", "already exists")
    assert not out_file.exists()
    assert (tmp_path / "owner.key.pub").read_text() == "mine"


@pytest.mark.parametrize(
    "argv",
    [
        ["root", "--help"],
        ["root", "new", "--help"],
        ["root", "rotate", "--help"],
        ["root", "show", "--help"],
        ["package", "keygen", "--help"],
        ["factory", "init", "--help"],
    ],
)
def test_help(capsys, argv):
    code, out, _ = cli(capsys, *argv)
    assert code == 0
    assert "usage: tre" in out
