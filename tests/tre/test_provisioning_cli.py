"""The device commands of the CLI: factory init, provision, status, run --state, terminate,
and the clear one-line errors they give on broken or foreign state folders."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import attestation
import tre
from tests.device_helpers import (
    EXAMPLE,
    IMEI,
    ROOT,
    acli,
    assert_one_line_error,
    cli,
    db_rows,
    make_factory,
    provision_device,
    status_json,
    write_config,
)

HEX64 = re.compile(r"[0-9a-f]{64}")
REFERENCE = ["meter", "mno", "oem", "vault"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One factory for the module (its CA and owner keys are only read by the tests)."""
    return make_factory(tmp_path_factory.mktemp("factory") / "factory")


def load_device_cert(state: Path) -> x509.Certificate:
    return attestation.load_cert_pem((state / "device.pem").read_bytes())


def san_uris(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


# --- tre factory init ---------------------------------------------------------------------------


def test_factory_init_makes_ca_and_owner_keys(capsys, tmp_path):
    folder = tmp_path / "factory"
    code, out, err = cli(capsys, "factory", "init", "--factory", folder)
    assert code == 0, err
    assert (folder / "ca.pem").is_file()
    assert mode(folder / "ca.key") == 0o600
    ca = attestation.load_cert_pem((folder / "ca.pem").read_bytes())
    ca_key = attestation.load_private_key_pem((folder / "ca.key").read_bytes())
    assert ca.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) == (
        ca_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    attestation.verify_chain(ca, [], ca, dt.datetime.now(dt.UTC))  # self-signed root
    for owner in REFERENCE:
        key = folder / "owners" / f"{owner}.key"
        assert mode(key) == 0o600
        private = attestation.load_private_key_pem(key.read_bytes())
        pub = (folder / "owners" / f"{owner}.pub").read_bytes()
        assert pub.startswith(b"-----BEGIN PUBLIC KEY-----")
        assert (
            private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            == pub
        )
        assert owner in out
    assert "PRIVATE KEY" not in out + err
    # Owner keys are distinct per domain.
    pubs = {(folder / "owners" / f"{o}.pub").read_bytes() for o in REFERENCE}
    assert len(pubs) == len(REFERENCE)


def test_factory_init_refuses_a_second_init(capsys, tmp_path):
    folder = tmp_path / "factory"
    assert cli(capsys, "factory", "init", "--factory", folder)[0] == 0
    before = (folder / "ca.key").read_bytes(), (folder / "owners" / "oem.key").read_bytes()
    code, out, err = cli(capsys, "factory", "init", "--factory", folder)
    assert_one_line_error(code, out, err, str(folder), "already")
    after = (folder / "ca.key").read_bytes(), (folder / "owners" / "oem.key").read_bytes()
    assert after == before


def test_factory_init_as_a_process(tmp_path):
    folder = tmp_path / "factory"
    argv = [sys.executable, "-m", "tre", "factory", "init", "--factory", str(folder)]
    first = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert first.returncode == 0, first.stderr
    assert mode(folder / "ca.key") == 0o600
    assert {p.name for p in (folder / "owners").iterdir()} == {
        f"{o}{s}" for o in REFERENCE for s in (".key", ".pub")
    }
    ca_key = attestation.load_private_key_pem((folder / "ca.key").read_bytes())
    assert ca_key.private_bytes_raw().hex() not in first.stdout + first.stderr
    second = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert second.returncode == 2
    assert second.stdout == ""
    assert len(second.stderr.strip().splitlines()) == 1
    assert "Traceback" not in second.stderr


# --- tre provision -----------------------------------------------------------------------------


def test_provision_with_imei(capsys, tmp_path, factory):
    state = tmp_path / "dev"
    code, out, err = cli(
        capsys, "provision", "--state", state, "--factory", factory, "--imei", IMEI, "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    uds = (state / "uds.bin").read_bytes()
    assert len(uds) == attestation.UDS_SIZE == 32
    assert mode(state / "uds.bin") == 0o600
    assert uds != bytes(32)

    cert = load_device_cert(state)
    ca = attestation.load_cert_pem((factory / "ca.pem").read_bytes())
    attestation.verify_chain(cert, [], ca, dt.datetime.now(dt.UTC))
    # The certificate certifies the key derived from this device's secret.
    device_key = attestation.device_id_key(attestation.Secret(uds))
    assert cert.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) == (
        device_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    ueid = attestation.device_ueid(cert)
    assert ueid == attestation.ueid_from_imei(IMEI)
    assert ueid[0] == attestation.UEID_TYPE_IMEI == 0x03
    uris = san_uris(cert)
    assert attestation.ueid_urn(ueid) in uris
    assert attestation.imei_urn(IMEI) in uris
    assert result["ueid"] == ueid.hex()
    assert result["imei"] == IMEI
    assert sorted(result["domains"]) == REFERENCE
    # The state carries the trust anchor it was issued under.
    assert (state / "ca.pem").read_bytes() == (factory / "ca.pem").read_bytes()

    status = status_json(capsys, state)
    assert status["ueid"] == ueid.hex()
    assert status["imei"] == IMEI
    assert status["lifecycle"] == "secured"
    assert status["boot_count"] == 0
    assert status["device_secret_present"] is True


def test_provision_without_imei_gives_a_random_ueid(capsys, tmp_path, factory):
    ueids = []
    for name in ("a", "b"):
        state = tmp_path / name
        code, out, err = cli(capsys, "provision", "--state", state, "--factory", factory)
        assert code == 0, err
        assert "secured" in out
        cert = load_device_cert(state)
        ueid = attestation.device_ueid(cert)
        assert ueid[0] == attestation.UEID_TYPE_RAND == 0x01
        assert len(ueid) == 33
        assert attestation.describe_ueid(ueid)["type"] == "RAND"
        uris = san_uris(cert)
        assert uris == [attestation.ueid_urn(ueid)]  # no IMEI URN without --imei
        assert status_json(capsys, state)["imei"] is None
        ueids.append(ueid)
    assert ueids[0] != ueids[1]
    secrets = {(tmp_path / n / "uds.bin").read_bytes() for n in ("a", "b")}
    assert len(secrets) == 2


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_device_pem_verifies_with_openssl(tmp_path, factory):
    state = tmp_path / "dev"
    provision_device(state, factory, imei=IMEI)
    done = subprocess.run(
        ["openssl", "verify", "-CAfile", str(factory / "ca.pem"), str(state / "device.pem")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith(": OK")
    # ...and not against another manufacturer's CA.
    other = make_factory(tmp_path / "other")
    done = subprocess.run(
        ["openssl", "verify", "-CAfile", str(other / "ca.pem"), str(state / "device.pem")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0


@pytest.mark.parametrize(
    "imei",
    [
        "352099001761482",  # wrong Luhn digit
        "35209900176148",  # 14 digits
        "35209900176148a",  # a letter
        "3520990017614810",  # 16 digits (an IMEISV)
        "35209900-176148-1",  # dashes
    ],
)
def test_bad_imei_leaves_nothing_behind(capsys, tmp_path, factory, imei):
    state = tmp_path / "dev"
    code, out, err = cli(
        capsys, "provision", "--state", state, "--factory", factory, "--imei", imei
    )
    assert_one_line_error(code, out, err, "IMEI")
    assert not state.exists()
    # An existing, empty state folder stays empty.
    state.mkdir()
    code, out, err = cli(
        capsys, "provision", "--state", state, "--factory", factory, "--imei", imei
    )
    assert_one_line_error(code, out, err, "IMEI")
    assert list(state.iterdir()) == []


def test_provisioning_twice_is_refused(capsys, tmp_path, factory):
    state = tmp_path / "dev"
    assert cli(capsys, "provision", "--state", state, "--factory", factory)[0] == 0
    files = {
        p.name: p.read_bytes()
        for p in state.iterdir()
        if p.is_file() and not p.name.startswith("tre.db")
    }
    status = status_json(capsys, state)
    for extra in ([], ["--imei", IMEI]):
        code, out, err = cli(capsys, "provision", "--state", state, "--factory", factory, *extra)
        assert_one_line_error(code, out, err, "already provisioned")
    after = {
        p.name: p.read_bytes()
        for p in state.iterdir()
        if p.is_file() and not p.name.startswith("tre.db")
    }
    assert after == files
    assert status_json(capsys, state) == status


def test_missing_factory_is_a_clear_error(capsys, tmp_path):
    state = tmp_path / "dev"
    missing = tmp_path / "no-factory"
    code, out, err = cli(capsys, "provision", "--state", state, "--factory", missing)
    assert_one_line_error(code, out, err, str(missing), "factory init")
    assert not state.exists()


def test_provision_with_the_example_config_installs_hello(capsys, tmp_path, factory):
    state = tmp_path / "dev"
    code, out, err = cli(
        capsys, "provision", "--state", state, "--factory", factory, "--config", EXAMPLE
    )
    assert code == 0, err
    assert "hello" in out
    domains = {d["id"]: d for d in status_json(capsys, state)["domains"]}
    assert sorted(domains) == sorted([*REFERENCE, "hello"])
    hello = domains["hello"]
    assert hello["owner"] == "Example Stakeholder"
    assert hello["owner_key"] is None  # the factory has no owner key for hello
    assert hello["source"] == f"path:{(EXAMPLE.parent / 'plugins' / 'hello').resolve()}"
    # The stored config has absolute paths: the device boots from any working directory.
    stored = tre.load_config(state / "config.toml")
    assert all(p.is_absolute() for p in stored.paths)


def test_a_failure_mid_provisioning_leaves_no_half_state(capsys, tmp_path, factory):
    # A settings value TOML can read but the stored config cannot be written with: the
    # config is checked before anything is written, so nothing is made at all.
    bad = write_config(
        tmp_path / "cfg",
        enable=("oem",),
        holder=False,
        extra="[settings.oem]\nwhen = 1979-05-27T07:32:00Z\n",
    )
    state = tmp_path / "dev"
    code, out, err = cli(
        capsys, "provision", "--state", state, "--factory", factory, "--config", bad
    )
    assert_one_line_error(code, out, err, "settings.oem.when")
    assert not state.exists() or list(state.iterdir()) == []
    # A failed provisioning can simply be retried.
    good = write_config(tmp_path / "cfg2", enable=("oem",), holder=False)
    code, out, err = cli(
        capsys, "provision", "--state", state, "--factory", factory, "--config", good
    )
    assert code == 0, err
    assert [d["id"] for d in status_json(capsys, state)["domains"]] == ["oem"]


def test_a_failed_provisioning_keeps_files_it_did_not_create(capsys, tmp_path, factory):
    state = tmp_path / "dev"
    state.mkdir()
    own = state / "config.toml"
    own.write_text('[domains]\nenable = ["oem"]\n[settings.oem]\nwhen = 1979-05-27T07:32:00Z\n')
    code, _, _ = cli(capsys, "provision", "--state", state, "--factory", factory, "--config", own)
    assert code == 2
    assert own.exists()


@pytest.mark.parametrize("case", ["state-is-a-file", "factory-is-a-file", "leftover-counter"])
def test_unusable_paths_are_clear_errors(capsys, tmp_path, factory, case):
    target = tmp_path / "x"
    if case == "factory-is-a-file":
        target.write_text("not a folder")
        argv: list[str | Path] = ["factory", "init", "--factory", target]
    elif case == "state-is-a-file":
        target.write_text("not a folder")
        argv = ["provision", "--state", target, "--factory", factory]
    else:
        target.mkdir()
        (target / "counter.bin").write_bytes(b"left over")
        argv = ["provision", "--state", target, "--factory", factory]
    code, out, err = cli(capsys, *argv)
    assert_one_line_error(code, out, err)


# --- tre status ---------------------------------------------------------------------------------


def test_status_text_and_json(capsys, tmp_path, factory):
    state = tmp_path / "dev"
    config = write_config(tmp_path / "cfg")
    provision_device(state, factory, imei=IMEI, config=config)
    code, out, err = cli(capsys, "status", "--state", state)
    assert code == 0, err
    ueid = attestation.ueid_from_imei(IMEI).hex()
    assert f"UEID:       {ueid} (IMEI {IMEI})" in out
    assert "lifecycle:  secured" in out
    assert "boot count: 0" in out
    for domain in ("oem", "mno", "holder"):
        assert re.search(rf"^  {domain} +installed ", out, re.MULTILINE), out

    status = status_json(capsys, state)
    assert status["state_dir"] == str(state)
    domains = {d["id"]: d for d in status["domains"]}
    assert sorted(domains) == ["holder", "mno", "oem"]
    for d in domains.values():
        assert HEX64.fullmatch(d["measurement"])
        assert isinstance(d["svn"], int)
        assert d["state"] == "installed"
        assert d["keys"] == 0
    assert domains["oem"]["svn"] == 1
    owner_pub = (factory / "owners" / "oem.pub").read_bytes()
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    raw = load_pem_public_key(owner_pub).public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert domains["oem"]["owner_key"] == raw.hex()
    assert HEX64.fullmatch(domains["mno"]["owner_key"])
    assert domains["holder"]["owner_key"] is None
    assert len({d["measurement"] for d in domains.values()}) == 3


@pytest.mark.parametrize("what", ["missing", "empty-folder", "a-file"])
def test_status_of_a_non_state_folder(capsys, tmp_path, what):
    target = tmp_path / "x"
    if what == "empty-folder":
        target.mkdir()
    elif what == "a-file":
        target.write_text("hello")
    code, out, err = cli(capsys, "status", "--state", target)
    assert_one_line_error(code, out, err, "not a provisioned TRE state")


# --- tre run --state ----------------------------------------------------------------------------


def test_run_counts_boots_and_activates_domains(capsys, tmp_path, factory):
    state = tmp_path / "dev"
    provision_device(state, factory)
    code, out, err = cli(capsys, "run", "--state", state, "--duration", "0.3", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["device"]["boot_count"] == 1
    assert summary["device"]["lifecycle"] == "secured"
    assert summary["device"]["state_dir"] == str(state)
    assert {d["id"]: d["state"] for d in summary["domains"]} == dict.fromkeys(REFERENCE, "running")
    assert "boot 1" in err
    status = status_json(capsys, state)
    assert status["boot_count"] == 1
    assert {d["state"] for d in status["domains"]} == {"active"}

    code, out, err = cli(capsys, "run", "--state", state, "--duration", "0.3")
    assert code == 0, err
    assert "boot 2" in err
    assert status_json(capsys, state)["boot_count"] == 2


def test_run_with_state_and_config_is_refused(capsys, tmp_path, factory):
    state = tmp_path / "dev"
    provision_device(state, factory)
    code, out, err = cli(capsys, "run", "--state", state, "--config", EXAMPLE, "--duration", "0")
    assert_one_line_error(code, out, err, "--state", "--config")
    assert status_json(capsys, state)["boot_count"] == 0


def test_run_of_a_non_state_folder(capsys, tmp_path):
    code, out, err = cli(capsys, "run", "--state", tmp_path, "--duration", "0")
    assert_one_line_error(code, out, err, "not a provisioned TRE state")


# --- tre terminate ------------------------------------------------------------------------------


def check_terminated(capsys: pytest.CaptureFixture[str], state: Path) -> dict[str, Any]:
    assert not (state / "uds.bin").exists()
    status = status_json(capsys, state)
    assert status["lifecycle"] == "terminated"
    assert status["device_secret_present"] is False
    assert db_rows(state, "SELECT count(*) FROM keys") == [(0,)]
    code, out, err = cli(capsys, "run", "--state", state, "--duration", "0")
    assert_one_line_error(code, out, err, "terminated")
    return status


def booted_with_a_key(capsys: pytest.CaptureFixture[str], state: Path) -> None:
    """Boot once so that oem creates its timestamp key (a row in the keys table)."""
    assert cli(capsys, "run", "--state", state, "--duration", "0")[0] == 0
    assert db_rows(state, "SELECT domain, label FROM keys ORDER BY domain, label") == [
        ("mno", "mid-hpke"),
        ("oem", "timestamp"),
    ]


def test_terminate_with_yes(capsys, tmp_path, factory):
    state = tmp_path / "dev"
    provision_device(state, factory, imei=IMEI)
    booted_with_a_key(capsys, state)
    code, out, err = cli(capsys, "terminate", "--state", state, "--yes")
    assert code == 0, err
    assert "terminated" in out
    status = check_terminated(capsys, state)
    assert status["boot_count"] == 1
    # Terminating again is a clear error, not a traceback.
    code, out, err = cli(capsys, "terminate", "--state", state, "--yes")
    assert_one_line_error(code, out, err, "terminated")
    # So is every other command that needs the secret.
    code, out, err = cli(capsys, "tamper", "--state", state, "--all")
    assert_one_line_error(code, out, err, "terminated")


def test_terminate_without_yes_when_stdin_is_not_a_tty(capsys, monkeypatch, tmp_path, factory):
    state = tmp_path / "dev"
    provision_device(state, factory)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, out, err = cli(capsys, "terminate", "--state", state)
    assert code == 0, err
    assert "terminated" in out
    check_terminated(capsys, state)


def test_terminate_as_a_process_with_stdin_not_a_tty(tmp_path, factory):
    state = tmp_path / "dev"
    provision_device(state, factory)
    done = subprocess.run(
        [sys.executable, "-m", "tre", "terminate", "--state", str(state)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert not (state / "uds.bin").exists()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer", ["no", "y", ""])
def test_terminate_on_a_tty_needs_yes_typed(capsys, monkeypatch, tmp_path, factory, answer):
    state = tmp_path / "dev"
    provision_device(state, factory)
    monkeypatch.setattr(sys, "stdin", _Tty(answer + "\n"))
    code, out, err = cli(capsys, "terminate", "--state", state)
    assert code == 1
    assert "not terminated" in err
    assert (state / "uds.bin").exists()
    assert status_json(capsys, state)["lifecycle"] == "secured"
    monkeypatch.setattr(sys, "stdin", _Tty("yes\n"))
    code, out, err = cli(capsys, "terminate", "--state", state)
    assert code == 0, err
    assert "This cannot be undone" in out  # the prompt
    check_terminated(capsys, state)


async def test_open_tre_on_a_terminated_state_raises(capsys, tmp_path, factory):
    state = tmp_path / "dev"
    provision_device(state, factory)
    assert (await acli(capsys, "terminate", "--state", state, "--yes"))[0] == 0
    with pytest.raises(tre.Terminated):
        async with tre.open_tre(state=state):
            pytest.fail("a terminated device booted")


async def test_an_interrupted_terminate_can_be_finished(capsys, tmp_path, factory):
    from tre._device import Device

    state = tmp_path / "dev"
    provision_device(state, factory)
    await trio.to_thread.run_sync(booted_with_a_key, capsys, state)
    # The first step of terminate() commits, then the power goes.
    device = await Device.open(state)
    await device.set_tre_state(tre.TREState.TERMINATED, "terminated by the operator")
    await device.close()
    assert (state / "uds.bin").exists()
    await acli(capsys, "terminate", "--state", state, "--yes")
    assert not (state / "uds.bin").exists()
    assert db_rows(state, "SELECT count(*) FROM keys") == [(0,)]


# --- broken state folders: clear errors, not tracebacks -------------------------------------------


def _truncate_db(state: Path) -> None:
    data = (state / "tre.db").read_bytes()
    (state / "tre.db").write_bytes(data[: len(data) // 3])


def _foreign_db(state: Path) -> None:
    (state / "tre.db").write_bytes(b"this is not a database " * 200)


def _foreign_sqlite(state: Path) -> None:
    import sqlite3

    (state / "tre.db").unlink()
    conn = sqlite3.connect(state / "tre.db")
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()


def _missing_pem(state: Path) -> None:
    (state / "device.pem").unlink()


def _counter_mac(state: Path) -> None:
    data = bytearray((state / "counter.bin").read_bytes())
    data[-1] ^= 0x01
    (state / "counter.bin").write_bytes(bytes(data))


def _counter_value(state: Path) -> None:
    data = bytearray((state / "counter.bin").read_bytes())
    data[15] ^= 0x01  # the low byte of the value: the MAC no longer matches
    (state / "counter.bin").write_bytes(bytes(data))


def _counter_missing(state: Path) -> None:
    (state / "counter.bin").unlink()


def _short_secret(state: Path) -> None:
    path = state / "uds.bin"
    data = path.read_bytes()
    path.chmod(0o600)
    path.write_bytes(data[:16])


# (breakage, what `tre run` says, whether `tre status` still works: it reads tre.db only,
# without the secret, so it can describe a device whose other files are damaged)
BROKEN = [
    (_truncate_db, "tre.db", False),
    (_foreign_db, "tre.db", False),
    (_foreign_sqlite, "not a TRE database", False),
    (_missing_pem, "device.pem", True),
    (_counter_mac, "counter", True),
    (_counter_value, "counter", True),
    (_counter_missing, "counter", True),
    (_short_secret, "uds.bin", True),
]


@pytest.mark.parametrize(("breakage", "run_says", "status_works"), BROKEN)
def test_broken_state_gives_one_line(capsys, tmp_path, factory, breakage, run_says, status_works):
    state = tmp_path / "dev"
    provision_device(state, factory)
    breakage(state)
    code, out, err = cli(capsys, "run", "--state", state, "--duration", "0")
    assert_one_line_error(code, out, err, run_says)
    code, out, err = cli(capsys, "status", "--state", state)
    if status_works:
        assert code == 0, err
        assert "lifecycle:  secured" in out
    else:
        assert_one_line_error(code, out, err, "tre.db")
    code, out, err = cli(capsys, "tamper", "--state", state, "--all")
    assert_one_line_error(code, out, err)


@pytest.mark.parametrize("breakage", [b[0] for b in BROKEN])
def test_terminate_erases_the_secret_of_a_damaged_state(capsys, tmp_path, factory, breakage):
    state = tmp_path / "dev"
    provision_device(state, factory)
    breakage(state)
    code, _, err = cli(capsys, "terminate", "--state", state, "--yes")
    assert "Traceback" not in err
    assert code in (0, 2)
    assert not (state / "uds.bin").exists()


def test_a_restored_older_database_is_refused(capsys, tmp_path, factory):
    state = tmp_path / "dev"
    provision_device(state, factory)
    old = (state / "tre.db").read_bytes()
    assert cli(capsys, "run", "--state", state, "--duration", "0")[0] == 0
    for suffix in ("-wal", "-shm"):
        (state / f"tre.db{suffix}").unlink(missing_ok=True)
    (state / "tre.db").write_bytes(old)
    code, out, err = cli(capsys, "run", "--state", state, "--duration", "0")
    assert_one_line_error(code, out, err, "older copy")
    # status reads tre.db without the counter: it shows the restored copy as it is.
    assert status_json(capsys, state)["boot_count"] == 0


def test_terminated_device_state_needs_no_secret_to_inspect(capsys, tmp_path, factory):
    """After terminate only the public parts remain: the certificate still verifies, the
    status still names the UEID."""
    state = tmp_path / "dev"
    provision_device(state, factory, imei=IMEI)
    assert cli(capsys, "terminate", "--state", state, "--yes")[0] == 0
    assert sorted(os.listdir(state)) == [
        "ca.pem",
        "config.toml",
        "counter.bin",
        "device.pem",
        "integrity",
        "run.lock",  # (the state's lock file: empty, never a secret)
        "tre.db",
    ]
    cert = load_device_cert(state)
    attestation.verify_chain(
        cert,
        [],
        attestation.load_cert_pem((factory / "ca.pem").read_bytes()),
        dt.datetime.now(dt.UTC),
    )
    assert status_json(capsys, state)["ueid"] == attestation.ueid_from_imei(IMEI).hex()
