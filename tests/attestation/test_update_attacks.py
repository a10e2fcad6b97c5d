"""The TUF attack table for signed packages and root rotation: each row names its error.

A realistic world: a TRE root role (2 of 3 keys) delegating owner roles for the ``meter``
(1 of 2 keys) and ``oem`` (1 key) domains; a device that last installed meter counter 5.
Every row is built the way an attacker could build it and must be refused with exactly the
named :class:`attestation.UpdateError` subclass. Then hypothesis: random byte changes of a
valid envelope never verify and never raise anything but :class:`attestation.UpdateError`.
"""

from __future__ import annotations

from collections.abc import Callable

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

import attestation
from attestation import (
    BadRootRotation,
    BelowThreshold,
    Expired,
    FileMismatch,
    MalformedPackage,
    MisScoped,
    Rollback,
    UpdateError,
    WrongTarget,
)

NOW = 1_700_000_000
LATER = NOW + 86_400
LAST = 5
METER = "domain:meter"
FILES = {"domain.toml": b"[domain]\nid = 'meter'\n", "bin/meter.py": b"print('tick')\n"}
OTHER_FILES = {"domain.toml": b"[domain]\nid = 'meter'\n", "bin/meter.py": b"evil()\n"}

ROOT_KEYS = [Ed25519PrivateKey.generate() for _ in range(3)]
NEW_ROOT_KEYS = [Ed25519PrivateKey.generate() for _ in range(3)]
METER_KEYS = [Ed25519PrivateKey.generate() for _ in range(2)]
OEM_KEY = Ed25519PrivateKey.generate()
STRANGER = Ed25519PrivateKey.generate()
OWNERS = {
    "meter": ([k.public_key() for k in METER_KEYS], 1),
    "oem": ([OEM_KEY.public_key()], 1),
}


def make_root(
    version: int,
    signers: list[Ed25519PrivateKey],
    keys: list[Ed25519PrivateKey] = ROOT_KEYS,
    expires: int = LATER,
) -> bytes:
    return attestation.make_root(
        version=version,
        expires=expires,
        keys=[k.public_key() for k in keys],
        threshold=2,
        owners=OWNERS,
        signers=signers,
    )


ROOT = attestation.trusted_root(make_root(1, ROOT_KEYS[:2]))


def pkg(
    *,
    target: str = METER,
    counter: int = LAST + 1,
    expires: int = LATER,
    files: dict[str, bytes] = FILES,
    signers: tuple[Ed25519PrivateKey, ...] = (METER_KEYS[0],),
) -> bytes:
    return attestation.make_package(
        target=target, counter=counter, expires=expires, files=files, signers=list(signers)
    )


def install(data: bytes, target: str = METER, files: dict[str, bytes] = FILES) -> None:
    package = attestation.verify_package(ROOT, data, target=target, last_counter=LAST, now=NOW)
    attestation.check_files(package, files)


def swap_signed(good: bytes, donor: bytes) -> bytes:
    """good's signatures over donor's signed bytes (mix-and-match of envelopes)."""
    return cbor2.dumps(
        {"signed": cbor2.loads(donor)["signed"], "signatures": cbor2.loads(good)["signatures"]},
        canonical=True,
    )


def duplicated(data: bytes) -> bytes:
    value = cbor2.loads(data)
    value["signatures"] = value["signatures"] * 2
    return cbor2.dumps(value, canonical=True)


def different_keyid(data: bytes) -> bytes:
    """The same signature twice, the copy under another (unknown) key id."""
    value = cbor2.loads(data)
    copy = dict(value["signatures"][0], keyid="00" * 32)
    value["signatures"].append(copy)
    return cbor2.dumps(value, canonical=True)


PACKAGE_ATTACKS: list[tuple[str, Callable[[], None], type[UpdateError]]] = [
    ("rollback: lower counter", lambda: install(pkg(counter=LAST - 1)), Rollback),
    ("rollback: equal counter", lambda: install(pkg(counter=LAST)), Rollback),
    ("freeze: expired package", lambda: install(pkg(expires=NOW)), Expired),
    ("freeze: long expired", lambda: install(pkg(expires=1)), Expired),
    (
        "mix-and-match: files of another package",
        lambda: install(pkg(), files=OTHER_FILES),
        FileMismatch,
    ),
    (
        "mix-and-match: file swapped after signing",
        lambda: install(pkg(), files={**FILES, "bin/meter.py": b"print('tock')\n"}),
        FileMismatch,
    ),
    (
        "mix-and-match: signatures moved onto another package",
        lambda: install(swap_signed(pkg(), pkg(files=OTHER_FILES, signers=()))),
        BelowThreshold,
    ),
    (
        "arbitrary package: signed by no role key",
        lambda: install(pkg(signers=(STRANGER,))),
        BelowThreshold,
    ),
    ("arbitrary package: unsigned", lambda: install(pkg(signers=())), BelowThreshold),
    (
        "threshold: TRE package, one root key signing twice",
        lambda: install(pkg(target="tre", signers=(ROOT_KEYS[0], ROOT_KEYS[0])), target="tre"),
        BelowThreshold,
    ),
    (
        "threshold: duplicated signature entries",
        lambda: install(duplicated(pkg(target="tre", signers=(ROOT_KEYS[0],))), target="tre"),
        BelowThreshold,
    ),
    (
        "threshold: same signature under an unknown key id",
        lambda: install(different_keyid(pkg(target="tre", signers=(ROOT_KEYS[0],))), target="tre"),
        BelowThreshold,
    ),
    (
        "mis-scoped: oem owner signs for meter",
        lambda: install(pkg(signers=(OEM_KEY,))),
        MisScoped,
    ),
    (
        "mis-scoped: meter owner signs for the TRE",
        lambda: install(pkg(target="tre", signers=(METER_KEYS[0],)), target="tre"),
        MisScoped,
    ),
    (
        "wrong target: meter package offered as oem's",
        lambda: install(pkg(signers=(OEM_KEY,)), target="domain:oem"),
        WrongTarget,
    ),
    (
        "wrong target: oem-signed package for oem offered to meter",
        lambda: install(pkg(target="domain:oem", signers=(METER_KEYS[0],))),
        WrongTarget,
    ),
    (
        "package name with ../",
        lambda: install(pkg(files={"../tre/boot.py": b"x"})),
        MalformedPackage,
    ),
    ("package name nested ..", lambda: install(pkg(files={"bin/../../x": b"x"})), MalformedPackage),
    ("absolute path", lambda: install(pkg(files={"/etc/passwd": b"x"})), MalformedPackage),
    ("backslash path", lambda: install(pkg(files={"..\\x": b"x"})), MalformedPackage),
    ("unknown target type", lambda: install(pkg(target="firmware:meter")), MalformedPackage),
    ("root offered as a package", lambda: install(make_root(2, ROOT_KEYS[:2])), MalformedPackage),
]


def rotate(data: bytes) -> None:
    attestation.rotate_root(ROOT, data, NOW)


ROOT_ATTACKS: list[tuple[str, Callable[[], None], type[UpdateError]]] = [
    (
        "rotation skipping a version",
        lambda: rotate(make_root(3, ROOT_KEYS[:2] + NEW_ROOT_KEYS[:2], NEW_ROOT_KEYS)),
        BadRootRotation,
    ),
    (
        "rotation signed by old keys only",
        lambda: rotate(make_root(2, ROOT_KEYS[:2], NEW_ROOT_KEYS)),
        BadRootRotation,
    ),
    (
        "rotation signed by new keys only",
        lambda: rotate(make_root(2, NEW_ROOT_KEYS[:2], NEW_ROOT_KEYS)),
        BadRootRotation,
    ),
    (
        "rotation: one old key twice and the new threshold",
        lambda: rotate(
            make_root(2, [ROOT_KEYS[0], ROOT_KEYS[0], *NEW_ROOT_KEYS[:2]], NEW_ROOT_KEYS)
        ),
        BadRootRotation,
    ),
    (
        "rotation: old threshold, one new key twice",
        lambda: rotate(
            make_root(2, [*ROOT_KEYS[:2], NEW_ROOT_KEYS[0], NEW_ROOT_KEYS[0]], NEW_ROOT_KEYS)
        ),
        BadRootRotation,
    ),
    ("rotation replaying version 1", lambda: rotate(make_root(1, ROOT_KEYS[:2])), Rollback),
    (
        "rotation to an expired root (freeze)",
        lambda: rotate(make_root(2, ROOT_KEYS[:2], expires=NOW - 1)),
        Expired,
    ),
]


@pytest.mark.parametrize(
    ("attack", "expected"),
    [(row[1], row[2]) for row in PACKAGE_ATTACKS + ROOT_ATTACKS],
    ids=[row[0] for row in PACKAGE_ATTACKS + ROOT_ATTACKS],
)
def test_attack_is_refused(attack: Callable[[], None], expected: type[UpdateError]) -> None:
    with pytest.raises(UpdateError) as info:
        attack()
    assert type(info.value) is expected, info.value


def test_the_honest_cases_pass() -> None:
    install(pkg())
    install(pkg(target="tre", signers=tuple(ROOT_KEYS[1:])), target="tre")
    new = attestation.rotate_root(
        ROOT, make_root(2, ROOT_KEYS[:2] + NEW_ROOT_KEYS[1:], NEW_ROOT_KEYS), NOW
    )
    assert new.version == 2


GOOD_PACKAGE = pkg(target="tre", signers=tuple(ROOT_KEYS[:2]))
GOOD_ROOT = make_root(2, ROOT_KEYS[:2] + NEW_ROOT_KEYS[:2], NEW_ROOT_KEYS)


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    buf = bytearray(data)
    for index, value in edits:
        buf[index % len(buf)] ^= value
    return bytes(buf[: len(buf) - cut])


EDITS = st.lists(
    st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
    min_size=1,
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(edits=EDITS, cut=st.integers(min_value=0, max_value=3))
def test_package_byte_changes_never_verify(edits: list[tuple[int, int]], cut: int) -> None:
    bad = mutate(GOOD_PACKAGE, edits, cut)
    if bad == GOOD_PACKAGE:
        return
    with pytest.raises(UpdateError):
        attestation.verify_package(ROOT, bad, target="tre", last_counter=LAST, now=NOW)


@settings(max_examples=300, deadline=None)
@given(edits=EDITS, cut=st.integers(min_value=0, max_value=3))
def test_root_byte_changes_never_verify(edits: list[tuple[int, int]], cut: int) -> None:
    bad = mutate(GOOD_ROOT, edits, cut)
    if bad == GOOD_ROOT:
        return
    with pytest.raises(UpdateError):
        attestation.rotate_root(ROOT, bad, NOW)
    bad_initial = mutate(ROOT.envelope, edits, cut)
    if bad_initial != ROOT.envelope:
        with pytest.raises(UpdateError):
            attestation.trusted_root(bad_initial)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_update_errors(data: bytes) -> None:
    with pytest.raises(UpdateError):
        attestation.verify_package(ROOT, data, target=METER, last_counter=LAST, now=NOW)
