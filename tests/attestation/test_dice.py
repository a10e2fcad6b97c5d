"""DICE derivations: known answers, an independent re-derivation, and the key properties."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import pickle
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import attestation
from attestation import InvalidIdentity, Secret
from tests.attestation import _vectors

# --- an independent implementation of the documented formulas (test-only) -----------------


def ref_hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 from scratch: PRK = HMAC(salt, IKM); T(i) = HMAC(PRK, T(i-1) | info | i)."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def ref_public(seed: bytes) -> str:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw().hex()


def ref_expected(i: dict[str, Any]) -> dict[str, str]:
    """Every expected value of the KAT, computed from the formulas in the docstrings."""
    uds = bytes.fromhex(i["uds"])
    dom = i["domain_id"].encode()
    attest = ref_hkdf(uds, bytes.fromhex(i["tre_measurement"]), b"tre/v1/cdi-attest")
    seal = ref_hkdf(uds, bytes.fromhex(i["authority"]), b"tre/v1/cdi-seal")
    owner_public = bytes.fromhex(ref_public(bytes.fromhex(i["owner_seed"])))
    owner_hash = hashlib.sha256(lp(b"tre/v1/owner-key") + lp(owner_public)).digest()
    measurement = hashlib.sha256(
        lp(b"tre/v1/domain-measurement")
        + lp(bytes.fromhex(i["code_hash"]))
        + lp(bytes.fromhex(i["manifest_hash"]))
        + lp(owner_hash)
        + i["svn"].to_bytes(4, "big")
    ).digest()
    d_attest = ref_hkdf(attest, measurement, b"tre/v1/domain-attest/" + dom)
    d_seal = ref_hkdf(seal, measurement, b"tre/v1/domain-seal-measurement/" + dom)

    def owner_key(svn: int) -> str:
        info = b"tre/v1/domain-seal-owner/" + dom + b"/" + svn.to_bytes(4, "big")
        return ref_hkdf(seal, owner_hash, info).hex()

    files = sorted((p.encode(), c.encode()) for p, c in i["files"])
    files_data = lp(b"tre/v1/files") + len(files).to_bytes(4, "big")
    for path, content in files:
        files_data += lp(path) + len(content).to_bytes(8, "big") + content
    return {
        "device_id_public": ref_public(ref_hkdf(uds, b"", b"tre/v1/device-id")),
        "tre_cdi_attest": attest.hex(),
        "tre_cdi_seal": seal.hex(),
        "owner_public": owner_public.hex(),
        "owner_key_hash": owner_hash.hex(),
        "authority_hash_of_owner_public": hashlib.sha256(
            lp(b"tre/v1/authority") + lp(owner_public)
        ).hexdigest(),
        "domain_measurement": measurement.hex(),
        "domain_cdi_attest": d_attest.hex(),
        "domain_cdi_seal_measurement": d_seal.hex(),
        "alias_public": ref_public(ref_hkdf(d_attest, b"", b"tre/v1/alias-key")),
        "owner_seal_key_svn1": owner_key(1),
        "owner_seal_key_svn2": owner_key(2),
        "derived_key": ref_hkdf(seal, b"", b"tre/v1/key/" + i["key_purpose"].encode()).hex(),
        "files_hash": hashlib.sha256(files_data).hexdigest(),
    }


def test_reference_hkdf_matches_rfc5869_test_case_1() -> None:
    ikm = bytes([0x0B] * 22)
    salt = bytes(range(13))
    info = bytes(range(0xF0, 0xFA))
    okm = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    assert ref_hkdf(ikm, salt, info, 42).hex() == okm


def test_reference_hkdf_matches_cryptography_with_empty_salt() -> None:
    from cryptography.hazmat.primitives import hashes

    for length in (1, 32, 33, 100):
        ours = ref_hkdf(b"ikm", b"", b"info", length)
        theirs = HKDF(algorithm=hashes.SHA256(), length=length, salt=b"", info=b"info")
        assert ours == theirs.derive(b"ikm")


# --- known answers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kat() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_vectors.PATH.read_text(encoding="utf-8"))
    return data


def test_kat_inputs_are_the_generator_inputs(kat: dict[str, Any]) -> None:
    assert kat["inputs"] == json.loads(json.dumps(_vectors.INPUTS))


def test_kat_matches_the_library(kat: dict[str, Any]) -> None:
    assert _vectors.compute(kat["inputs"]) == kat["expected"]


def test_kat_matches_the_documented_formulas(kat: dict[str, Any]) -> None:
    assert ref_expected(kat["inputs"]) == kat["expected"]


def test_kat_covers_every_output(kat: dict[str, Any]) -> None:
    assert set(kat["expected"]) == set(ref_expected(kat["inputs"]))
    assert all(len(v) == 64 for v in kat["expected"].values())
    assert len(set(kat["expected"].values())) == len(kat["expected"])


# --- properties ----------------------------------------------------------------------------

UDS = Secret(bytes(range(32)))
TRE_M = hashlib.sha256(b"tre code v1").digest()
AUTHORITY = attestation.authority_hash(bytes(32))
OWNER = attestation.owner_key_hash(bytes(range(32)))
MANIFEST = hashlib.sha256(b"manifest").digest()
FILES = [("meter/__init__.py", b"x = 1\n"), ("meter/domain.toml", b"name = 'meter'\n")]


def derive(
    uds: Secret = UDS,
    tre_m: bytes = TRE_M,
    files: list[tuple[str, bytes]] = FILES,
    svn: int = 1,
    domain_id: str = "meter",
) -> dict[str, bytes]:
    """Every output for one configuration, as bytes, for comparisons."""
    tre = attestation.tre_cdis(uds, tre_m, AUTHORITY)
    measurement = attestation.measure_domain(attestation.hash_files(files), MANIFEST, OWNER, svn)
    dom = attestation.domain_cdis(tre, domain_id, measurement)
    return {
        "device_id": attestation.device_id_key(uds).public_key().public_bytes_raw(),
        "tre_attest": tre.attest.reveal(),
        "tre_seal": tre.seal.reveal(),
        "measurement": measurement,
        "domain_attest": dom.attest.reveal(),
        "seal_measurement": dom.seal_measurement.reveal(),
        "alias": attestation.alias_key(dom).public_key().public_bytes_raw(),
        "owner_seal": attestation.owner_seal_key(tre, domain_id, OWNER, svn).reveal(),
    }


def changed(a: dict[str, bytes], b: dict[str, bytes]) -> set[str]:
    return {k for k in a if a[k] != b[k]}


def test_same_inputs_same_keys() -> None:
    assert derive() == derive()
    assert derive(files=list(reversed(FILES))) == derive()  # listing order does not matter


def test_one_changed_byte_of_code_changes_measurement_bound_keys_only() -> None:
    patched = [(FILES[0][0], b"x = 2\n"), FILES[1]]
    assert changed(derive(), derive(files=patched)) == {
        "measurement",
        "domain_attest",
        "seal_measurement",
        "alias",
    }


def test_new_svn_changes_owner_key_and_measurement() -> None:
    assert "owner_seal" in changed(derive(svn=1), derive(svn=2))
    assert "measurement" in changed(derive(svn=1), derive(svn=2))


def test_owner_keys_differ_per_svn_and_per_domain() -> None:
    tre = attestation.tre_cdis(UDS, TRE_M, AUTHORITY)
    keys = [attestation.owner_seal_key(tre, "meter", OWNER, svn) for svn in range(4)]
    assert len({k.reveal() for k in keys}) == 4
    other = attestation.owner_seal_key(tre, "oem", OWNER, 1)
    assert other != keys[1]
    assert attestation.owner_seal_key(tre, "meter", MANIFEST, 1) != keys[1]


def test_different_uds_changes_everything() -> None:
    other = derive(uds=Secret(bytes(range(1, 33))))
    assert changed(derive(), other) == set(derive()) - {"measurement"}


def test_tre_update_changes_attestation_but_not_sealing() -> None:
    updated = derive(tre_m=hashlib.sha256(b"tre code v2").digest())
    assert changed(derive(), updated) == {"tre_attest", "domain_attest", "alias"}


def test_device_id_depends_on_the_uds_only() -> None:
    a = derive(tre_m=hashlib.sha256(b"other").digest(), files=[("x", b"")], svn=9)
    assert a["device_id"] == derive()["device_id"]


def test_domains_get_separate_keys() -> None:
    assert changed(derive(), derive(domain_id="oem")) == {
        "domain_attest",
        "seal_measurement",
        "alias",
        "owner_seal",
    }


def test_outputs_never_equal_their_parents() -> None:
    tre = attestation.tre_cdis(UDS, TRE_M, AUTHORITY)
    dom = attestation.domain_cdis(tre, "meter", TRE_M)
    secrets = [UDS, tre.attest, tre.seal, dom.attest, dom.seal_measurement]
    assert len({s.reveal() for s in secrets}) == len(secrets)


def test_derive_key() -> None:
    tre = attestation.tre_cdis(UDS, TRE_M, AUTHORITY)
    a = attestation.derive_key(tre.seal, "storage")
    assert len(a) == 32
    assert attestation.derive_key(tre.seal, "storage") == a
    assert attestation.derive_key(tre.seal, "counter-mac") != a
    assert attestation.derive_key(tre.attest, "storage") != a
    long = attestation.derive_key(tre.seal, "storage", 64)
    assert long.reveal()[:32] == a.reveal()  # HKDF output is a prefix-stable stream
    for purpose in ("", "x" * 129, "bad\nline"):
        with pytest.raises(InvalidIdentity):
            attestation.derive_key(tre.seal, purpose)
    for length in (0, 8161, True):
        with pytest.raises(InvalidIdentity):
            attestation.derive_key(tre.seal, "storage", length)


# --- input checks --------------------------------------------------------------------------


@pytest.mark.parametrize("uds", [Secret(bytes(31)), Secret(bytes(33))])
def test_uds_must_be_32_bytes(uds: Secret) -> None:
    with pytest.raises(InvalidIdentity, match="32 bytes"):
        attestation.device_id_key(uds)
    with pytest.raises(InvalidIdentity, match="32 bytes"):
        attestation.tre_cdis(uds, TRE_M, AUTHORITY)


def test_uds_must_be_a_secret() -> None:
    with pytest.raises(InvalidIdentity, match="Secret"):
        attestation.device_id_key(bytes(32))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33), "00" * 32, None])
def test_measurement_inputs_must_be_32_bytes(bad: Any) -> None:
    with pytest.raises(InvalidIdentity):
        attestation.measure_domain(bad, MANIFEST, OWNER, 1)
    with pytest.raises(InvalidIdentity):
        attestation.measure_domain(MANIFEST, bad, OWNER, 1)
    with pytest.raises(InvalidIdentity):
        attestation.measure_domain(MANIFEST, MANIFEST, bad, 1)
    with pytest.raises(InvalidIdentity):
        attestation.tre_cdis(UDS, bad, AUTHORITY)
    with pytest.raises(InvalidIdentity):
        attestation.tre_cdis(UDS, TRE_M, bad)
    tre = attestation.tre_cdis(UDS, TRE_M, AUTHORITY)
    with pytest.raises(InvalidIdentity):
        attestation.domain_cdis(tre, "meter", bad)
    with pytest.raises(InvalidIdentity):
        attestation.owner_seal_key(tre, "meter", bad, 1)


@pytest.mark.parametrize("svn", [-1, 2**31, True, 1.0, "1"])
def test_svn_range(svn: Any) -> None:
    tre = attestation.tre_cdis(UDS, TRE_M, AUTHORITY)
    with pytest.raises(InvalidIdentity, match="svn"):
        attestation.measure_domain(MANIFEST, MANIFEST, OWNER, svn)
    with pytest.raises(InvalidIdentity, match="svn"):
        attestation.owner_seal_key(tre, "meter", OWNER, svn)


def test_svn_bounds_are_accepted() -> None:
    for svn in (0, attestation.MAX_SVN):
        assert len(attestation.measure_domain(MANIFEST, MANIFEST, OWNER, svn)) == 32


@pytest.mark.parametrize("domain_id", ["", "a/b", "-x", "x" * 65, "é", "a b", None, "a\x00"])
def test_domain_id_rules(domain_id: Any) -> None:
    tre = attestation.tre_cdis(UDS, TRE_M, AUTHORITY)
    with pytest.raises(InvalidIdentity, match="domain id"):
        attestation.domain_cdis(tre, domain_id, TRE_M)
    with pytest.raises(InvalidIdentity, match="domain id"):
        attestation.owner_seal_key(tre, domain_id, OWNER, 1)


def test_domain_ids_the_manifests_allow_are_accepted() -> None:
    for domain_id in ("oem", "meter", "mno-2", "a_b", "x" * 32, "A.b"):
        assert attestation.check_domain_id(domain_id) == domain_id


def test_wrong_types_for_cdis() -> None:
    with pytest.raises(InvalidIdentity):
        attestation.domain_cdis(object(), "meter", TRE_M)  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentity):
        attestation.owner_seal_key(object(), "meter", OWNER, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentity):
        attestation.alias_key(object())  # type: ignore[arg-type]
    raw = bytes(range(7, 39))
    with pytest.raises(InvalidIdentity) as info:
        attestation.TreCdis(attest=raw, seal=UDS)  # type: ignore[arg-type]
    assert not _leaks(str(info.value) + repr(info.value), raw)
    with pytest.raises(InvalidIdentity):
        attestation.DomainCdis(attest=UDS, seal_measurement=raw)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [bytes(31), bytes(33), "00" * 32])
def test_public_key_hashes_need_raw_32_bytes(key: Any) -> None:
    with pytest.raises(InvalidIdentity):
        attestation.owner_key_hash(key)
    with pytest.raises(InvalidIdentity):
        attestation.authority_hash(key)


def test_owner_and_authority_hashes_are_separated() -> None:
    key = bytes(range(32))
    assert attestation.owner_key_hash(key) != attestation.authority_hash(key)


# --- hash_files ----------------------------------------------------------------------------


def test_hash_files_is_unambiguous() -> None:
    h = attestation.hash_files
    assert h([("a", b"bc")]) != h([("ab", b"c")])
    assert h([("a", b""), ("b", b"")]) != h([("a", b"\x00\x00\x00\x00\x00\x00\x00\x01b")])
    assert h([]) != h([("a", b"")])
    assert h([("a", b"x")]) != h([("a", b"y")])
    assert h([("a", b"x")]) != h([("b", b"x")])
    assert h([("a", bytearray(b"x"))]) == h([("a", b"x")])  # type: ignore[list-item]


def test_hash_files_accepts_a_generator() -> None:
    assert attestation.hash_files(iter(FILES)) == attestation.hash_files(FILES)


def test_hash_files_refuses_duplicates() -> None:
    with pytest.raises(InvalidIdentity, match="twice"):
        attestation.hash_files([("a.py", b"1"), ("a.py", b"1")])


@pytest.mark.parametrize(
    "path", ["", "/abs", "a//b", "a/", "./a", "a/../b", "..", "a\\b", "a\x00", "\udcff"]
)
def test_hash_files_refuses_unnormalised_paths(path: str) -> None:
    with pytest.raises(InvalidIdentity):
        attestation.hash_files([(path, b"")])


@pytest.mark.parametrize("item", [("a",), ("a", "text"), (b"a", b""), ["a", b""]])
def test_hash_files_refuses_malformed_entries(item: Any) -> None:
    with pytest.raises(InvalidIdentity):
        attestation.hash_files([item])


# --- secrets never show --------------------------------------------------------------------


def _leaks(text: str, secret: bytes) -> bool:
    return secret.hex() in text.lower() or repr(secret) in text or str(list(secret)) in text


def test_secret_repr_and_str_show_only_the_length() -> None:
    raw = bytes(range(100, 132))
    s = Secret(raw)
    assert repr(s) == str(s) == f"{s}" == "Secret(<32 bytes>)"
    assert not _leaks(repr(s), raw)
    assert s.reveal() == raw and len(s) == 32


def test_cdi_reprs_never_show_secrets() -> None:
    tre = attestation.tre_cdis(UDS, TRE_M, AUTHORITY)
    dom = attestation.domain_cdis(tre, "meter", TRE_M)
    secrets = [UDS, tre.attest, tre.seal, dom.attest, dom.seal_measurement]
    texts = [repr(tre), str(tre), repr(dom), str(dom), repr(attrs.asdict(dom))]
    for text in texts:
        assert "Secret(<32 bytes>)" in text
        for secret in secrets:
            assert not _leaks(text, secret.reveal())


def test_errors_never_show_secrets() -> None:
    raw = bytes(range(31))
    with pytest.raises(InvalidIdentity) as info:
        attestation.device_id_key(Secret(raw))
    assert not _leaks(str(info.value) + repr(info.value), raw)
    assert info.value.code == "INVALID_IDENTITY"


def test_secret_equality_is_by_content_and_only_with_secrets() -> None:
    assert Secret(b"abc") == Secret(bytearray(b"abc"))
    assert Secret(b"abc") != Secret(b"abd")
    assert Secret(b"abc") != b"abc"


def test_secret_is_immutable_unhashable_and_unpicklable() -> None:
    s = Secret(b"abc")
    with pytest.raises(AttributeError):
        s._value = b"x"
    with pytest.raises(AttributeError):
        del s._value
    with pytest.raises(TypeError):
        hash(s)
    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert copy.copy(s) is s and copy.deepcopy(s) is s


@pytest.mark.parametrize("value", [b"", "abc", None, memoryview(b"abc")])
def test_secret_rejects_non_bytes_and_empty(value: Any) -> None:
    with pytest.raises(InvalidIdentity):
        Secret(value)
