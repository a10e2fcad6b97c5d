"""Hostile cases of the host interface found in review (tre/_host.py, tre/_hostserver.py,
tre/_cli_call.py): decoy salts stable across restarts, no huge client strings kept in the
kernel's history, the socket bound without touching the process's umask, and `tre call`
refusing bad names and timeouts with a usage error.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import stat
from pathlib import Path

import trio

import ipc
from ipc._hostauth import NONCE_SIZE
from tests.tre.test_host import booted, cheap_scrypt, sock_path, state  # noqa: F401 (fixtures)
from tre._cli import main


async def _decoy_salts(t, names: list[str]) -> dict[str, bytes]:
    salts = {}
    for name in names:
        auth = await t._host_gateway().begin({"user": name, "nonce": os.urandom(NONCE_SIZE)})
        salts[name] = auth.challenge()["salt"]
    return salts


async def test_unknown_user_salt_is_stable_across_a_restart(state: Path) -> None:  # noqa: F811
    """tre/_host.py:105: the decoy key is os.urandom per HostGateway, i.e. per boot. A real
    user's salt survives a restart, a decoy's changes: two hellos (no answer, so no failure
    is ever counted) on either side of a reboot tell existing names from unknown ones."""
    async with booted(state) as t:
        before = await _decoy_salts(t, ["op", "nobody"])
    async with booted(state) as t:
        after = await _decoy_salts(t, ["op", "nobody"])
    assert before["op"] == after["op"]  # a real user: its stored salt
    assert before["nobody"] == after["nobody"], "the decoy salt changed at reboot: enumeration"


async def test_a_host_user_cannot_pin_huge_strings_in_kernel_events(state: Path) -> None:  # noqa: F811
    """tre/_host.py:89-90: a denied host call records f"{domain}.{method}" unbounded. Any
    logged-in user (a reader) can send ~256 KiB of domain/method per frame; the kernel keeps
    1000 events (tre/_kernel.py EVENT_HISTORY), so ~256 MB stays pinned in memory."""
    async with booted(state) as t:
        session = await t.host(user="rd", password="rd-password")
        with contextlib.suppress(ipc.TREError):
            await session.call("x" * 100_000, "y" * 100_000)
        longest = max(len(e.detail) for e in t._kernel.events)
        assert longest < 4096, f"a kernel event holds {longest} characters of client input"


async def test_binding_the_socket_does_not_change_modes_of_other_files(
    state: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """tre/_hostserver.py:269-273: the process-wide umask is set to 0o177 around
    ``await sock.bind``, and trio binds AF_UNIX sockets in a worker thread, so every other
    task (domains, the store's thread) runs with that umask meanwhile: a directory made
    with mode 0o700 in that window is born 0o600 (no search bit: unusable for non-root)."""
    path = sock_path(tmp_path)
    made: list[Path] = []
    async with booted(state) as t:
        started = False

        async def other_task() -> None:
            i = 0
            while not started:
                d = tmp_path / f"dir{i}"
                os.mkdir(d, 0o700)
                made.append(d)
                i += 1
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_task)
            await trio.lowlevel.checkpoint()
            await nursery.start(functools.partial(t.serve_host, path))
            started = True
            nursery.cancel_scope.cancel()
    modes = {oct(stat.S_IMODE(d.stat().st_mode)) for d in made}
    assert modes == {oct(0o700)}, f"directories made while binding got modes {modes}"


def test_tre_call_with_an_invalid_user_name_is_a_usage_error(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """tre/_cli_call.py:66 (via tre/_hostclient.py:86): ipc.ClientAuth raises ValueError for
    a user name outside USER_RE ("Olive"), and for a bad --timeout socket.settimeout does
    too (tre/_hostclient.py:45); cmd_call and main() catch neither, so the CLI dies with a
    traceback instead of 'tre: error: ...' and exit status 2."""
    path = Path(f"/tmp/tre-review-{os.getpid()}.sock")
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    monkeypatch.setenv("TRE_PASSWORD", "pw")
    try:
        for extra in (["--user", "Olive"], ["--user", "olive", "--timeout", "-1"]):
            argv = ["call", "--socket", str(path), *extra, "oem", "time"]
            assert main(argv) == 2, argv
            assert "tre: error:" in capsys.readouterr().err
    finally:
        server.close()
        path.unlink(missing_ok=True)
