"""Round trips and rules of attestation/_update.py: roots, rotation, packages, files."""

from __future__ import annotations

import hashlib

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import attestation
from attestation import (
    BadRootRotation,
    BelowThreshold,
    Expired,
    FileMismatch,
    MalformedPackage,
    Rollback,
    UpdateError,
    WrongTarget,
)

NOW = 1_700_000_000
LATER = NOW + 86_400
FILES = {"domain.toml": b"[domain]\nid = 'meter'\n", "bin/meter.py": b"print('tick')\n"}


def keys(n: int) -> list[Ed25519PrivateKey]:
    return [Ed25519PrivateKey.generate() for _ in range(n)]


ROOT_KEYS = keys(3)
METER_KEYS = keys(2)


def root_envelope(version: int = 1, signers: list[Ed25519PrivateKey] | None = None) -> bytes:
    return attestation.make_root(
        version=version,
        expires=LATER,
        keys=[k.public_key() for k in ROOT_KEYS],
        threshold=2,
        owners={"meter": ([k.public_key() for k in METER_KEYS], 1)},
        signers=ROOT_KEYS[:2] if signers is None else signers,
    )


def test_error_codes_are_stable_and_in_the_tree() -> None:
    codes = {
        attestation.UpdateError: "UPDATE",
        attestation.Expired: "UPDATE_EXPIRED",
        attestation.Rollback: "UPDATE_ROLLBACK",
        attestation.WrongTarget: "UPDATE_WRONG_TARGET",
        attestation.BelowThreshold: "UPDATE_BELOW_THRESHOLD",
        attestation.MisScoped: "UPDATE_MIS_SCOPED",
        attestation.BadRootRotation: "UPDATE_BAD_ROOT_ROTATION",
        attestation.MalformedPackage: "UPDATE_MALFORMED",
        attestation.FileMismatch: "UPDATE_FILE_MISMATCH",
    }
    for cls, code in codes.items():
        assert cls.code == code
        assert issubclass(cls, attestation.AttestationError)
        assert issubclass(cls, UpdateError)


def test_trusted_root_round_trip() -> None:
    data = root_envelope()
    root = attestation.trusted_root(data)
    assert root.version == 1 and root.expires == LATER and root.envelope == data
    assert root.role.threshold == 2
    assert root.role.keys == {k.public_key().public_bytes_raw() for k in ROOT_KEYS}
    assert root.owners["meter"].threshold == 1


def test_trusted_root_needs_its_own_threshold() -> None:
    with pytest.raises(BelowThreshold):
        attestation.trusted_root(root_envelope(signers=ROOT_KEYS[:1]))


def test_trusted_root_ignores_expiry() -> None:
    # TUF 5.2: the expiry of the shipped root does not matter; it is checked on use.
    data = attestation.make_root(
        version=1, expires=0, keys=[ROOT_KEYS[0].public_key()], threshold=1, signers=ROOT_KEYS[:1]
    )
    assert attestation.trusted_root(data).expires == 0


def test_rotation_round_trip() -> None:
    root = attestation.trusted_root(root_envelope())
    new_keys = keys(2)
    data = attestation.make_root(
        version=2,
        expires=LATER,
        keys=[k.public_key() for k in new_keys],
        threshold=2,
        signers=[*ROOT_KEYS[:2], *new_keys],
    )
    new = attestation.rotate_root(root, data, NOW)
    assert new.version == 2 and new.owners == {}
    assert new.role.keys == {k.public_key().public_bytes_raw() for k in new_keys}


def test_rotation_replaying_the_current_version_is_rollback() -> None:
    root = attestation.trusted_root(root_envelope())
    with pytest.raises(Rollback):
        attestation.rotate_root(root, root_envelope(version=1), NOW)


def test_rotation_to_an_expired_root_is_refused() -> None:
    root = attestation.trusted_root(root_envelope())
    data = attestation.make_root(
        version=2,
        expires=NOW,
        keys=[k.public_key() for k in ROOT_KEYS],
        threshold=2,
        signers=ROOT_KEYS[:2],
    )
    with pytest.raises(Expired):
        attestation.rotate_root(root, data, NOW)


def test_rotation_threshold_raised_needs_the_new_threshold() -> None:
    root = attestation.trusted_root(root_envelope())
    data = attestation.make_root(
        version=2,
        expires=LATER,
        keys=[k.public_key() for k in ROOT_KEYS],
        threshold=3,
        signers=ROOT_KEYS[:2],
    )
    with pytest.raises(BadRootRotation):
        attestation.rotate_root(root, data, NOW)
    assert attestation.rotate_root(root, attestation.sign(data, ROOT_KEYS[2]), NOW).version == 2


def package(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "target": "domain:meter",
        "counter": 3,
        "expires": LATER,
        "files": FILES,
        "signers": METER_KEYS[:1],
    }
    args.update(overrides)
    return attestation.make_package(**args)  # type: ignore[arg-type]


def test_package_round_trip_and_files() -> None:
    root = attestation.trusted_root(root_envelope())
    pkg = attestation.verify_package(
        root, package(migrate="owner"), target="domain:meter", last_counter=2, now=NOW
    )
    assert pkg.target == "domain:meter" and pkg.counter == 3 and pkg.migrate == "owner"
    assert pkg.files["bin/meter.py"] == attestation.FileInfo(
        hashlib.sha256(FILES["bin/meter.py"]).digest(), len(FILES["bin/meter.py"])
    )
    attestation.check_files(pkg, FILES)


def test_tre_package_needs_the_root_threshold() -> None:
    root = attestation.trusted_root(root_envelope())
    data = package(target="tre", signers=ROOT_KEYS[1:])
    assert (
        attestation.verify_package(root, data, target="tre", last_counter=0, now=NOW).migrate
        is None
    )
    with pytest.raises(BelowThreshold):
        attestation.verify_package(
            root,
            package(target="tre", signers=ROOT_KEYS[:1]),
            target="tre",
            last_counter=0,
            now=NOW,
        )


def test_expired_trusted_root_refuses_packages() -> None:
    root = attestation.trusted_root(root_envelope())
    with pytest.raises(Expired):
        attestation.verify_package(
            root, package(), target="domain:meter", last_counter=0, now=LATER
        )


def test_domain_without_owner_is_wrong_target() -> None:
    root = attestation.trusted_root(root_envelope())
    with pytest.raises(WrongTarget):
        attestation.verify_package(
            root, package(target="domain:oem"), target="domain:oem", last_counter=0, now=NOW
        )


@pytest.mark.parametrize(
    "files",
    [
        {"domain.toml": FILES["domain.toml"]},
        {**FILES, "extra": b""},
        {**FILES, "bin/meter.py": b"print('tock')\n"},
        {**FILES, "bin/meter.py": FILES["bin/meter.py"] + b"\n"},
    ],
)
def test_check_files_mismatch(files: dict[str, bytes]) -> None:
    root = attestation.trusted_root(root_envelope())
    pkg = attestation.verify_package(
        root, package(), target="domain:meter", last_counter=0, now=NOW
    )
    with pytest.raises(FileMismatch):
        attestation.check_files(pkg, files)


@pytest.mark.parametrize(
    "path",
    ["../x", "a/../b", "/etc/passwd", "a\\b", "a//b", "./a", "a/", "", "a/./b", "..", "a\x00b"],
)
def test_bad_paths_are_malformed(path: str) -> None:
    root = attestation.trusted_root(root_envelope())
    with pytest.raises(MalformedPackage):
        attestation.verify_package(
            root, package(files={path: b"x"}), target="domain:meter", last_counter=0, now=NOW
        )


def test_non_deterministic_envelope_is_malformed() -> None:
    root = attestation.trusted_root(root_envelope())
    value = cbor2.loads(package())
    reordered = cbor2.dumps({"signatures": value["signatures"], "signed": value["signed"]})
    with pytest.raises(MalformedPackage):
        attestation.verify_package(root, reordered, target="domain:meter", last_counter=0, now=NOW)


@pytest.mark.parametrize(
    "data", [b"", b"\xff", cbor2.dumps([1, 2]), cbor2.dumps(cbor2.CBORTag(55799, {}))]
)
def test_garbage_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedPackage):
        attestation.trusted_root(data)


def test_sign_wraps_bare_metadata_and_appends() -> None:
    signed = cbor2.loads(package(signers=[]))["signed"]
    data = attestation.sign(signed, METER_KEYS[0])
    data = attestation.sign(data, METER_KEYS[1])
    assert len(cbor2.loads(data)["signatures"]) == 2
    assert (
        attestation.key_id(METER_KEYS[0].public_key().public_bytes_raw())
        == (cbor2.loads(data)["signatures"][0]["keyid"])
    )
