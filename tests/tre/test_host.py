"""The host interface: logins, roles and grants, lockout, sessions (tre/_host.py), in
process (``t.host``) and over the Unix socket (tre/_hostserver.py, tre/_hostclient.py,
``tre call``), with hostile clients.

Real state folders: real clock (no autojump), bounded with ``trio.fail_after``. Verifiers
are made with cheap scrypt parameters (n = 2**10) so that a hundred logins stay fast; one
test logs in with the default ones.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import stat
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

import ipc
import tre
from tests.device_helpers import acli, db_rows, make_factory
from tre._cli_user import open_users
from tre._host import SessionExpired
from tre._hostclient import HostClient
from tre._hostserver import ServerLimits
from tre._provision import provision
from tre._users import UserLocked

ADMIN, ADMIN_PW = "root", "root-password"


@pytest.fixture
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ipc.make_verifier
    monkeypatch.setattr(ipc, "make_verifier", functools.partial(real, n=2**10))


@pytest.fixture
def state(tmp_path: Path, cheap_scrypt: None) -> Path:
    path = tmp_path / "state"
    provision(path, make_factory(tmp_path / "factory"), admin=ADMIN, admin_password=ADMIN_PW)
    with open_users(path) as (users, _):
        users.add("op", "operator", "op-password", [("oem", "info"), ("meter", "latest")])
        users.add("rd", "reader", "rd-password", [("oem", "time")])
    return path


@asynccontextmanager
async def booted(state: Path) -> AsyncIterator[tre.TRE]:
    with trio.fail_after(60):
        async with tre.open_tre(state=state, lifecycle_poll=3600) as t:
            yield t


@asynccontextmanager
async def serving(
    t: tre.TRE, path: Path, limits: ServerLimits | None = None
) -> AsyncIterator[Path]:
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(t.serve_host, path, limits=limits))
        yield path
        nursery.cancel_scope.cancel()


def sock_path(tmp_path: Path) -> Path:
    # Unix socket paths are short (108 bytes): pytest's tmp_path can be too long.
    return Path(f"/tmp/tre-test-{os.getpid()}-{abs(hash(tmp_path)) % 10**8}.sock")


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await trio.to_thread.run_sync(fn)


def login_and_call(path: Path, user: str, password: str, *call: Any) -> Any:
    with HostClient(path, timeout=20) as client:
        client.login(user, password)
        return client.call(*call)


# --- in process: t.host ------------------------------------------------------------------------


async def test_roles_and_grants_in_process(state: Path) -> None:
    async with booted(state) as t:
        admin = await t.host(user=ADMIN, password=ADMIN_PW)
        assert (await admin.call("oem", "info"))["platform"]
        assert await admin.call("mno", "status")  # admin: every [host] call
        with pytest.raises(tre.Denied):  # ...but not beyond the [host] grants
            await admin.call("oem", "timestamp", {"digest": bytes(32)})
        op = await t.host(user="op", password="op-password")
        assert await op.call("oem", "info")
        with pytest.raises(tre.Denied):
            await op.call("oem", "time")  # not granted to op
        rd = await t.host(user="rd", password="rd-password")
        assert "monotonic" in await rd.call("oem", "time")
        with pytest.raises(tre.Denied):
            await rd.call("oem", "info")
        denials = [e.detail for e in t.events if e.kind == "denied"]
        assert any("user 'op'" in d and "oem.time" in d for d in denials)
        assert any("user 'root'" in d and "oem.timestamp" in d for d in denials)
        assert repr(op) == "<HostSession op (operator)>"
    # User administration done while the TRE was down reached the audit log at boot.
    kinds = [k for (k,) in db_rows(state, "SELECT kind FROM audit_entries")]
    assert kinds.count("user_added") == 3  # root (at provisioning), op, rd


async def test_wrong_password_unknown_user_and_lockout_survive_a_restart(state: Path) -> None:
    async with booted(state) as t:
        for _ in range(3):
            with pytest.raises(ipc.AuthFailed) as info:
                await t.host(user="op", password="wrong")
            assert type(info.value) is ipc.AuthFailed  # not "locked" yet
        with pytest.raises(UserLocked) as locked:  # backing off now, even with the password
            await t.host(user="op", password="op-password")
        assert locked.value.retry_after is not None and 0 < locked.value.retry_after <= 1
        with pytest.raises(ipc.AuthFailed):
            await t.host(user="nobody", password="whatever")
        assert await t.host(user="rd", password="rd-password")  # others are not affected
    async with booted(state) as t:  # the failures are durable
        with pytest.raises(UserLocked):
            await t.host(user="op", password="op-password")
        await trio.sleep(1.05)
        session = await t.host(user="op", password="op-password")
        assert await session.call("oem", "info")
    with open_users(state) as (users, _):
        user = users.get("op")
        assert user is not None and user.failures == 0  # a success resets the count


async def test_a_session_expires(state: Path) -> None:
    async with booted(state) as t:
        t._gateway.lifetime = 0.2  # type: ignore[union-attr]
        session = await t.host(user="op", password="op-password")
        assert await session.call("oem", "info")
        await trio.sleep(0.25)
        assert session.expired
        with pytest.raises(SessionExpired):
            await session.call("oem", "info")


async def test_a_throwaway_tre_has_no_users() -> None:
    async with tre.open_tre() as t:
        with pytest.raises(tre.ConfigError):
            await t.host(user=ADMIN, password=ADMIN_PW)


async def test_default_scrypt_parameters_log_in(tmp_path: Path) -> None:
    path = tmp_path / "state"
    provision(path, make_factory(tmp_path / "factory"), admin=ADMIN, admin_password=ADMIN_PW)
    async with booted(path) as t:
        started = time.perf_counter()
        session = await t.host(user=ADMIN, password=ADMIN_PW)
        assert time.perf_counter() - started < 10
        assert await session.call("oem", "info")


# --- over the socket ---------------------------------------------------------------------------


async def test_socket_calls_with_grants_and_mode_0600(state: Path, tmp_path: Path) -> None:
    async with booted(state) as t, serving(t, sock_path(tmp_path)) as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        info = await in_thread(lambda: login_and_call(path, ADMIN, ADMIN_PW, "oem", "info"))
        assert info["platform"]

        def op_session() -> tuple[Any, ...]:
            with HostClient(path) as client:
                login = client.login("op", "op-password")
                first = client.call("oem", "info")
                with pytest.raises(tre.Denied):
                    client.call("oem", "time")
                with pytest.raises(tre.Denied):  # nothing is learnt beyond the grants
                    client.call("ghost", "info")
                return login, first, client.call("meter", "latest")  # the session goes on

        login, first, _ = await in_thread(op_session)
        assert login["user"] == "op" and login["role"] == "operator"
        assert first["platform"]
        with pytest.raises(ipc.AuthFailed):
            await in_thread(lambda: login_and_call(path, "op", "wrong", "oem", "info"))
    assert not path.exists()  # removed when the server stops


def _raw(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(path))
    return s


def _send(s: socket.socket, envelope: ipc.Envelope) -> None:
    s.sendall(ipc.frame(envelope))


def _recv(s: socket.socket) -> ipc.Envelope | None:
    decoder = ipc.FrameDecoder()
    while True:
        event = decoder.next_event()
        if event is ipc.CLOSED:
            return None
        if event is not ipc.NEED_DATA:
            assert not isinstance(event, ipc.Request | ipc.Notification)
            return event
        decoder.receive_data(s.recv(65536))


def _closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


async def test_a_replayed_answer_is_refused(state: Path, tmp_path: Path) -> None:
    async with booted(state) as t, serving(t, sock_path(tmp_path)) as path:

        def replay() -> tuple[Any, Any]:
            nonce = os.urandom(24)
            auth = ipc.ClientAuth("op", "op-password", nonce=nonce)
            with _raw(path) as a:
                _send(a, ipc.Request(1, "auth.hello", auth.hello()))
                challenge = _recv(a)
                assert isinstance(challenge, ipc.Response)
                answer = auth.answer(challenge.body)
                _send(a, ipc.Request(2, "auth.answer", answer))
                assert isinstance(_recv(a), ipc.Response)
            # An eavesdropper replays the same hello and answer on a new connection.
            again = ipc.ClientAuth("op", "irrelevant", nonce=nonce)
            with _raw(path) as b:
                _send(b, ipc.Request(1, "auth.hello", again.hello()))
                second = _recv(b)
                _send(b, ipc.Request(2, "auth.answer", answer))
                refused = _recv(b)
                return second, (refused, _closed(b))

        second, (refused, closed) = await in_thread(replay)
        assert isinstance(second, ipc.Response)  # a fresh server nonce
        assert isinstance(refused, ipc.Error) and refused.code == "AUTH_FAILED" and closed


async def test_hostile_clients_get_errors_and_timeouts_and_disturb_nobody(
    state: Path, tmp_path: Path
) -> None:
    limits = ServerLimits(login_timeout=0.5, idle_timeout=0.5, max_frame_bytes=4096)
    async with booted(state) as t, serving(t, sock_path(tmp_path), limits) as path:

        def hostile() -> dict[str, Any]:
            out: dict[str, Any] = {}
            # Half a frame, then silence: closed after the login timeout.
            with _raw(path) as s:
                s.sendall(struct.pack(">I", 100) + b"\x94\x00")
                started = time.monotonic()
                out["half"] = (_recv(s), time.monotonic() - started)
            # A silent client: closed too.
            with _raw(path) as s:
                out["silent"] = _recv(s)
            # Garbage: an ERROR naming the fault, then closed.
            with _raw(path) as s:
                s.sendall(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
                out["garbage"] = (_recv(s), _closed(s))
            # A frame over the limit: refused from its header alone.
            with _raw(path) as s:
                s.sendall(struct.pack(">I", 1 << 30))
                out["oversized"] = (_recv(s), _closed(s))
            # A call before logging in.
            with _raw(path) as s:
                call = {"domain": "oem", "method": "info", "body": None}
                _send(s, ipc.Request(7, "call", call))
                out["unauthenticated"] = (_recv(s), _closed(s))
            # Logged in, then junk calls: an error each, the session survives.
            with HostClient(path) as client:
                client.login("op", "op-password")
                with pytest.raises(tre.RemoteError) as bad:
                    client._request("call", {"domain": 1})
                out["bad_call"] = bad.value.remote_code
                out["after"] = client.call("oem", "info")["platform"]
            return out

        async with trio.open_nursery() as nursery:
            results: dict[str, Any] = {}

            async def attack() -> None:
                results.update(await in_thread(hostile))

            nursery.start_soon(attack)
            # Meanwhile a well-behaved client and the domains carry on.
            for _ in range(5):
                info = await in_thread(
                    lambda: login_and_call(path, "op", "op-password", "oem", "info")
                )
                assert info["platform"]
                assert await t.call("oem", "info")
        assert results["half"][0] is None and results["half"][1] < 5
        assert results["silent"] is None
        garbage, closed = results["garbage"]
        assert isinstance(garbage, ipc.Error) and garbage.code == "INVALID_FRAME" and closed
        oversized, closed = results["oversized"]
        assert isinstance(oversized, ipc.Error) and "too_large" in oversized.message and closed
        unauth, closed = results["unauthenticated"]
        assert isinstance(unauth, ipc.Error) and unauth.code == "AUTH_REQUIRED" and closed
        assert results["bad_call"] == "BAD_REQUEST" and results["after"]
        assert all(d.state == "running" for d in t.domains())


async def test_a_hundred_parallel_clients(state: Path, tmp_path: Path) -> None:
    async with booted(state) as t, serving(t, sock_path(tmp_path)) as path:
        results: list[Any] = []
        limiter = trio.CapacityLimiter(100)

        async def one(i: int) -> None:
            user, pw = ("op", "op-password") if i % 2 else ("rd", "rd-password")
            call = ("oem", "info") if i % 2 else ("oem", "time")
            result = await trio.to_thread.run_sync(
                lambda: login_and_call(path, user, pw, *call), limiter=limiter
            )
            results.append(result)

        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(one, i)
        assert len(results) == 100 and all(results)


async def test_connections_beyond_the_limit_are_told_busy(state: Path, tmp_path: Path) -> None:
    limits = ServerLimits(max_clients=3)
    async with booted(state) as t, serving(t, sock_path(tmp_path), limits) as path:

        def crowd() -> tuple[Any, Any]:
            held = [HostClient(path) for _ in range(3)]
            try:
                for client in held:
                    client.login("op", "op-password")
                with _raw(path) as extra:
                    busy = _recv(extra)
                held[0].close()
                time.sleep(0.2)  # the server notices the closed connection
                return busy, login_and_call(path, "op", "op-password", "oem", "info")
            finally:
                for client in held:
                    client.close()

        busy, later = await in_thread(crowd)
        assert isinstance(busy, ipc.Error) and busy.code == "BUSY"
        assert later["platform"]


async def test_tre_call_cli(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with booted(state) as t, serving(t, sock_path(tmp_path)) as path:
        monkeypatch.setenv("TRE_PASSWORD", ADMIN_PW)
        code, out, err = await acli(
            capsys, "call", "--socket", path, "--user", ADMIN, "oem", "info"
        )
        assert code == 0, err
        assert json.loads(out)["platform"]
        args = ("call", "--socket", path, "--user", ADMIN, "oem", "timestamp")
        code, out, err = await acli(capsys, *args, '{"digest": {"hex": "' + "00" * 32 + '"}}')
        assert code == 3 and err.startswith("tre: error: DENIED")
        monkeypatch.setenv("TRE_PASSWORD", "wrong")
        code, out, err = await acli(capsys, "call", "--socket", path, "--user", "op", "oem", "info")
        assert code == 3 and "AUTH_FAILED" in err and out == ""
        code, out, err = await acli(
            capsys, "call", "--socket", path, "--user", "op", "oem", "info", "{bad"
        )
        assert code == 2 and "JSON" in err
    code, out, err = await acli(capsys, "call", "--socket", path, "--user", "op", "oem", "info")
    assert code == 2 and "cannot connect" in err


async def test_a_stale_socket_file_is_replaced_and_other_files_are_not(
    state: Path, tmp_path: Path
) -> None:
    path = sock_path(tmp_path)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on
    async with booted(state) as t:
        async with serving(t, path):
            assert await in_thread(lambda: login_and_call(path, ADMIN, ADMIN_PW, "oem", "info"))
        path.write_text("not a socket")
        try:
            with pytest.raises(tre.StorageError, match="not a socket"):
                await t.serve_host(path)
            assert path.read_text() == "not a socket"
        finally:
            path.unlink()


async def test_the_password_never_crosses_the_socket(state: Path, tmp_path: Path) -> None:
    """Record every byte the client sends: no form of the password is in them."""
    async with booted(state) as t, serving(t, sock_path(tmp_path)) as path:
        sent: list[bytes] = []

        class Spy:
            def __init__(self, sock: socket.socket) -> None:
                self.sock = sock

            def sendall(self, data: bytes) -> None:
                sent.append(bytes(data))
                self.sock.sendall(data)

            def __getattr__(self, name: str) -> Any:
                return getattr(self.sock, name)

        def spy() -> None:
            client = HostClient(path)
            client._sock = Spy(client._sock)  # type: ignore[assignment]
            with client:
                client.login("op", "op-password")
                client.call("oem", "info")

        await in_thread(spy)
        stream = b"".join(sent)
        for form in (
            b"op-password",
            "op-password".encode("utf-16-le"),
            b"op-password".hex().encode(),
        ):
            assert form not in stream
        assert msgpack.packb("op-password") not in stream


async def test_a_client_that_never_reads_its_replies_is_closed(state: Path, tmp_path: Path) -> None:
    limits = ServerLimits(idle_timeout=0.5)
    async with booted(state) as t, serving(t, sock_path(tmp_path), limits) as path:

        def flood() -> bool:
            auth = ipc.ClientAuth("op", "op-password")
            with _raw(path) as s:
                _send(s, ipc.Request(1, "auth.hello", auth.hello()))
                challenge = _recv(s)
                assert isinstance(challenge, ipc.Response)
                _send(s, ipc.Request(2, "auth.answer", auth.answer(challenge.body)))
                # Requests without ever reading a reply, until the server gives up on us.
                s.settimeout(0.05)
                call = ipc.frame(ipc.Request(3, "call", {"domain": "oem", "method": "info"}))
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    try:
                        s.sendall(call * 64)
                    except (TimeoutError, BlockingIOError):
                        continue  # our own buffer is full: keep trying
                    except (BrokenPipeError, ConnectionResetError):
                        return True  # the server closed the connection
                return False

        assert await in_thread(flood)
        # The server and the domains are fine.
        assert await in_thread(lambda: login_and_call(path, "op", "op-password", "oem", "info"))


async def test_a_flood_of_logins_is_rate_limited_before_it_reaches_the_store(state: Path) -> None:
    from tre._host import LOGIN_BURST

    async with booted(state) as t:
        gateway = t._gateway
        assert gateway is not None
        await trio.sleep(0.3)  # the boot's own audit entries are written first
        writes_before = gateway.kernel.device.store.sync.generation()
        refused = 0
        for i in range(LOGIN_BURST + 20):
            hello = ipc.ClientAuth(f"made-up-{i}", "x").hello()
            try:
                await gateway.begin(hello)
            except UserLocked as exc:
                refused += 1
                assert exc.retry_after is not None and exc.retry_after <= 1
        assert refused > 0  # (the bucket refills at LOGIN_RATE while the loop runs)
        # One record for the flood (not one per attempt), and begin() writes nothing else.
        assert [e.kind for e in t.events].count("login_refused") == 1
        await trio.sleep(0.2)  # the audit log's group commit
        # (that record, and the audit checkpoint after it: not one write per attempt)
        assert gateway.kernel.device.store.sync.generation() <= writes_before + 3
