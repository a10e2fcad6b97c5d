"""``tre run --socket`` and ``tre call`` as two processes, as from two terminals, with the
admin created by ``tre provision --admin``."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.device_helpers import cli

TRE = [sys.executable, "-m", "tre"]


def test_run_socket_and_call_from_two_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    factory, state = tmp_path / "factory", tmp_path / "state"
    monkeypatch.setenv("TRE_PASSWORD", "admin-pw")
    assert cli(capsys, "factory", "init", "--factory", factory)[0] == 0
    code, _, err = cli(
        capsys, "provision", "--state", state, "--factory", factory, "--admin", "root"
    )
    assert code == 0, err
    sock = Path(f"/tmp/tre-cli-{os.getpid()}.sock")
    server = subprocess.Popen(
        [*TRE, "run", "--state", str(state), "--socket", str(sock), "--socket-mode", "660"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        env = dict(os.environ, TRE_PASSWORD="admin-pw")
        done = subprocess.run(
            [*TRE, "call", "--socket", str(sock), "--user", "root", "oem", "info"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["platform"]
        env["TRE_PASSWORD"] = "wrong"
        refused = subprocess.run(
            [*TRE, "call", "--socket", str(sock), "--user", "root", "oem", "info"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert refused.returncode == 3 and "AUTH_FAILED" in refused.stderr
        assert "wrong" not in refused.stderr + refused.stdout
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:  # pragma: no cover
                server.kill()
                server.wait()
            assert server.stderr is not None
            server.stderr.close()
    assert server.returncode == 130
    assert not sock.exists()  # the server removed its socket file


def test_socket_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "run", "--socket", tmp_path / "s.sock")
    assert code == 2 and "--socket needs --state" in err
    for mode in ("9", "644x", "400", "1777"):
        args = ("run", "--state", tmp_path, "--socket", tmp_path / "s.sock", "--socket-mode", mode)
        code, _, err = cli(capsys, *args)
        assert code == 2 and "--socket-mode" in err, mode
