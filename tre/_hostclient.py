"""A blocking client of the host socket (``tre call``; see :mod:`._hostserver`).

Plain ``socket`` from the standard library: device software that links nothing of the
runtime can speak the same frames. Every reply is awaited with a timeout; an ERROR
envelope becomes the typed error of its code (``AUTH_FAILED``, ``USER_LOCKED``,
``SESSION_EXPIRED``, ``DENIED``, ``REMOTE_ERROR`` ... see :func:`tre.error_for_code`).
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any

import ipc

from ._errors import error_for_code
from ._host import SessionExpired
from ._users import UserLocked

__all__ = ["HostClient"]

_RETRY = re.compile(r"try again in ([0-9.]+) s")


def _error(code: str, message: str) -> ipc.TREError:
    """The typed error of an ERROR envelope from the host socket."""
    if code == ipc.AuthFailed.code:
        return ipc.AuthFailed(message)
    if code == UserLocked.code:
        match = _RETRY.search(message)
        return UserLocked(float(match.group(1)) if match else None)
    if code == SessionExpired.code:
        return SessionExpired(message)
    return error_for_code(code, message)


class HostClient:
    """One connection: :meth:`login` once, then :meth:`call` as often as needed."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._timeout = timeout
        try:
            self._sock.connect(str(path))
        except OSError:
            self._sock.close()
            raise
        self._decoder = ipc.FrameDecoder(ipc.Limits(max_frame_bytes=1 << 20))
        self._msgid = 0
        #: what the server said at login: user, role, expires_in
        self.login_info: dict[str, Any] = {}

    def __enter__(self) -> HostClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def _request(self, method: str, body: Any, deadline: float | None = None) -> Any:
        self._msgid = (self._msgid + 1) & 0xFFFFFFFF
        self._sock.sendall(ipc.frame(ipc.Request(self._msgid, method, body, deadline)))
        end = time.monotonic() + self._timeout
        while True:
            event = self._decoder.next_event()
            if event is ipc.CLOSED:
                raise ConnectionError("the server closed the connection")
            if event is ipc.NEED_DATA:
                self._sock.settimeout(max(0.001, end - time.monotonic()))
                data = self._sock.recv(65536)
                self._decoder.receive_data(data)
                continue
            if isinstance(event, ipc.Error):
                raise _error(event.code, event.message)
            if isinstance(event, ipc.Response) and event.msgid == self._msgid:
                return event.body
            raise ipc.InvalidFrame("malformed", "unexpected envelope from the server")

    def login(self, user: str, password: str) -> dict[str, Any]:
        auth = ipc.ClientAuth(user, password)
        challenge = self._request("auth.hello", auth.hello())
        if not isinstance(challenge, dict):
            raise ipc.AuthFailed("authentication failed")
        outcome = self._request("auth.answer", auth.answer(challenge))
        if not isinstance(outcome, dict):
            raise ipc.AuthFailed("authentication failed")
        auth.check({"signature": outcome.get("signature")})  # the server knows the verifier
        self.login_info = {k: outcome.get(k) for k in ("user", "role", "expires_in")}
        return self.login_info

    def call(
        self, domain: str, method: str, body: Any = None, *, timeout: float | None = None
    ) -> Any:
        return self._request("call", {"domain": domain, "method": method, "body": body}, timeout)
