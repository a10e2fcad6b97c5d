"""``tre run --socket PATH``: the host interface on a Unix socket (R2, R8).

The same length-prefixed msgpack frames as :mod:`ipc` (a 4-byte length, then one envelope).
A connection first logs in, then calls, one request at a time::

    client                                         server
    REQUEST "auth.hello"  {"user", "nonce"}    ->  RESPONSE {"nonce", "salt", "n", "r", "p"}
    REQUEST "auth.answer" {"proof"}            ->  RESPONSE {"signature", "user", "role",
                                                             "expires_in"}
    REQUEST "call" {"domain", "method", "body"} -> RESPONSE body  |  ERROR code message

(see :mod:`ipc._hostauth`: the password never crosses). Anything else before the login, a
malformed or oversized frame, or a failed login gets one ERROR envelope and the connection
is closed. Limits (:class:`ServerLimits`): a login must finish within ``login_timeout``; a
logged-in connection idle (or stuck inside a half-sent frame) for ``idle_timeout`` is
closed, and so is one that does not read its replies for as long; at most
``max_clients`` connections at once (the next one gets ``BUSY`` and is
closed); frames up to ``max_frame_bytes``. A client can only hurt its own connection: each
runs in its own task, and a user's calls share that user's outstanding-call budget.

The socket file is created with mode 0600 (owner only) unless told otherwise; an existing
socket file that nobody listens on is replaced, anything else at the path is refused.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import socket as stdsocket
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

import attrs
import msgpack
import trio

import ipc

from ._errors import StorageError
from ._host import HostGateway, HostSession

__all__ = ["ServerLimits", "serve_host"]


@attrs.frozen
class ServerLimits:
    max_clients: int = 128
    login_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_frame_bytes: int = 1 << 18
    mode: int = 0o600


def _pack(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


class _Closed(Exception):
    """The connection is done (peer closed, timed out, or we refused it)."""


class _Connection:
    """One client's connection. Timeouts are one watchdog task per connection, not a
    cancel scope per read or write (entering one costs a few microseconds, as much as the
    rest of the server's work for a call): the connection keeps the trio time by which its
    current wait for the peer must end (``deadline``; infinite while no such wait is under
    way, e.g. during a call into a domain), and the watchdog cancels the connection once a
    deadline passes. It checks at the deadline it last saw, so a timeout fires within one
    timeout period of its deadline at the latest."""

    def __init__(self, stream: trio.SocketStream, limits: ServerLimits) -> None:
        self.stream = stream
        self.limits = ipc.Limits(max_frame_bytes=limits.max_frame_bytes)
        self.decoder = ipc.FrameDecoder(self.limits)
        self.idle_timeout = limits.idle_timeout
        self.deadline = math.inf
        self.timed_out = False

    async def watchdog(self, scope: trio.CancelScope) -> None:
        while True:
            deadline = self.deadline
            now = trio.current_time()
            if now >= deadline:
                self.timed_out = True
                scope.cancel()
                return
            await trio.sleep(min(deadline - now, self.idle_timeout))

    async def send(self, envelope: ipc.Envelope) -> None:
        await self.send_bytes(ipc.frame(envelope, self.limits))

    async def send_bytes(self, data: bytes) -> None:
        """Send, or :class:`_Closed`; a peer that does not read its replies for the idle
        timeout is cut off by the watchdog (it cannot pin a task)."""
        outer = self.deadline
        if outer == math.inf:
            self.deadline = trio.current_time() + self.idle_timeout
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _Closed from None
        self.deadline = outer

    async def error(self, msgid: int, code: str, message: str) -> None:
        await self.send(ipc.Error(msgid, code, message[:1000]))

    async def receive(self, deadline: float) -> ipc.Envelope:
        """The next envelope, waiting for the peer until ``deadline`` (trio time) at most;
        :class:`_Closed` at the end of the stream, :class:`ipc.InvalidFrame` on bad bytes."""
        while True:
            event = self.decoder.next_event()
            if event is ipc.CLOSED:
                raise _Closed
            if event is not ipc.NEED_DATA:
                assert isinstance(event, ipc.Request | ipc.Response | ipc.Notification | ipc.Error)
                return event
            self.deadline = deadline
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise _Closed from None
            self.decoder.receive_data(data)


async def _login(gateway: HostGateway, conn: _Connection, limits: ServerLimits) -> HostSession:
    deadline = conn.deadline = trio.current_time() + limits.login_timeout  # the whole login
    hello = await conn.receive(deadline)
    if not isinstance(hello, ipc.Request) or hello.method != "auth.hello":
        await conn.error(getattr(hello, "msgid", 0), "AUTH_REQUIRED", "log in first")
        raise _Closed
    try:
        auth = await gateway.begin(hello.body if isinstance(hello.body, Mapping) else {})
    except ipc.AuthFailed as exc:
        await conn.error(hello.msgid, exc.code, exc.message)
        raise _Closed from None
    await conn.send(ipc.Response(hello.msgid, auth.challenge()))
    answer = await conn.receive(deadline)
    if not isinstance(answer, ipc.Request) or answer.method != "auth.answer":
        await conn.error(getattr(answer, "msgid", 0), "AUTH_REQUIRED", "answer the challenge")
        raise _Closed
    try:
        session, outcome = await gateway.finish(
            auth, answer.body if isinstance(answer.body, Mapping) else {}
        )
    except ipc.AuthFailed as exc:
        await conn.error(answer.msgid, exc.code, exc.message)
        raise _Closed from None
    left = session.expires - trio.current_time()
    await conn.send(
        ipc.Response(
            answer.msgid,
            {
                **outcome,
                "user": session.user.name,
                "role": session.user.role,
                "expires_in": left if left < math.inf else None,
            },
        )
    )
    return session


async def _serve_calls(session: HostSession, conn: _Connection, limits: ServerLimits) -> None:
    while True:
        request = await conn.receive(trio.current_time() + limits.idle_timeout)
        conn.deadline = math.inf  # no wait for the peer until the reply is sent
        if not isinstance(request, ipc.Request) or request.method != "call":
            await conn.error(getattr(request, "msgid", 0), "BAD_REQUEST", "only 'call' requests")
            raise _Closed
        body = request.body
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("domain"), str)
            or not isinstance(body.get("method"), str)
            or set(body) - {"domain", "method", "body"}
        ):
            await conn.error(request.msgid, "BAD_REQUEST", "call takes {domain, method, body}")
            continue
        try:
            result = await session.call(
                body["domain"], body["method"], body.get("body"), timeout=request.deadline
            )
        except ipc.TREError as exc:
            await conn.error(request.msgid, exc.code, str(exc))
            continue
        except ValueError as exc:  # e.g. a deadline that is not a positive finite number
            await conn.error(request.msgid, "BAD_REQUEST", str(exc))
            continue
        try:
            # The result was checked when the kernel decoded the domain's reply (the same
            # rules as ipc.encode), so it is packed as it is: only the size is checked.
            reply = ipc.frame_body(_pack([1, request.msgid, result]), conn.limits)
        except ipc.InvalidFrame as exc:
            await conn.error(request.msgid, "TOO_LARGE", f"the reply cannot be sent: {exc}")
            continue
        await conn.send_bytes(reply)


async def _handle(
    gateway: HostGateway, stream: trio.SocketStream, limits: ServerLimits, slots: list[int]
) -> None:
    conn = _Connection(stream, limits)

    async def converse(scope: trio.CancelScope) -> None:
        try:
            session = await _login(gateway, conn, limits)
            await _serve_calls(session, conn, limits)
        except ipc.InvalidFrame as exc:
            conn.deadline = trio.current_time() + 1.0
            with contextlib.suppress(_Closed):
                await conn.error(0, exc.code, f"{exc.reason}: the connection is closed")
        except _Closed:
            pass
        scope.cancel()  # done: stop the watchdog

    try:
        if slots[0] >= limits.max_clients:
            conn.deadline = trio.current_time() + 1.0
            with trio.move_on_after(1), contextlib.suppress(_Closed):
                await conn.error(0, "BUSY", f"at most {limits.max_clients} connections")
            return
        slots[0] += 1
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.watchdog, nursery.cancel_scope)
                await converse(nursery.cancel_scope)
        finally:
            slots[0] -= 1
    finally:
        await trio.aclose_forcefully(stream)


def _prepare_path(path: Path) -> None:
    """Remove a stale socket file at ``path``; refuse a live one or any other file."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StorageError(f"{path} exists and is not a socket")
    probe = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            path.unlink()
            return
        raise
    finally:
        probe.close()
    raise StorageError(f"{path}: another server is listening there")


async def _bind_private(sock: trio.socket.SocketType, path: Path, mode: int) -> None:
    """Bind ``sock`` at ``path`` so that the socket file is never reachable with another
    mode: bound inside a fresh folder only we can enter (mode 0700), given its mode, then
    renamed into place. (Not the umask: it is process-wide, and the bind runs in a worker
    thread while the rest of the TRE creates files.)"""
    private = Path(tempfile.mkdtemp(prefix=".t", dir=path.parent))
    staged = private / "s"
    try:
        try:
            await sock.bind(str(staged))
        except OSError as exc:
            raise StorageError(f"cannot bind the host socket near {path}: {exc}") from None
        _publish(staged, path, mode)
    finally:
        _remove_private(private, staged)


def _publish(staged: Path, path: Path, mode: int) -> None:
    os.chmod(staged, mode)
    os.rename(staged, path)


def _remove_private(private: Path, staged: Path) -> None:
    staged.unlink(missing_ok=True)
    private.rmdir()


async def serve_host(
    gateway: HostGateway,
    path: Path,
    *,
    limits: ServerLimits = ServerLimits(),
    task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``gateway`` on a Unix socket at ``path`` until cancelled (then the socket file
    is removed). ``task_status.started`` is given the path once clients can connect."""
    path = Path(path)
    _prepare_path(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        await _bind_private(sock, path, limits.mode)
    except BaseException:
        sock.close()
        raise
    try:
        sock.listen(limits.max_clients)
        listener = trio.SocketListener(sock)
        slots = [0]

        async def handler(stream: trio.SocketStream) -> None:
            await _handle(gateway, stream, limits, slots)

        async with trio.open_nursery() as nursery:
            task_status.started(path)
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # EMFILE and friends: back off, keep serving
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        await trio.sleep(0.1)
                        continue
                    raise
                nursery.start_soon(handler, stream)
    finally:
        sock.close()
        try:
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()
        except FileNotFoundError:
            pass
