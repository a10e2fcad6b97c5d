"""Scaffolding shared by the device tests (tests/tre/test_device.py,
test_provisioning_cli.py, test_lifecycle_tables.py, test_events.py).

- :func:`cli` runs ``tre`` in-process and returns (exit code, stdout, stderr);
- :func:`make_factory` / :func:`provision_device` make a factory and a device directly
  (fast: no CLI parsing), for tests that are not about the CLI;
- :class:`Holder` is a small domain with a handler that blocks (to have a call in flight
  when a tamper response comes), and services that use its keystore. A test installs it
  with :func:`write_holder` + :func:`write_config` (a folder plugin whose ``entry`` is this
  module, so it gets an install record like any provisioned domain). It records its
  ``ctx.keystore`` in :data:`HOLDER` so a test can check what a locked keystore does.

Tests that open a TRE on a real state folder do their SQLite I/O in worker threads: they
must run on the real clock (no ``autojump_clock``), bounded with ``trio.fail_after``.
"""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

import tre
from tre._cli import main
from tre._config import default_config, load_config
from tre._factory import factory_init
from tre._provision import provision

__all__ = [
    "EXAMPLE",
    "HOLDER",
    "IMEI",
    "ROOT",
    "Holder",
    "acli",
    "assert_one_line_error",
    "cli",
    "db_rows",
    "make_factory",
    "provision_device",
    "secret_forms",
    "status_json",
    "write_config",
    "write_holder",
]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tre.toml"
#: A made-up IMEI with a valid Luhn check digit.
IMEI = "352099001761481"


# --- the CLI in-process ---------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """Run ``tre ARGV`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # --help and argparse's own exits
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


async def acli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """:func:`cli` from a trio test: ``tre`` runs its own ``trio.run``, so in a thread."""
    return await trio.to_thread.run_sync(lambda: cli(capsys, *argv))


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    """Exit status 2, nothing on stdout, exactly one ``tre: error:`` line on stderr that
    holds every fragment, and no traceback."""
    assert code == 2, (code, out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tre: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def status_json(capsys: pytest.CaptureFixture[str], state: Path) -> dict[str, Any]:
    import json

    code, out, err = cli(capsys, "status", "--state", state, "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


# --- factories, devices, configs --------------------------------------------------------------


def make_factory(folder: Path) -> Path:
    factory_init(folder)
    return folder


def provision_device(
    state: Path, factory: Path, *, imei: str | None = None, config: Path | None = None
) -> dict[str, Any]:
    cfg = default_config() if config is None else load_config(config)
    return provision(state, factory, imei=imei, config=cfg)


HOLDER_MANIFEST = """\
id = "{id}"
owner = "Test Stakeholder"
version = "1.0.0"
svn = 1
entry = "tests.device_helpers:Holder"
boot_order = 50
default_deadline = 30.0

[services.hold]
allow = ["host"]

[services.ping]
allow = ["host"]

[services.key]
allow = ["host"]

[services.seal]
allow = ["host"]

[services.unseal]
allow = ["host"]
"""

HOLDER_METHODS = ["hold", "key", "ping", "seal", "unseal"]


def write_holder(folder: Path, domain_id: str = "holder") -> Path:
    """A folder plugin for :class:`Holder` (its only file is the manifest)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "domain.toml").write_text(HOLDER_MANIFEST.format(id=domain_id))
    return folder


def write_config(
    folder: Path,
    *,
    enable: tuple[str, ...] = ("oem", "mno"),
    holder: bool = True,
    extra: str = "",
) -> Path:
    """A TRE config in ``folder`` (with the holder plugin beside it when ``holder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "[tre]",
        'name = "device-test"',
        "[domains]",
        "enable = [" + ", ".join(f'"{e}"' for e in enable) + "]",
    ]
    if holder:
        write_holder(folder / "holder")
        lines.append('paths = ["holder"]')
        lines += ["[[host.calls]]", 'domain = "holder"']
        lines.append("methods = [" + ", ".join(f'"{m}"' for m in HOLDER_METHODS) + "]")
    if "oem" in enable:
        lines += ["[[host.calls]]", 'domain = "oem"', 'methods = ["info", "time"]']
    if "mno" in enable:
        lines += ["[[host.calls]]", 'domain = "mno"', 'methods = ["status"]']
    path = folder / "tre.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def db_rows(state: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of a query on the device's tre.db (read-only)."""
    conn = sqlite3.connect(f"file:{state / 'tre.db'}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def secret_forms(secret: bytes) -> list[str]:
    """The text forms in which a secret could leak: hex (both cases), base64 (standard and
    URL-safe, with and without padding), its Python bytes repr and its raw latin-1 text."""
    forms = [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode(),
        base64.b64encode(secret).decode().rstrip("="),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
        repr(secret)[2:-1],
        secret.decode("latin-1"),
    ]
    return forms


# --- a domain for tamper and keystore tests ------------------------------------------------------


class HolderProbe:
    """What :class:`Holder` instances saw (reset by a fixture before each test)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.keystores: dict[str, tre.Keystore] = {}
        self.entered = trio.Event()
        self.held = 0


HOLDER = HolderProbe()


class Holder(tre.Domain):
    """``hold`` blocks until cancelled; ``key`` returns the public half of an Ed25519 key
    it creates on first use; ``seal``/``unseal`` use MEASUREMENT sealing."""

    async def setup(self) -> None:
        HOLDER.keystores[self.ctx.id] = self.ctx.keystore

    @tre.service
    async def hold(self, caller: str, body: Any) -> None:
        HOLDER.held += 1
        HOLDER.entered.set()
        await trio.sleep_forever()

    @tre.service
    async def ping(self, caller: str, body: Any) -> str:
        return "pong"

    @tre.service
    async def key(self, caller: str, body: Any) -> bytes:
        keystore = self.ctx.keystore
        label = str(body)
        if label not in {k.label for k in keystore.list()}:
            await keystore.generate(label, tre.KeyKind.ED25519)
        return keystore.public_key(label)

    @tre.service
    async def seal(self, caller: str, body: Any) -> bytes:
        return self.ctx.keystore.seal(bytes(body), tre.SealPolicy.MEASUREMENT)

    @tre.service
    async def unseal(self, caller: str, body: Any) -> bytes:
        try:
            return self.ctx.keystore.unseal(bytes(body))
        except tre.UnsealError as exc:
            raise tre.ServiceError("UNSEAL", str(exc)) from None
