"""The ``host`` scenario's device, servers, client process, loops and interleaved rounds.

**The device** (:func:`make_device`): ``factory_init`` (``oem`` only) and ``provision`` into
a temporary folder with one admin user (a random password; its verifier made with the
default scrypt parameters, n = 2**14, r = 8, p = 1), ``oem`` enabled and the host allowed
``oem.info`` and ``oem.time``; booted with ``tre.open_tre(state=...)``.

**The servers**, both tasks of the benchmark's own ``trio.run``, next to the TRE:

* ``t.serve_host(host.sock)``: the host interface, :func:`tre._hostserver.serve_host` with
  the default :class:`~tre._hostserver.ServerLimits`.
* :class:`BareServer` on ``bare.sock``: the same listener and streams (``trio.SocketListener``
  over a Unix socket), the same strict decoder (``ipc.FrameDecoder`` with the host server's
  frame limit); each REQUEST is answered with the RESPONSE frame framed for its msgid before
  the timer (``ipc.frame(ipc.Response(msgid, body))`` of oem.info's body: the bytes the host
  server sends). No session, no kernel, no domain.
* a second :class:`BareServer` on ``bare-call.sock`` that also awaits
  ``session.call("oem", "info")`` (a :class:`~tre._host.HostSession` of the same user,
  logged in in process) for every request before sending the same precomputed reply: the
  kernel call as the socket path pays it, without the host server's own code (checks,
  deadlines, framing the reply).

**The client** (:mod:`benchmarks._host_client`): one process, the same interpreter, driven
over a pipe; one logged-in :class:`tre._hostclient.HostClient` connection to the host
server and one (not logged in) to each bare server. It times its loops itself.

**Loops** (``loop(n) -> seconds``, timed in the client process):

* ``host``: ``n`` sequential ``client.call("oem", "info")`` on the logged-in connection.
* ``bare``: the same ``n`` calls on the bare connection: the same REQUEST bytes (msgids
  1, 2, ... on every connection, so the same lengths), the same RESPONSE bytes back.
* ``bare_call``: the same ``n`` calls on the bare-call connection (explains the ratio; it
  has no target).

Every round, every loop checks that the last reply is oem.info's body (a digest), and the
bare loops that every precomputed reply was taken.

**Login** (after the rounds, in the client process): ``HostClient(path).login`` with the
default scrypt parameters, whole; then logins spoken by hand with each step timed apart
(:mod:`benchmarks._host_client`).

**Step timings** (in the benchmark process, after the rounds): ``t.call("oem", "info")``
and ``HostSession.call`` in process, the strict decoding of the REQUEST frame, the framing
of the RESPONSE. The in-process calls run in chunks of :data:`CHUNK` with an untimed pause
between them: oem's quota (``calls_per_second = 20000``, ``burst = 2000`` in
``domains/oem/domain.toml``) applies to the host's route, and a tight in-process loop is
faster than that. The socket loops are well below it (a round faster than 20 000 calls/s
would fail with ``Busy``: the figure would then be the quota, not the path).
"""

from __future__ import annotations

import cProfile
import dataclasses
import functools
import hashlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgpack
import trio

import ipc
import tre
from tre._config import HostPolicy, TREConfig
from tre._factory import factory_init
from tre._host import HostSession
from tre._hostserver import ServerLimits
from tre._provision import provision

from ._keystore_measure import filesystem_of
from ._profile import profile_report, profiled, stack_group
from ._report import progress
from ._rounds import interleaved_rounds, sync_round

__all__ = [
    "DOMAIN",
    "FULL",
    "METHOD",
    "QUICK",
    "TAG",
    "BareServer",
    "ClientProcess",
    "LoopSpec",
    "Outcome",
    "Settings",
    "run",
]

TAG = "host"
DOMAIN, METHOD = "oem", "info"
USER = "bench"
#: In-process calls back to back in the step timings (oem's burst is 2000), and the
#: untimed pause after each chunk (the bucket refills 2000 calls in 0.1 s).
CHUNK = 1000
REFILL_S = 0.1
#: A Unix socket path is at most 108 bytes (107 characters and a NUL).
MAX_SOCKET_PATH = 107
#: The project's root (the parent of ``benchmarks/``): the client process imports from it.
ROOT = Path(__file__).resolve().parent.parent

Loop = Callable[[int], Awaitable[float]]


@dataclasses.dataclass(frozen=True)
class Settings:
    quick: bool
    rounds: int
    #: sequential calls per round (each loop)
    calls: int
    #: logins timed whole, and again step by step
    logins: int
    #: calls of each step of the step timings (and of the profiled round)
    anatomy_calls: int = 2000
    warmup: float = 0.1
    profile: bool = False
    directory: str | None = None


QUICK = Settings(quick=True, rounds=7, calls=5000, logins=5)
FULL = Settings(quick=False, rounds=11, calls=20_000, logins=20, anatomy_calls=5000)


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    name: str
    op: str


LOOPS = (LoopSpec("host", "call"), LoopSpec("bare", "call"), LoopSpec("bare_call", "call"))
#: The bare loops, and the socket file of each.
BARE = {"bare": "bare.sock", "bare_call": "bare-call.sock"}


@dataclasses.dataclass
class Outcome:
    settings: Settings
    #: loop name -> calls/s of each round
    rates: dict[str, list[float]]
    provision_s: float
    open_s: float
    filesystem: str
    #: bytes of the REQUEST and RESPONSE frames (msgid 1)
    frames: dict[str, int]
    #: seconds of every whole login (HostClient + login)
    logins: list[float]
    #: step -> seconds of each hand-spoken login (hello, answer, finish, check)
    login_steps: dict[str, list[float]]
    #: the scrypt parameters of the device's challenge: n, r, p
    scrypt: list[int]
    #: microseconds per call of each step (see :func:`_anatomy`)
    anatomy: dict[str, float]
    profile: str | None = None
    elapsed_s: float = 0.0


def call_body() -> dict[str, Any]:
    """The body of the ``call`` REQUEST that ``HostClient.call(DOMAIN, METHOD)`` sends."""
    return {"domain": DOMAIN, "method": METHOD, "body": None}


def digest(body: Any) -> str:
    """What the client process reports of the last reply (see its ``calls`` op)."""
    return hashlib.sha256(msgpack.packb(body, use_bin_type=True)).hexdigest()


# --- the device -------------------------------------------------------------------------------


def make_device(root: Path, password: str) -> Path:
    """A provisioned device under ``root`` with admin :data:`USER`: its state folder."""
    factory = root / "factory"
    factory_init(factory, domains=(DOMAIN,))
    config = TREConfig(
        name="host-bench",
        enable=(DOMAIN,),
        host=HostPolicy(calls={DOMAIN: frozenset({"info", "time"})}),
    )
    state = root / "state"
    provision(state, factory, config=config, admin=USER, admin_password=password)
    return state


# --- the bare server ---------------------------------------------------------------------------


class BareServer:
    """Decodes each REQUEST and answers the RESPONSE frame made for its msgid beforehand;
    with a ``session``, awaits ``session.call(DOMAIN, METHOD)`` before (its result unused)."""

    def __init__(self, body: Any, limits: ServerLimits, session: HostSession | None = None):
        self.body = body
        self.session = session
        self.limits = ipc.Limits(max_frame_bytes=limits.max_frame_bytes)
        #: msgid -> the RESPONSE frame of the next requests (see :meth:`prepare`)
        self.replies: dict[int, bytes] = {}
        self._next_msgid = 1

    def prepare(self, n: int) -> None:
        """Frame the replies of the next ``n`` requests (the client numbers them 1, 2, ...
        on its connection), before the timer."""
        first = self._next_msgid
        body, limits = self.body, self.limits
        self.replies = {}
        for msgid in range(first, first + n):
            wire_id = msgid & 0xFFFFFFFF
            self.replies[wire_id] = ipc.frame(ipc.Response(wire_id, body), limits)
        self._next_msgid = first + n

    async def _handle(self, stream: trio.SocketStream) -> None:
        decoder = ipc.FrameDecoder(self.limits)
        session = self.session
        async with stream:
            while True:
                event = decoder.next_event()
                if event is ipc.NEED_DATA:
                    try:
                        data = await stream.receive_some(65536)
                    except trio.BrokenResourceError:
                        return
                    decoder.receive_data(data)
                    continue
                if event is ipc.CLOSED:
                    return
                if not isinstance(event, ipc.Request):
                    raise RuntimeError(f"bare server: unexpected {event!r}")
                if session is not None:
                    await session.call(DOMAIN, METHOD)
                await stream.send_all(self.replies.pop(event.msgid))

    async def serve(
        self, path: Path, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve on a Unix socket at ``path`` (as the host server: a listening trio socket,
        one task per connection) until cancelled."""
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        try:
            await sock.bind(str(path))
            sock.listen(8)
            listener = trio.SocketListener(sock)
            async with trio.open_nursery() as nursery:
                task_status.started(path)
                while True:
                    nursery.start_soon(self._handle, await listener.accept())
        finally:
            sock.close()  # the socket file goes with the temporary folder


# --- the client process ------------------------------------------------------------------------


class ClientProcess:
    """The client process's control pipe: :meth:`ask` one command, read its answer."""

    def __init__(self, process: trio.Process) -> None:
        if process.stdin is None or process.stdout is None:
            raise RuntimeError("the client process has no pipes")
        self.process = process
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._buffer = b""

    async def send(self, op: str, **fields: Any) -> None:
        await self._stdin.send_all(json.dumps({"op": op, **fields}).encode() + b"\n")

    async def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        await self.send(op, **fields)
        while b"\n" not in self._buffer:
            data = await self._stdout.receive_some(65536)
            if not data:
                raise RuntimeError(f"the client process exited during {op!r}")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"client process, {op}: {answer['error']}")
        return answer


@asynccontextmanager
async def client_process() -> AsyncIterator[ClientProcess]:
    """``python -m benchmarks._host_client`` (this interpreter, the project importable);
    asked to quit on exit, killed if it does not within 10 s."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "benchmarks._host_client"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        client = ClientProcess(process)
        yield client
        await client.send("quit")
    finally:
        with trio.CancelScope(shield=True):
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    await pipe.aclose()  # end of input: the client's loop ends too
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


# --- the loops ------------------------------------------------------------------------------------


class Runner:
    def __init__(self, client: ClientProcess, bare: dict[str, BareServer], expected: str) -> None:
        self.client, self.bare, self.expected = client, bare, expected

    async def _calls(self, name: str, n: int) -> float:
        answer = await self.client.ask("calls", name=name, n=n, domain=DOMAIN, method=METHOD)
        if answer["digest"] != self.expected:
            raise RuntimeError(f"{name}: the last reply is not {DOMAIN}.{METHOD}'s body")
        return float(answer["seconds"])

    async def host(self, n: int) -> float:
        return await self._calls("host", n)

    async def bare_round(self, name: str, n: int) -> float:
        server = self.bare[name]
        server.prepare(n)
        seconds = await self._calls(name, n)
        if server.replies:
            raise RuntimeError(f"{name}: {len(server.replies)} prepared replies not taken")
        return seconds

    def loop(self, spec: LoopSpec) -> Loop:
        if spec.name == "host":
            return self.host
        return functools.partial(self.bare_round, spec.name)


# --- step timings and profile ---------------------------------------------------------------------


async def _chunked(call: Callable[[], Awaitable[Any]], n: int) -> float:
    """Seconds of ``n`` awaited calls, in chunks of :data:`CHUNK` after an untimed pause."""
    elapsed, done = 0.0, 0
    while done < n:
        k = min(CHUNK, n - done)
        await trio.sleep(REFILL_S)
        start = time.perf_counter()
        for _ in range(k):
            await call()
        elapsed += time.perf_counter() - start
        done += k
    return elapsed


async def _anatomy(
    t: tre.TRE, session: HostSession, body: Any, limits: ServerLimits, n: int
) -> dict[str, float]:
    """Microseconds per call of the parts of a host call, each on its own (median of 3)."""
    frame_limits = ipc.Limits(max_frame_bytes=limits.max_frame_bytes)
    request = ipc.frame(ipc.Request(1, "call", call_body()), frame_limits)

    def decode_request() -> float:
        decoder = ipc.FrameDecoder(frame_limits)
        start = time.perf_counter()
        for _ in range(n):
            decoder.receive_data(request)
            decoder.next_event()
        return time.perf_counter() - start

    def frame_response() -> float:
        frame, response = ipc.frame, ipc.Response
        start = time.perf_counter()
        for msgid in range(1, n + 1):
            frame(response(msgid, body), frame_limits)
        return time.perf_counter() - start

    steps: tuple[tuple[str, Callable[[], Awaitable[float]]], ...] = (
        ("t_call", lambda: _chunked(lambda: t.call(DOMAIN, METHOD), n)),
        ("session_call", lambda: _chunked(lambda: session.call(DOMAIN, METHOD), n)),
        ("decode_request", lambda: sync_round(decode_request)),
        ("frame_response", lambda: sync_round(frame_response)),
    )
    results: dict[str, list[float]] = {}
    for _ in range(3):
        for name, fn in steps:
            results.setdefault(name, []).append(await fn() / n * 1e6)
    return {name: statistics.median(values) for name, values in results.items()}


async def _profile(runner: Runner, n: int) -> str:
    """cProfile of this process during one ``host`` round of ``n`` calls: the host server,
    the kernel and oem (the client's share shows as waiting in epoll)."""
    prof: cProfile.Profile = await profiled(lambda: runner.host(n))

    def group(key: tuple[str, int, str]) -> str:
        return stack_group(
            key,
            (("poll", "waiting in epoll (the client process's share, socket wake-ups)"),),
            (
                ("tre/_hostserver", "tre host server"),
                ("tre/_host", "tre host session"),
                ("tre/_kernel", "tre kernel"),
                ("domains/oem/", "oem domain"),
                ("benchmarks/", "benchmarks (the control pipe)"),
            ),
        )

    return profile_report(prof, "host calls over the socket (server side)", n, 25, group)


# --- the run ------------------------------------------------------------------------------------


async def _run(s: Settings, root: Path) -> Outcome:
    password = secrets.token_urlsafe(18)
    started = time.perf_counter()
    state = make_device(root, password)
    provision_s = time.perf_counter() - started
    filesystem = filesystem_of(state)
    progress(TAG, f"device provisioned in {provision_s:.3f} s ({root}, {filesystem})")
    host_path = root / "host.sock"
    bare_paths = {name: root / file for name, file in BARE.items()}
    if max(len(str(p)) for p in (host_path, *bare_paths.values())) > MAX_SOCKET_PATH:
        raise RuntimeError(f"{root}: too long for Unix socket paths; use a shorter --dir")
    limits = ServerLimits()
    opening = time.perf_counter()
    async with tre.open_tre(state=state) as t:
        open_s = time.perf_counter() - opening
        body = await t.call(DOMAIN, METHOD)
        session = await t.host(user=USER, password=password)
        bare = {
            "bare": BareServer(body, limits),
            "bare_call": BareServer(body, limits, session),
        }
        frame_limits = bare["bare"].limits
        frames = {
            "request_bytes": len(ipc.frame(ipc.Request(1, "call", call_body()), frame_limits)),
            "response_bytes": len(ipc.frame(ipc.Response(1, body), frame_limits)),
        }
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(t.serve_host, host_path, limits=limits))
            for name, server in bare.items():
                await nursery.start(server.serve, bare_paths[name])
            async with client_process() as client:
                login = {"user": USER, "password": password}
                await client.ask("connect", name="host", path=str(host_path), **login)
                anonymous: dict[str, Any] = {"user": None, "password": None}
                for name, path in bare_paths.items():
                    await client.ask("connect", name=name, path=str(path), **anonymous)
                runner = Runner(client, bare, digest(body))
                bound = [(spec, runner.loop(spec)) for spec in LOOPS]
                rates = await interleaved_rounds(
                    TAG, bound, s.rounds, s.warmup, lambda _op: s.calls
                )
                progress(TAG, f"logins: {s.logins} whole, then {s.logins} step by step")
                whole = await client.ask("logins", path=str(host_path), n=s.logins, **login)
                steps = await client.ask("login_steps", path=str(host_path), n=s.logins, **login)
                profile = await _profile(runner, s.anatomy_calls) if s.profile else None
            progress(TAG, f"step timings: {s.anatomy_calls} calls of each, 3 times")
            anatomy = await _anatomy(t, session, body, limits, s.anatomy_calls)
            nursery.cancel_scope.cancel()
    scrypt = [int(v) for v in steps.pop("params")]
    return Outcome(
        s,
        rates,
        provision_s,
        open_s,
        filesystem,
        frames,
        [float(v) for v in whole["seconds"]],
        {k: [float(v) for v in values] for k, values in steps.items()},
        scrypt,
        anatomy,
        profile,
    )


def run(s: Settings) -> Outcome:
    """Run the scenario (its own ``trio.run``) in a temporary folder removed afterwards."""
    progress(
        TAG,
        f"{'quick' if s.quick else 'full'} run: {s.rounds} interleaved rounds of {s.calls} "
        f"{DOMAIN}.{METHOD} calls (each loop) from a client process, {s.logins} logins; "
        f"pid {os.getpid()}",
    )
    with tempfile.TemporaryDirectory(prefix="tre-hostbench-", dir=s.directory) as tmp:
        return trio.run(_run, s, Path(tmp))
