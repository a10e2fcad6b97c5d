"""The ``host`` scenario's client process: ``python -m benchmarks._host_client``.

A separate interpreter that plays the device software outside the TRE: it holds the
connections, runs the timed loops with :class:`tre._hostclient.HostClient` (the blocking
stdlib-socket client that ``tre call`` uses) and times them itself, so the control channel
is never inside a timer. The benchmark process drives it with one JSON command a line on
stdin; each command gets one JSON line on stdout (``{"error": ...}`` on failure):

* ``{"op": "connect", "name", "path", "user", "password"}``: open connection ``name`` to
  ``path``, logged in when ``user`` is not null -> ``{}``.
* ``{"op": "calls", "name", "n", "domain", "method"}``: ``n`` sequential
  ``client.call(domain, method)`` on connection ``name`` after a garbage collection ->
  ``{"seconds", "digest"}`` (SHA-256 of the msgpack of the last reply body: both servers
  must have answered the same body).
* ``{"op": "logins", "path", "user", "password", "n"}``: ``n`` times a new
  ``HostClient(path)`` + ``login`` (timed together) + ``close`` -> ``{"seconds": [...]}``.
* ``{"op": "login_steps", "path", "user", "password", "n"}``: ``n`` logins spoken by hand
  (the same frames as ``HostClient.login``), each step timed apart: the hello round trip,
  the client's answer (scrypt + HMAC), the answer round trip, the check of the server's
  signature -> ``{"hello", "answer", "finish", "check": [...], "params": [n, r, p]}``.
* ``{"op": "quit"}``: close everything and exit.
"""

from __future__ import annotations

import gc
import hashlib
import json
import socket
import sys
import time
from typing import Any

import msgpack

import ipc
from tre._hostclient import HostClient

__all__ = ["main"]

#: The timeout of every blocking socket operation of the client.
TIMEOUT = 60.0


def _digest(body: Any) -> str:
    return hashlib.sha256(msgpack.packb(body, use_bin_type=True)).hexdigest()


def _exchange(
    sock: socket.socket, decoder: ipc.FrameDecoder, msgid: int, method: str, body: Any
) -> Any:
    """One REQUEST and its RESPONSE body, as :class:`HostClient` does it."""
    sock.sendall(ipc.frame(ipc.Request(msgid, method, body)))
    while True:
        event = decoder.next_event()
        if event is ipc.NEED_DATA:
            decoder.receive_data(sock.recv(65536))
            continue
        if isinstance(event, ipc.Response) and event.msgid == msgid:
            return event.body
        raise RuntimeError(f"{method}: unexpected reply {event!r}")


def _login_steps(path: str, user: str, password: str) -> tuple[list[float], list[int]]:
    """One login by hand: (seconds of hello, answer, finish, check), the scrypt params."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(path)
        decoder = ipc.FrameDecoder(ipc.Limits(max_frame_bytes=1 << 20))
        auth = ipc.ClientAuth(user, password)
        t0 = time.perf_counter()
        challenge = _exchange(sock, decoder, 1, "auth.hello", auth.hello())
        t1 = time.perf_counter()
        answer = auth.answer(challenge)
        t2 = time.perf_counter()
        outcome = _exchange(sock, decoder, 2, "auth.answer", answer)
        t3 = time.perf_counter()
        auth.check({"signature": outcome.get("signature")})  # as HostClient.login
        t4 = time.perf_counter()
    finally:
        sock.close()
    params = [int(challenge[k]) for k in ("n", "r", "p")]
    return [t1 - t0, t2 - t1, t3 - t2, t4 - t3], params


class _Client:
    def __init__(self) -> None:
        self.connections: dict[str, HostClient] = {}

    def connect(self, name: str, path: str, user: str | None, password: str | None) -> None:
        client = HostClient(path, timeout=TIMEOUT)
        if user is not None and password is not None:
            client.login(user, password)
        self.connections[name] = client

    def calls(self, name: str, n: int, domain: str, method: str) -> dict[str, Any]:
        call = self.connections[name].call
        reply: Any = None
        gc.collect()
        start = time.perf_counter()
        for _ in range(n):
            reply = call(domain, method)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "digest": _digest(reply)}

    @staticmethod
    def logins(path: str, user: str, password: str, n: int) -> dict[str, Any]:
        seconds = []
        for _ in range(n):
            start = time.perf_counter()
            client = HostClient(path, timeout=TIMEOUT)
            client.login(user, password)
            seconds.append(time.perf_counter() - start)
            client.close()
        return {"seconds": seconds}

    @staticmethod
    def login_steps(path: str, user: str, password: str, n: int) -> dict[str, Any]:
        steps: dict[str, list[float]] = {"hello": [], "answer": [], "finish": [], "check": []}
        params: list[int] = []
        for _ in range(n):
            times, params = _login_steps(path, user, password)
            for key, value in zip(steps, times, strict=True):
                steps[key].append(value)
        return {**steps, "params": params}

    def close(self) -> None:
        for client in self.connections.values():
            client.close()

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        if op == "connect":
            self.connect(command["name"], command["path"], command["user"], command["password"])
            return {}
        if op == "calls":
            return self.calls(command["name"], command["n"], command["domain"], command["method"])
        if op == "logins":
            return self.logins(command["path"], command["user"], command["password"], command["n"])
        if op == "login_steps":
            args = (command["path"], command["user"], command["password"], command["n"])
            return self.login_steps(*args)
        raise ValueError(f"unknown op {op!r}")


def main() -> int:
    client = _Client()
    try:
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "quit":
                break
            try:
                answer = client.handle(command)
            except Exception as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
