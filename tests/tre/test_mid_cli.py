"""``tre mid ...``: HPKE-bound MID packages made by the issuer, installed on one device only,
once, then run (issue 6, section 3). Real state folders on the real clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

import attestation
from tests.device_helpers import assert_one_line_error, cli, make_factory, provision_device
from tre._cli_mid import MAC_FAILURE_STATUS
from tre._midpackage import signed_bytes

VECTORS = json.loads(
    (Path(__file__).parents[1] / "domains" / "vectors" / "ts35208.json").read_text()
)["sets"]
SET1 = VECTORS[0]
IMSI = "001010123456789"


def autn_of(vector: dict[str, str], mac: str | None = None) -> str:
    sqn, ak = bytes.fromhex(vector["SQN"]), bytes.fromhex(vector["f5_AK"])
    concealed = bytes(a ^ b for a, b in zip(sqn, ak, strict=True))
    return concealed.hex() + vector["AMF"] + (mac or vector["f1_MAC_A"])


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_factory(tmp_path_factory.mktemp("mid") / "factory")


class Run:
    """Runs ``tre`` and keeps every line it printed (to check no secret ever appears)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.printed: list[str] = []

    def __call__(self, *argv: str | Path) -> tuple[int, str, str]:
        code, out, err = cli(self.capsys, *argv)
        self.printed += [out, err]
        return code, out, err

    def ok(self, *argv: str | Path) -> str:
        code, out, err = self(*argv)
        assert code == 0, err
        return out


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


@pytest.fixture
def device(factory: Path, tmp_path: Path, run: Run) -> Path:
    state = tmp_path / "device"
    provision_device(state, factory)
    run.ok("mid", "cert", "--state", state, "--out", tmp_path / "device.json")
    return state


def package(
    run: Run,
    factory: Path,
    cert: Path,
    out: Path,
    vector: dict[str, str] = SET1,
    *,
    imsi: str = IMSI,
    issuer: str = "mno",
    extra: tuple[str, ...] = (),
) -> Path:
    run.ok(
        "mid", "package",
        "--issuer-key", factory / "owners" / f"{issuer}.key",
        "--device-cert", cert,
        "--imsi", imsi, "--k", vector["K"], "--opc", vector["OPc"],
        "--amf", vector["AMF"], "--out", out, *extra,
    )  # fmt: skip
    return out


def install(run: Run, state: Path, pkg: Path) -> tuple[int, str, str]:
    return run("mid", "install", "--state", state, pkg)


def authenticate(run: Run, state: Path, vector: dict[str, str], autn: str) -> tuple[int, str, str]:
    return run(
        "mid", "authenticate", "--state", state, "--imsi", IMSI,
        "--rand", vector["RAND"], "--autn", autn, "--json",
    )  # fmt: skip


def resign(pkg: Path, factory: Path, change: Any) -> None:
    """Rewrite a package with ``change`` applied, signed again by the real issuer."""
    fields = msgpack.unpackb(pkg.read_bytes(), raw=False)
    change(fields)
    key = attestation.load_private_key_pem((factory / "owners" / "mno.key").read_bytes())
    fields["sig"] = key.sign(signed_bytes(fields["header"], fields["enc"], fields["ct"]))
    pkg.write_bytes(msgpack.packb(fields, use_bin_type=True))


# --- the whole flow ---------------------------------------------------------------------------


def test_cert_document(device: Path, tmp_path: Path, factory: Path) -> None:
    doc = json.loads((tmp_path / "device.json").read_text())
    assert set(doc) == {"ueid", "mid_key", "device_cert", "alias_cert", "mid_key_sig"}
    assert len(bytes.fromhex(doc["mid_key"])) == 32
    cert = attestation.load_cert_pem(doc["device_cert"].encode())
    assert attestation.device_ueid(cert).hex() == doc["ueid"]
    alias = attestation.load_cert_pem(doc["alias_cert"].encode())
    assert attestation.read_tcb_info(alias)["domain_id"] == "mno"


def test_a_mid_key_swapped_in_the_document_is_refused(
    device: Path, tmp_path: Path, factory: Path, run: Run
) -> None:
    """The MID key is endorsed by mno's alias key: an issuer given a document whose key was
    replaced (say by someone who wants to read the credentials) refuses to make a package."""
    doc = json.loads((tmp_path / "device.json").read_text())
    doc["mid_key"] = (bytes([9]) + bytes(31)).hex()  # some other X25519 public key
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    code, _, err = run(
        "mid", "package", "--issuer-key", factory / "owners" / "mno.key",
        "--device-cert", forged, "--imsi", IMSI, "--k", SET1["K"], "--opc", SET1["OPc"],
        "--out", tmp_path / "p.bin",
    )  # fmt: skip
    assert code == 2
    assert "mid_key" in err and "endorsed" in err
    assert not (tmp_path / "p.bin").exists()


def test_package_install_enable_authenticate_set1(
    device: Path, tmp_path: Path, factory: Path, run: Run
) -> None:
    pkg = package(
        run, factory, tmp_path / "device.json", tmp_path / "p.bin",
        extra=("--ca", str(factory / "ca.pem")),
    )  # fmt: skip
    assert "installed" in run.ok("mid", "install", "--state", device, pkg)
    listed = json.loads(run.ok("mid", "list", "--state", device, "--json"))
    assert [(m["imsi"], m["state"]) for m in listed] == [(IMSI, "installed")]
    run.ok("mid", "enable", "--state", device, "--imsi", IMSI)
    code, out, err = authenticate(run, device, SET1, autn_of(SET1))
    assert code == 0, err
    assert json.loads(out) == {"res": SET1["f2_RES"], "ck": SET1["f3_CK"], "ik": SET1["f4_IK"]}
    # the same AUTN again: stale SQN, a resynchronisation token
    code, out, err = authenticate(run, device, SET1, autn_of(SET1))
    assert code == 0, err
    assert set(json.loads(out)) == {"auts"}
    listed = json.loads(run.ok("mid", "list", "--state", device, "--imsi", IMSI, "--json"))
    assert listed[0]["sqn"] == int(SET1["SQN"], 16)
    run.ok("mid", "disable", "--state", device, "--imsi", IMSI)
    run.ok("mid", "delete", "--state", device, "--imsi", IMSI)
    listed = json.loads(run.ok("mid", "list", "--state", device, "--json"))
    assert listed[0]["state"] == "deleted"
    printed = "\n".join(run.printed).lower()
    for secret in (SET1["K"], SET1["OPc"]):
        assert secret.lower() not in printed


def test_every_ts35208_set_through_the_cli(
    device: Path, tmp_path: Path, factory: Path, run: Run
) -> None:
    for i, vector in enumerate(VECTORS[1:], start=2):
        imsi = f"00101000000000{i}"
        pkg = package(
            run, factory, tmp_path / "device.json", tmp_path / f"p{i}.bin", vector, imsi=imsi
        )
        run.ok("mid", "install", "--state", device, pkg)
        if i > 2:  # one MID enabled at a time
            run.ok("mid", "disable", "--state", device, "--imsi", f"00101000000000{i - 1}")
        run.ok("mid", "enable", "--state", device, "--imsi", imsi)
        code, out, err = run(
            "mid", "authenticate", "--state", device, "--imsi", imsi,
            "--rand", vector["RAND"], "--autn", autn_of(vector), "--json",
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(out) == {
            "res": vector["f2_RES"],
            "ck": vector["f3_CK"],
            "ik": vector["f4_IK"],
        }, i


def test_bad_autn_exits_3(device: Path, tmp_path: Path, factory: Path, run: Run) -> None:
    pkg = package(run, factory, tmp_path / "device.json", tmp_path / "p.bin")
    run.ok("mid", "install", "--state", device, pkg)
    run.ok("mid", "enable", "--state", device, "--imsi", IMSI)
    code, out, err = authenticate(run, device, SET1, autn_of(SET1, mac="00" * 8))
    assert code == MAC_FAILURE_STATUS == 3
    assert out == ""
    assert err.strip().splitlines() == ["tre: error: MAC failure"]
    # nothing changed: the genuine AUTN still works
    code, out, err = authenticate(run, device, SET1, autn_of(SET1))
    assert code == 0 and json.loads(out)["res"] == SET1["f2_RES"], err


# --- refused packages -------------------------------------------------------------------------


def test_replayed_package_refused(device: Path, tmp_path: Path, factory: Path, run: Run) -> None:
    cert = tmp_path / "device.json"
    pkg = package(run, factory, cert, tmp_path / "p.bin", extra=("--counter", "10"))
    run.ok("mid", "install", "--state", device, pkg)
    assert_one_line_error(*install(run, device, pkg), "REPLAYED")
    # deleted, then the same package again: still refused (it is used once, ever)
    run.ok("mid", "delete", "--state", device, "--imsi", IMSI)
    assert_one_line_error(*install(run, device, pkg), "REPLAYED")
    # a fresh txid with an old counter is refused too; a higher counter is accepted
    old = package(run, factory, cert, tmp_path / "old.bin", extra=("--counter", "9"))
    assert_one_line_error(*install(run, device, old), "REPLAYED")
    new = package(run, factory, cert, tmp_path / "new.bin", extra=("--counter", "11"))
    run.ok("mid", "install", "--state", device, new)


def test_package_for_another_device_refused(
    device: Path, tmp_path: Path, factory: Path, run: Run
) -> None:
    other = tmp_path / "other"
    provision_device(other, factory)
    pkg = package(run, factory, tmp_path / "device.json", tmp_path / "p.bin")
    assert_one_line_error(*install(run, other, pkg), "BAD_PACKAGE")
    # claiming the other device's UEID (signed by the issuer) does not help: the package is
    # sealed to the first device's key
    run.ok("mid", "cert", "--state", other, "--out", tmp_path / "other.json")
    ueid = bytes.fromhex(json.loads((tmp_path / "other.json").read_text())["ueid"])

    def claim(fields: dict[str, Any]) -> None:
        header = msgpack.unpackb(fields["header"], raw=False)
        header["ueid"] = ueid
        fields["header"] = msgpack.packb(header, use_bin_type=True)

    resign(pkg, factory, claim)
    assert_one_line_error(*install(run, other, pkg), "BAD_PACKAGE")
    assert json.loads(run.ok("mid", "list", "--state", other, "--json")) == []


def test_tampered_package_refused(device: Path, tmp_path: Path, factory: Path, run: Run) -> None:
    cert = tmp_path / "device.json"
    pkg = package(run, factory, cert, tmp_path / "p.bin")
    fields = msgpack.unpackb(pkg.read_bytes(), raw=False)
    # a flipped ciphertext byte: the issuer's signature no longer verifies
    fields["ct"] = bytes([fields["ct"][0] ^ 1]) + fields["ct"][1:]
    tampered = tmp_path / "tampered.bin"
    tampered.write_bytes(msgpack.packb(fields, use_bin_type=True))
    assert_one_line_error(*install(run, device, tampered), "WRONG_ISSUER")
    # altered and signed again (an insider with the key): HPKE itself refuses it, for the
    # ciphertext and for the header it is bound to
    resign(tampered, factory, lambda f: None)
    assert_one_line_error(*install(run, device, tampered), "BAD_PACKAGE")
    pkg2 = package(run, factory, cert, tmp_path / "p2.bin")

    def other_imsi(f: dict[str, Any]) -> None:
        header = msgpack.unpackb(f["header"], raw=False)
        header["imsi"] = "001019999999999"
        f["header"] = msgpack.packb(header, use_bin_type=True)

    resign(pkg2, factory, other_imsi)
    assert_one_line_error(*install(run, device, pkg2), "BAD_PACKAGE")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x93not a package")
    assert_one_line_error(*install(run, device, garbage), "BAD_PACKAGE")
    assert json.loads(run.ok("mid", "list", "--state", device, "--json")) == []
    # the genuine package still installs
    run.ok("mid", "install", "--state", device, package(run, factory, cert, tmp_path / "p3.bin"))


def test_wrong_issuer_refused(device: Path, tmp_path: Path, factory: Path, run: Run) -> None:
    pkg = package(run, factory, tmp_path / "device.json", tmp_path / "p.bin", issuer="oem")
    assert_one_line_error(*install(run, device, pkg), "WRONG_ISSUER")
    assert json.loads(run.ok("mid", "list", "--state", device, "--json")) == []


def test_ca_check_refuses_a_foreign_device_cert(
    device: Path, tmp_path: Path, factory: Path, run: Run
) -> None:
    other_factory = make_factory(tmp_path / "other-factory")
    code, out, err = run(
        "mid", "package", "--issuer-key", factory / "owners" / "mno.key",
        "--device-cert", tmp_path / "device.json", "--ca", other_factory / "ca.pem",
        "--imsi", IMSI, "--k", SET1["K"], "--opc", SET1["OPc"], "--out", tmp_path / "p.bin",
    )  # fmt: skip
    assert_one_line_error(code, out, err, "does not chain")
    assert not (tmp_path / "p.bin").exists()
