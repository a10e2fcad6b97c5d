"""A provisioned device at run time: its identity through ``open_tre(state=...)``, keys and
measurements across reboots, tamper response (offline, online from another process, and
in-process), and the device secret never showing up anywhere.

These tests open TREs on real state folders, whose SQLite I/O runs in worker threads:
they use the real clock (no autojump_clock), each bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import attestation
import tre
from tests.device_helpers import (
    EXAMPLE,
    HOLDER,
    IMEI,
    ROOT,
    acli,
    assert_one_line_error,
    cli,
    db_rows,
    make_factory,
    provision_device,
    secret_forms,
    write_config,
)
from tre._cli import main
from tre._device import Device
from tre.testing import spec

#: Bound on each test's own waiting (generous: the real clock, worker threads).
LIMIT = 10


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_factory(tmp_path_factory.mktemp("factory") / "factory")


@pytest.fixture(autouse=True)
def _holder() -> Iterator[None]:
    HOLDER.reset()
    yield
    HOLDER.reset()


@pytest.fixture
def state(tmp_path: Path, factory: Path) -> Path:
    """A device provisioned with oem, mno and the test domain holder."""
    folder = tmp_path / "dev"
    provision_device(folder, factory, imei=IMEI, config=write_config(tmp_path / "cfg"))
    return folder


def status(state: Path) -> dict[str, Any]:
    from tre._status import read_status

    return read_status(state)


def domain_states(state: Path) -> dict[str, str]:
    return {d["id"]: d["state"] for d in status(state)["domains"]}


# --- identity through open_tre ------------------------------------------------------------------


async def test_open_tre_on_a_state_gives_the_device(state):
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state) as t:
            d = t.device
            assert d.ueid == attestation.ueid_from_imei(IMEI).hex()
            assert d.imei == IMEI
            assert d.lifecycle == "secured"
            assert d.boot_count == 1
            assert d.state_dir == str(state)
            assert await t.call("holder", "ping") == "pong"
        assert domain_states(state) == dict.fromkeys(("holder", "mno", "oem"), "active")
        async with tre.open_tre(state=state) as t:
            assert t.device.boot_count == 2
        assert status(state)["boot_count"] == 2


async def test_a_device_provisioned_with_the_example_config_runs_hello(tmp_path, factory):
    state = tmp_path / "dev"
    provision_device(state, factory, config=EXAMPLE)
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state) as t:
            assert t.config.name == "m2m-gateway-example"
            reply = await t.call("hello", "greet", "device")
            assert reply["greeting"] == "hello device, from hello"
            assert t.domain("hello").state == "running"
    assert domain_states(state)["hello"] == "active"


async def test_open_tre_without_state_is_an_ephemeral_device():
    async with tre.open_tre() as t:
        assert t.device.state_dir is None
        assert t.device.lifecycle == "secured"
        assert t.device.boot_count == 1
        assert attestation.describe_ueid(bytes.fromhex(t.device.ueid))["type"] == "RAND"


async def test_open_tre_refuses_state_and_config(state):
    with pytest.raises(tre.ConfigError):
        async with tre.open_tre(tre.default_config(), state=state):
            pytest.fail("booted")
    assert status(state)["boot_count"] == 0


async def test_status_measurements_are_what_the_domains_run_with(state):
    installed = {d["id"]: d["measurement"] for d in status(state)["domains"]}
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state) as t:
            for domain_id, measurement in installed.items():
                assert t.measurement(domain_id).hex() == measurement


# --- keys and measurements survive reboots --------------------------------------------------------


async def test_keys_and_measurements_persist_across_reboots(state):
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state) as t:
            oem_key = (await t.call("oem", "info"))["timestamp_key"]
            holder_key = await t.call("holder", "key", "mine")
            sealed = await t.call("holder", "seal", b"kept across reboots")
            measurements = {d: t.measurement(d) for d in ("oem", "mno", "holder")}
        assert len(oem_key) == len(holder_key) == 32
        rows = db_rows(state, "SELECT domain, label FROM keys ORDER BY domain")
        assert rows == [("holder", "mine"), ("mno", "mid-hpke"), ("oem", "timestamp")]
        for _ in range(2):
            async with tre.open_tre(state=state) as t:
                assert (await t.call("oem", "info"))["timestamp_key"] == oem_key
                assert await t.call("holder", "key", "mine") == holder_key
                assert await t.call("holder", "unseal", sealed) == b"kept across reboots"
                assert {d: t.measurement(d) for d in measurements} == measurements
        # No key was created twice.
        assert db_rows(state, "SELECT count(*) FROM keys") == [(3,)]


async def test_two_devices_from_one_factory_have_different_keys(tmp_path, factory):
    keys = []
    for name in ("a", "b"):
        folder = tmp_path / name
        provision_device(folder, factory, config=write_config(tmp_path / f"cfg-{name}"))
        with trio.fail_after(LIMIT):
            async with tre.open_tre(state=folder) as t:
                keys.append((await t.call("oem", "info"))["timestamp_key"])
                sealed = await t.call("holder", "seal", b"x")
        keys.append(sealed)
    assert keys[0] != keys[2]
    # Data sealed on device b does not open on device a (same code, different secret).
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=tmp_path / "a") as t:
            with pytest.raises(tre.RemoteError) as info:
                await t.call("holder", "unseal", keys[3])
    assert info.value.remote_code == "UNSEAL"


# --- tamper: offline, from the CLI ----------------------------------------------------------------


async def test_tamper_one_domain_offline(capsys, state):
    code, out, err = await acli(capsys, "tamper", "--state", state, "--domain", "holder")
    assert code == 0, err
    assert "holder" in out
    assert domain_states(state) == {"holder": "locked", "mno": "installed", "oem": "installed"}
    assert status(state)["lifecycle"] == "secured"
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state) as t:
            assert t.domain("holder").state == "locked"
            for method, body in [("ping", None), ("key", "k"), ("hold", None)]:
                with pytest.raises(tre.Locked):
                    await t.call("holder", method, body)
            assert await t.call("mno", "status")
            assert (await t.call("oem", "info"))["timestamp_key"]
            # A locked domain never runs: its keystore was never handed out.
            assert "holder" not in HOLDER.keystores
    # Locked stays locked; the others moved on to active.
    assert domain_states(state) == {"holder": "locked", "mno": "active", "oem": "active"}


async def test_tamper_all_offline(capsys, state):
    code, out, err = await acli(capsys, "tamper", "--state", state, "--all")
    assert code == 0, err
    assert "the whole TRE" in out
    st = status(state)
    assert st["lifecycle"] == "locked"
    assert set(domain_states(state).values()) == {"locked"}
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state) as t:
            assert t.device.lifecycle == "locked"
            for domain, method in [("holder", "ping"), ("oem", "info"), ("mno", "status")]:
                with pytest.raises(tre.Locked):
                    await t.call(domain, method)
            assert {d.state for d in t.domains()} == {"locked"}
    # A locked TRE still boots (and counts the boot), but nothing in it runs.
    assert status(state)["boot_count"] == 1


async def test_tamper_usage_errors(capsys, state):
    code, out, err = await acli(capsys, "tamper", "--state", state, "--domain", "nope")
    assert_one_line_error(code, out, err, "nope")
    code, out, err = await acli(capsys, "tamper", "--state", state, "--domain", "oem", "--all")
    assert_one_line_error(code, out, err, "--all", "--domain")
    code, out, err = await acli(capsys, "tamper", "--state", state)
    assert_one_line_error(code, out, err)
    assert status(state)["lifecycle"] == "secured"
    assert set(domain_states(state).values()) == {"installed"}


# --- tamper: online ---------------------------------------------------------------------------


async def _locks_inflight_then(t: tre.TRE, lock: Any) -> float:
    """Start a blocking call to holder, run ``lock()``, and return how long after ``lock()``
    returned the in-flight call got Locked."""
    result: dict[str, float] = {}

    async def inflight() -> None:
        with pytest.raises(tre.Locked):
            await t.call("holder", "hold", timeout=LIMIT * 2)
        result["locked"] = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(inflight)
        await HOLDER.entered.wait()
        await lock()
        done = trio.current_time()
    return result["locked"] - done


async def test_cli_tamper_locks_a_running_domain(capsys, state):
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state, lifecycle_poll=0.05) as t:
            keystore = HOLDER.keystores["holder"]
            assert await t.call("holder", "key", "k")

            async def lock() -> None:
                code, _, err = await acli(capsys, "tamper", "--state", state, "--domain", "holder")
                assert code == 0, err

            assert await _locks_inflight_then(t, lock) < 1.0
            assert t.domain("holder").state == "locked"
            with pytest.raises(tre.Locked):
                await t.call("holder", "ping")
            with pytest.raises(tre.KeystoreLocked):
                keystore.sign("k", b"data")
            with pytest.raises(tre.KeystoreLocked):
                keystore.list()
            # The others keep working.
            assert await t.call("mno", "status")
            assert await t.call("oem", "time")
    assert domain_states(state)["holder"] == "locked"


async def test_tamper_from_another_process_locks_within_a_second(state):
    with trio.fail_after(LIMIT * 3):
        async with tre.open_tre(state=state, lifecycle_poll=0.05) as t:
            assert await t.call("oem", "time")
            done = await trio.run_process(
                [sys.executable, "-m", "tre", "tamper", "--state", str(state), "--domain", "oem"],
                capture_stdout=True,
                capture_stderr=True,
                cwd=ROOT,
            )
            assert done.returncode == 0, done.stderr
            returned = trio.current_time()
            with trio.fail_after(1.0):
                await t.wait_for("oem", "locked")
            assert trio.current_time() - returned < 1.0
            with pytest.raises(tre.Locked):
                await t.call("oem", "info")
            assert await t.call("holder", "ping") == "pong"


async def test_cli_tamper_all_locks_a_running_tre(capsys, state):
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state, lifecycle_poll=0.05) as t:

            async def lock() -> None:
                code, _, err = await acli(capsys, "tamper", "--state", state, "--all")
                assert code == 0, err

            assert await _locks_inflight_then(t, lock) < 1.0
            with trio.fail_after(1.0):
                for domain in ("oem", "mno", "holder"):
                    await t.wait_for(domain, "locked")
            for domain, method in [("holder", "ping"), ("oem", "info"), ("mno", "status")]:
                with pytest.raises(tre.Locked):
                    await t.call(domain, method)
    assert status(state)["lifecycle"] == "locked"


async def test_running_tre_reports_a_lock_made_by_another_process(capsys, state):
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state, lifecycle_poll=0.05) as t:
            code, _, err = await acli(capsys, "tamper", "--state", state, "--all")
            assert code == 0, err
            with trio.fail_after(1.0):
                await t.wait_for("oem", "locked")
            assert t.device.lifecycle == "locked"


async def test_in_process_tamper_locks_at_once(state):
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state) as t:
            keystore = HOLDER.keystores["holder"]
            public = await t.call("holder", "key", "k")
            assert public == keystore.public_key("k")

            async def lock() -> None:
                assert await t.tamper("holder", "probe opened the case") == ["holder"]
                # No checkpoint needed: the domain is locked when tamper() returns.
                assert t.domain("holder").state == "locked"
                with pytest.raises(tre.KeystoreLocked):
                    keystore.sign("k", b"data")

            assert await _locks_inflight_then(t, lock) < 1.0
            for op in (
                lambda: keystore.public_key("k"),
                lambda: keystore.seal(b"x"),
                lambda: keystore.unseal(b"x"),
                keystore.list,
            ):
                with pytest.raises(tre.KeystoreLocked):
                    op()
            with pytest.raises(tre.KeystoreLocked):
                await keystore.generate("other", tre.KeyKind.AEAD)
            with pytest.raises(tre.Locked):
                await t.call("holder", "key", "k")
            assert t.device.lifecycle == "secured"
            assert await t.call("mno", "status")
            # Unknown domains are refused (typed error), nothing changes.
            with pytest.raises(tre.ProvisioningError):
                await t.tamper("nope")
    assert domain_states(state)["holder"] == "locked"
    # The lock is permanent: the key row is still there, but the domain never runs again.
    assert db_rows(state, "SELECT domain FROM keys WHERE domain = 'holder'") == [("holder",)]
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state) as t:
            with pytest.raises(tre.Locked):
                await t.call("holder", "ping")


async def test_in_process_tamper_of_the_whole_tre(state):
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state) as t:
            locked = await t.tamper()
            assert locked == ["holder", "mno", "oem"]
            assert t.device.lifecycle == "locked"
            assert {d.state for d in t.domains()} == {"locked"}
            for domain, method in [("holder", "ping"), ("oem", "info"), ("mno", "status")]:
                with pytest.raises(tre.Locked):
                    await t.call(domain, method)
            with pytest.raises(tre.KeystoreLocked):
                HOLDER.keystores["holder"].list()
    assert status(state)["lifecycle"] == "locked"


class Extra(tre.Domain):
    @tre.service
    async def ping(self, caller: str, body: Any) -> str:
        return "pong"


async def test_a_domain_added_in_code_to_a_state_boots_or_is_refused(state):
    extra = spec(Extra, id="extra", services={"ping": ["host"]})
    with trio.fail_after(LIMIT):
        try:
            async with tre.open_tre(state=state, domains=[extra]) as t:
                assert t.domain("extra").state == "running"
        except tre.TREError:
            pass  # refusing it (a provisioned device boots what it installed) is fine too


# --- the device secret never shows ---------------------------------------------------------------


def _texts_of(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def _assert_no_secret(secrets: dict[str, bytes], texts: list[str], where: str) -> None:
    for name, secret in secrets.items():
        for form in secret_forms(secret):
            for text in texts:
                assert form not in text, f"the {name} appears in {where}"


async def test_the_device_secret_never_appears(capsys, caplog, tmp_path, factory):
    caplog.set_level(logging.DEBUG)
    state = tmp_path / "dev"
    config = write_config(tmp_path / "cfg")
    outputs: list[str] = []

    async def run(*argv: str | Path) -> tuple[int, str, str]:
        result = await acli(capsys, "--log-level", "debug", *argv)
        outputs.extend(result[1:])
        return result

    assert (await run("factory", "init", "--factory", tmp_path / "f2"))[0] == 0
    assert (
        await run("provision", "--state", tmp_path / "bad", "--factory", factory, "--imei", "1")
    )[0] == 2
    assert (await run("provision", "--state", state, "--factory", factory, "--imei", IMEI,
                      "--config", config, "--json"))[0] == 0  # fmt: skip
    uds = (state / "uds.bin").read_bytes()
    secret = attestation.Secret(uds)
    device_key = attestation.device_id_key(secret).private_bytes_raw()
    secrets = {"device secret": uds, "DeviceID private key": device_key}
    assert (await run("provision", "--state", state, "--factory", factory))[0] == 2
    for argv in (["status"], ["status", "--json"]):
        assert (await run(*argv, "--state", state))[0] == 0
    assert (await run("run", "--state", state, "--duration", "0.05", "--json"))[0] == 0
    assert (await run("run", "--state", state, "--duration", "0.05"))[0] == 0

    texts: list[str] = []
    errors: list[BaseException] = []
    with trio.fail_after(LIMIT):
        device = await Device.open(state)
        try:
            texts += [repr(device), str(device), repr(vars(device))]
            keys = device.domain_keys(spec(Extra, id="holder"))
            texts += [repr(keys), str(keys), repr(device.store), repr(device.cdis)]
        finally:
            await device.close()
        async with tre.open_tre(state=state) as t:
            texts += [repr(t), str(t), repr(t.device), repr(t.domains()), repr(t.events)]
            await t.call("holder", "key", "k")
            keystore = HOLDER.keystores["holder"]
            texts += [repr(keystore), str(keystore), repr(keystore.list())]
            # A keystore error inside a handler is a fault of the domain: it is logged.
            with pytest.raises(tre.Aborted) as aborted:
                await t.call("holder", "key", "Not A Label")
            errors.append(aborted.value)
            await t.wait_for("holder", "running", generation=2)
            keystore = HOLDER.keystores["holder"]
            await t.tamper("holder")
            for attempt in (t.call("holder", "ping"), keystore.generate("x", "aead")):
                try:
                    await attempt
                except tre.TREError as exc:
                    errors.append(exc)
            try:
                await t.tamper("nope")
            except tre.TREError as exc:
                errors.append(exc)
    try:
        keystore.sign("k", b"x")
    except tre.TREError as exc:
        errors.append(exc)

    assert (await run("tamper", "--state", state, "--domain", "mno"))[0] == 0
    assert (await run("tamper", "--state", state, "--all"))[0] == 0
    assert (await run("tamper", "--state", state, "--domain", "nope"))[0] == 2
    assert (await run("terminate", "--state", state, "--yes"))[0] == 0
    for argv in (["status"], ["status", "--json"]):
        assert (await run(*argv, "--state", state))[0] == 0
    assert (await run("run", "--state", state, "--duration", "0"))[0] == 2
    assert (await run("terminate", "--state", state, "--yes"))[0] == 2
    try:
        async with tre.open_tre(state=state):
            pass
    except tre.Terminated as exc:
        errors.append(exc)

    # A broken counter on a second device: the error path of an open with a live secret.
    other = tmp_path / "other"
    provision_device(other, factory)
    other_uds = (other / "uds.bin").read_bytes()
    secrets["second device secret"] = other_uds
    (other / "counter.bin").write_bytes(b"\x00" * 48)
    try:
        await Device.open(other)
    except tre.StorageError as exc:
        errors.append(exc)
    assert (await run("run", "--state", other, "--duration", "0"))[0] == 2

    assert {type(e).__name__ for e in errors} >= {
        "Locked",
        "KeystoreLocked",
        "ProvisioningError",
        "Terminated",
        "CounterTampered",
    }
    for error in errors:
        texts += _texts_of(error)
    _assert_no_secret(secrets, outputs, "CLI output")
    _assert_no_secret(secrets, texts, "a repr, str or exception")
    assert any(r.levelno == logging.WARNING for r in caplog.records)  # the fault above
    log_texts = [caplog.text] + [
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    ]
    _assert_no_secret(secrets, log_texts, "the log")
    # The check itself can see a secret: the forms are those of the bytes just read.
    assert secret_forms(uds)[0] == uds.hex()


async def test_run_json_summary_has_no_secret(capsys, state):
    uds = (state / "uds.bin").read_bytes()
    code, out, err = await acli(capsys, "run", "--state", state, "--duration", "0", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["device"]["ueid"] == attestation.ueid_from_imei(IMEI).hex()
    _assert_no_secret({"device secret": uds}, [out, err], "tre run --json")


def test_cli_runs_in_process_outside_trio(capsys, state):
    """The in-process runner used above (``acli``) is the plain CLI: check the plain path
    once too, synchronously."""
    code, out, err = cli(capsys, "status", "--state", state)
    assert code == 0, err
    assert "lifecycle:  secured" in out
    assert main(["status", "--state", str(state), "--json"]) == 0
