"""Remote attestation end to end through the CLI: ``tre attest``, ``tre reference`` and
``tre verify`` on provisioned devices, the evidence read by cbor2 and cryptography alone
(and its alias certificates by openssl), evidence made by a running TRE, and the demo."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import cbor2
import pytest
import trio
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

import attestation
import tre
from tests.attest_helpers import (
    NONCE,
    NONCE_HEX,
    appraise,
    attest,
    check_token,
    cose_sign1,
    load_ca,
    take_reference,
    tre_cli,
)
from tests.device_helpers import IMEI, assert_one_line_error

REFERENCE_DOMAINS = ["meter", "mno", "oem", "vault"]
OTHER_NONCE_HEX = bytes(range(16)).hex()


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("attest-cli") / "factory"
    code, _, err = tre_cli("factory", "init", "--factory", folder)
    assert code == 0, err
    return folder


@pytest.fixture(scope="module")
def device(factory: Path) -> Path:
    """A provisioned device the tests of this module only read (never boot or tamper)."""
    state = factory.parent / "device"
    code, _, err = tre_cli("provision", "--state", state, "--factory", factory, "--imei", IMEI)
    assert code == 0, err
    return state


@pytest.fixture(scope="module")
def files(device: Path) -> dict[str, Path]:
    """Evidence for NONCE and reference values of ``device``, as files."""
    evidence = device.parent / "evidence.cbor"
    reference = device.parent / "reference.json"
    attest(device, NONCE, evidence)
    take_reference(device, reference)
    return {"evidence": evidence, "reference": reference, "ca": device.parent / "factory/ca.pem"}


def fresh_device(factory: Path, folder: Path) -> Path:
    state = folder / "dev"
    code, _, err = tre_cli("provision", "--state", state, "--factory", factory)
    assert code == 0, err
    return state


def verify_json(*argv: str | Path) -> tuple[int, dict[str, Any]]:
    code, out, err = tre_cli("verify", *argv, "--json")
    assert err == "", err
    result: dict[str, Any] = json.loads(out)
    return code, result


# --- 1. the CLI flow ------------------------------------------------------------------------


def test_factory_provision_attest_reference_verify(tmp_path: Path) -> None:
    factory, state = tmp_path / "factory", tmp_path / "dev"
    assert tre_cli("factory", "init", "--factory", factory)[0] == 0
    code, out, err = tre_cli(
        "provision", "--state", state, "--factory", factory, "--imei", IMEI, "--json"
    )
    assert code == 0, err
    ueid = json.loads(out)["ueid"]
    evidence, reference = tmp_path / "ev.cbor", tmp_path / "ref.json"

    code, out, err = tre_cli("attest", "--state", state, "--nonce", NONCE_HEX, "--out", evidence)
    assert code == 0, err
    assert f"UEID {ueid}" in out and "boot count 0" in out and "4 domains" in out
    assert f"({evidence.stat().st_size} bytes)" in out
    code, out, err = tre_cli("reference", "--state", state, "--out", reference)
    assert (code, err) == (0, "")
    assert "reference values for 4 domains" in out
    assert sorted(json.loads(reference.read_text())["domains"]) == REFERENCE_DOMAINS

    ca = factory / "ca.pem"
    common = ("--evidence", evidence, "--ca", ca, "--reference", reference)
    code, out, err = tre_cli("verify", *common, "--nonce", NONCE_HEX)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "status: affirming"
    assert "problem" not in out

    code, result = verify_json(*common, "--nonce", NONCE_HEX)
    assert code == 0
    assert result["status"] == "affirming" and result["problems"] == []
    assert result["ueid"] == ueid and result["bootcount"] == 0
    assert result["vector"]["executables"] == "affirming"
    assert result["vector"]["instance-identity"] == "affirming"
    assert sorted(result["domains"]) == REFERENCE_DOMAINS
    assert {d["verdict"] for d in result["domains"].values()} == {"affirming"}

    # The same evidence, presented to a verifier who issued another nonce: a replay.
    code, out, err = tre_cli("verify", *common, "--nonce", OTHER_NONCE_HEX)
    assert (code, err) == (1, "")
    assert out.splitlines()[0] == "status: contraindicated"
    assert "problem: nonce-mismatch" in out
    code, result = verify_json(*common, "--nonce", OTHER_NONCE_HEX)
    assert code == 1
    assert result["status"] == "contraindicated"
    assert result["problems"] == ["nonce-mismatch"]
    assert result["vector"]["instance-identity"] == "contraindicated"

    # The offline request is recorded as an event, for the audit log of the next boot.
    conn = sqlite3.connect(f"file:{state / 'tre.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT kind, domain, detail FROM events WHERE kind = 'attest'")
        assert rows.fetchall() == [("attest", "tre", "evidence made offline (nonce of 16 bytes)")]
    finally:
        conn.close()


@pytest.mark.parametrize("size", [8, 64])
def test_nonce_sizes_at_the_bounds_are_accepted(device: Path, tmp_path: Path, size: int) -> None:
    nonce = bytes(range(size))
    evidence = attest(device, nonce, tmp_path / "ev.cbor")
    code, result = verify_json(
        "--evidence", tmp_path / "ev.cbor", "--ca", device.parent / "factory/ca.pem",
        "--nonce", nonce.hex(),
    )  # fmt: skip
    assert code == 0 and result["problems"] == []
    assert check_token(evidence).claims[10] == nonce


BAD_NONCES = {
    "not hex": "zz" * 16,
    "odd number of digits": "a" * 17,
    "7 bytes": "00" * 7,
    "65 bytes": "00" * 65,
    "empty": "",
}


@pytest.mark.parametrize("nonce", BAD_NONCES.values(), ids=BAD_NONCES.keys())
@pytest.mark.parametrize("command", ["attest", "verify"])
def test_a_bad_nonce_is_a_one_line_error(
    files: dict[str, Path], device: Path, tmp_path: Path, command: str, nonce: str
) -> None:
    out_file = tmp_path / "ev.cbor"
    if command == "attest":
        argv: list[str | Path] = ["attest", "--state", device, "--out", out_file]
    else:
        argv = ["verify", "--evidence", files["evidence"], "--ca", files["ca"]]
    code, out, err = tre_cli(*argv, "--nonce", nonce)
    assert_one_line_error(code, out, err, "--nonce")
    assert not out_file.exists()


def test_history_refuses_evidence_from_an_older_boot(factory: Path, tmp_path: Path) -> None:
    state = fresh_device(factory, tmp_path)
    ca, history = factory / "ca.pem", tmp_path / "history.json"
    older, newer = tmp_path / "older.cbor", tmp_path / "newer.cbor"
    nonce_1, nonce_2 = bytes(range(1, 17)), bytes(range(2, 18))
    attest(state, nonce_1, older)

    def verify(evidence: Path, nonce: bytes) -> tuple[int, dict[str, Any]]:
        return verify_json(
            "--evidence", evidence, "--ca", ca, "--nonce", nonce.hex(), "--history", history
        )

    # The first appraisal records the boot count it saw for the device's UEID.
    code, first = verify(older, nonce_1)
    assert code == 0 and first["bootcount"] == 0
    assert json.loads(history.read_text()) == {first["ueid"]: 0}

    code, _, err = tre_cli("run", "--state", state, "--duration", "0")  # counts a boot
    assert code == 0, err
    attest(state, nonce_2, newer)
    code, second = verify(newer, nonce_2)
    assert code == 0 and second["bootcount"] == 1
    assert json.loads(history.read_text()) == {first["ueid"]: 1}

    # The older evidence is genuine and fresh for its own nonce, but from an older boot.
    code, again = verify(older, nonce_1)
    assert code == 1
    assert again["problems"] == ["bootcount-rollback"]
    assert again["status"] == "contraindicated"
    assert json.loads(history.read_text()) == {first["ueid"]: 1}  # not lowered


def test_history_file_of_any_name_can_be_used_twice(files: dict[str, Path], tmp_path: Path) -> None:
    history = tmp_path / "boots"
    argv: list[str | Path] = [
        "--evidence",
        files["evidence"],
        "--ca",
        files["ca"],
        "--nonce",
        NONCE_HEX,
    ]
    assert tre_cli("verify", *argv, "--history", history)[0] == 0
    code, _, err = tre_cli("verify", *argv, "--history", history)
    assert (code, err) == (0, ""), err


@pytest.mark.parametrize("content", ["[1, 2]", '{"%s": "x"}', '{"%s": -1}'])
def test_a_malformed_history_is_a_one_line_error(
    files: dict[str, Path], tmp_path: Path, content: str
) -> None:
    ueid = attestation.ueid_from_imei(IMEI).hex()
    history = tmp_path / "history.json"
    history.write_text(content.replace("%s", ueid))
    argv: list[str | Path] = [
        "--evidence",
        files["evidence"],
        "--ca",
        files["ca"],
        "--nonce",
        NONCE_HEX,
    ]
    try:
        code, out, err = tre_cli("verify", *argv, "--history", history)
    except Exception as exc:  # what the CLI's user sees: a traceback
        pytest.fail(f"tre verify raised {type(exc).__name__}: {exc}")
    assert_one_line_error(code, out, err, str(history))


def _truncated(evidence: bytes) -> bytes:
    return evidence[: len(evidence) // 2]


MALFORMED = {
    "empty file": lambda ev: b"",
    "random bytes": lambda ev: bytes(range(256)) * 4,
    "truncated evidence": _truncated,
    "a trailing byte": lambda ev: ev + b"\x00",
    "a PEM certificate": lambda ev: (
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    ),
    "JSON": lambda ev: b'{"status": "affirming"}',
}


@pytest.mark.parametrize("make", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_evidence_exits_1_without_a_traceback(
    files: dict[str, Path], tmp_path: Path, make: Any
) -> None:
    bad = tmp_path / "bad.cbor"
    bad.write_bytes(make(files["evidence"].read_bytes()))
    argv: list[str | Path] = ["--evidence", bad, "--ca", files["ca"], "--nonce", NONCE_HEX]
    code, out, err = tre_cli("verify", *argv, "--reference", files["reference"])
    assert (code, err) == (1, "")
    assert out.splitlines()[0] == "status: contraindicated"
    assert "problem: malformed-evidence" in out
    code, result = verify_json(*argv)
    assert code == 1 and result["problems"] == ["malformed-evidence"]


@pytest.mark.parametrize(
    "case", ["evidence", "ca", "reference", "attest state", "reference state", "attest out"]
)
def test_missing_files_are_one_line_errors(
    files: dict[str, Path], device: Path, tmp_path: Path, case: str
) -> None:
    missing = tmp_path / "nowhere" / "missing.file"
    verify_args = {
        "evidence": files["evidence"],
        "ca": files["ca"],
        "reference": files["reference"],
    }
    if case in verify_args:
        verify_args[case] = missing
        argv: list[str | Path] = ["verify", "--nonce", NONCE_HEX]
        for key, path in verify_args.items():
            argv += [f"--{key}", path]
    elif case == "attest state":
        argv = ["attest", "--state", missing.parent, "--nonce", NONCE_HEX, "--out", tmp_path / "e"]
    elif case == "reference state":
        argv = ["reference", "--state", missing.parent, "--out", tmp_path / "r"]
    else:
        argv = ["attest", "--state", device, "--nonce", NONCE_HEX, "--out", missing]
    code, out, err = tre_cli(*argv)
    assert_one_line_error(code, out, err, str(missing.parent))


@pytest.mark.parametrize(
    ("option", "content", "fragment"),
    [
        ("--ca", b"not a certificate\n", "not a PEM X.509 certificate"),
        ("--reference", b'{"domains": {}, "extra": 1}', "unknown key(s) extra"),
        ("--reference", b'{"domains": {"oem": {"measurements": ["00"]}}}', "64 hex digits"),
        ("--reference", b"{not json", "not valid .json"),
    ],
)
def test_bad_ca_or_reference_files_are_one_line_errors(
    files: dict[str, Path], tmp_path: Path, option: str, content: bytes, fragment: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    given = {"--evidence": files["evidence"], "--ca": files["ca"], option: bad}
    argv: list[str | Path] = [part for pair in given.items() for part in pair]
    code, out, err = tre_cli("verify", *argv, "--nonce", NONCE_HEX)
    assert_one_line_error(code, out, err, fragment)


def test_a_terminated_device_gives_no_evidence(factory: Path, tmp_path: Path) -> None:
    state = fresh_device(factory, tmp_path)
    assert tre_cli("terminate", "--state", state, "--yes")[0] == 0
    out_file = tmp_path / "ev.cbor"
    code, out, err = tre_cli("attest", "--state", state, "--nonce", NONCE_HEX, "--out", out_file)
    assert_one_line_error(code, out, err, "terminated")
    assert not out_file.exists()


def test_evidence_of_another_manufacturers_device(files: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other-factory"
    assert tre_cli("factory", "init", "--factory", other)[0] == 0
    argv: list[str | Path] = ["--evidence", files["evidence"], "--ca", other / "ca.pem"]
    argv += ["--nonce", NONCE_HEX]
    code, result = verify_json(*argv)
    assert code == 1
    assert result["problems"] == ["untrusted-chain"]
    assert result["status"] == "contraindicated"


def test_a_toml_reference_file_is_read_too(files: dict[str, Path], tmp_path: Path) -> None:
    data = json.loads(files["reference"].read_text())
    lines = [f"require_all = {str(data['require_all']).lower()}"]
    for name, entry in data["domains"].items():
        lines += [
            f"[domains.{name}]",
            f"measurements = {json.dumps(entry['measurements'])}",
            f'owner_hash = "{entry["owner_hash"]}"',
            f"min_svn = {entry['min_svn']}",
        ]
    toml = tmp_path / "reference.toml"
    toml.write_text("\n".join(lines) + "\n")
    argv: list[str | Path] = [
        "--evidence",
        files["evidence"],
        "--ca",
        files["ca"],
        "--nonce",
        NONCE_HEX,
    ]
    code, result = verify_json(*argv, "--reference", toml)
    assert code == 0 and result["status"] == "affirming"


# --- 2. any COSE/CWT library can parse it and check its signatures --------------------------------


def test_evidence_parses_and_verifies_with_cbor2_and_cryptography_alone(
    files: dict[str, Path], device: Path
) -> None:
    evidence = files["evidence"].read_bytes()
    ca = load_ca(device.parent / "factory")
    reference = json.loads(files["reference"].read_text())["domains"]

    outer = check_token(evidence)  # tag 18, four items, EdDSA, signature by the x5chain leaf
    assert len(outer.chain) == 1
    device_cert = outer.chain[0]
    device_cert.verify_directly_issued_by(ca)
    assert device_cert == x509.load_pem_x509_certificate((device / "device.pem").read_bytes())

    claims = outer.claims
    assert claims[10] == NONCE  # nonce (RFC 9711 section 4.1)
    assert claims[256] == attestation.ueid_from_imei(IMEI)  # ueid
    assert claims[267] == 0  # bootcount: never booted
    assert claims[265] == "tag:tre.example,2026:eat/v1"  # eat_profile
    assert isinstance(claims[6], int)  # iat
    assert len(claims[-75001]) == 32 and len(claims[-75002]) == 32  # TRE code, policy
    assert claims[-75003] == "secured"
    assert sorted(claims[266]) == REFERENCE_DOMAINS  # submods, keyed by domain id

    for domain, nested in claims[266].items():
        assert isinstance(nested, bytes)  # bstr .cbor, a CWT-tagged COSE_Sign1
        token = cbor2_tagged(nested, 61)
        inner = check_token(token)
        assert len(inner.chain) == 1
        alias = inner.chain[0]
        alias.verify_directly_issued_by(device_cert)  # alias -> DeviceID -> CA
        assert alias.issuer == device_cert.subject
        assert inner.claims[-75010] == domain
        assert inner.claims[256] == claims[256]  # the same entity
        assert 10 not in inner.claims  # no nonce: the outer signature binds it
        assert inner.claims[-75011].hex() in reference[domain]["measurements"]
        assert inner.claims[-75012].hex() == reference[domain]["owner_hash"]
        assert inner.claims[-75013] == reference[domain]["min_svn"]
        assert inner.claims[-75014] == "installed"  # provisioned, never booted


def cbor2_tagged(data: bytes, tag: int) -> Any:
    item = cbor2.loads(data)
    assert isinstance(item, cbor2.CBORTag) and item.tag == tag
    return item.value


def test_tampered_evidence_fails_an_independent_check(files: dict[str, Path]) -> None:
    """The independent check above is a real one: one bit off and it fails."""
    evidence = bytearray(files["evidence"].read_bytes())
    evidence[evidence.index(NONCE)] ^= 1
    with pytest.raises(InvalidSignature):
        check_token(bytes(evidence))
    protected, unprotected, payload, signature = cose_sign1(files["evidence"].read_bytes())
    assert unprotected == {} and len(signature) == 64 and payload and protected


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_verifies_an_alias_certificate_from_the_evidence(
    files: dict[str, Path], tmp_path: Path
) -> None:
    outer = check_token(files["evidence"].read_bytes())
    device_pem, alias_pem = tmp_path / "device.pem", tmp_path / "alias.pem"
    device_pem.write_bytes(outer.chain[0].public_bytes(Encoding.PEM))
    alias = check_token(cbor2_tagged(outer.claims[266]["meter"], 61)).chain[0]
    alias_pem.write_bytes(alias.public_bytes(Encoding.PEM))

    def openssl_verify(ca: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "openssl",
                "verify",
                "-CAfile",
                str(ca),
                "-untrusted",
                str(device_pem),
                str(alias_pem),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = openssl_verify(files["ca"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"{alias_pem}: OK"
    other = tmp_path / "other"
    assert tre_cli("factory", "init", "--factory", other)[0] == 0
    assert openssl_verify(other / "ca.pem").returncode != 0


# --- evidence made by a running TRE ---------------------------------------------------------------


async def test_a_running_tre_attests_what_the_cli_reference_expects(
    factory: Path, tmp_path: Path
) -> None:
    state = await trio.to_thread.run_sync(fresh_device, factory, tmp_path)
    reference = await trio.to_thread.run_sync(take_reference, state)
    ca = load_ca(factory)
    with trio.fail_after(20):
        async with tre.open_tre(state=state) as t:
            evidence = t.attest(NONCE)
            result = appraise(evidence, ca, reference=reference)
            assert result.status == "affirming", result.details
            assert result.bootcount == t.device.boot_count == 1
            assert result.ueid is not None and result.ueid.hex() == t.device.ueid
            outer = check_token(evidence)
            assert outer.chain == [t.device_certificate]
            for domain, nested in outer.claims[266].items():
                inner = check_token(cbor2_tagged(nested, 61))
                assert inner.claims[-75014] == "active"  # activated at its first boot
                assert inner.claims[-75011] == t.measurement(domain)
                # The alias certificate the API gives is issued anew, for the same key
                # and the same TcbInfo.
                api = t.alias_certificate(domain)
                assert api.public_key() == inner.chain[0].public_key()
                assert attestation.read_tcb_info(api) == attestation.read_tcb_info(inner.chain[0])
            with pytest.raises(attestation.InvalidIdentity):
                t.attest(bytes(7))  # the nonce rule holds at the API too
    # Offline evidence after the run agrees with the running TRE on everything but iat.
    offline = await trio.to_thread.run_sync(attest, state)
    assert appraise(offline, ca, reference=reference).bootcount == 1


# --- 4. the demo ----------------------------------------------------------------------------------


def test_demo_shows_an_attested_session_and_a_remote_verification() -> None:
    code, out, err = tre_cli("demo", "--interval", "0.02")
    assert code == 0, out + err
    assert "Local attestation: meter and oem open a mutually attested session" in out
    assert "readings archived at oem, sealed end to end" in out
    assert "Remote attestation: a verifier checks the device with its own nonce" in out
    assert "nested domain tokens): affirming" in out
    assert "the same evidence under another nonce (a replay): contraindicated" in out
    assert out.rstrip().endswith("demo completed")
