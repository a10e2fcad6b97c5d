"""What the ``ipc`` scenario times: the payload, the bench domains, one round of each loop.

Every loop sends the same body, a small meter reading (:func:`payload`; the loops inline the
literal so that building it costs the same everywhere), N times and returns the seconds the
N round trips took. The three baselines are two plain trio tasks over two trio memory
channels that exchange the kernel's wire arrays (request ``[0, msgid, method, deadline,
body]``, response ``[1, msgid, body]``), and differ only in the codec:

* :data:`RAW` (``baseline``, the headline): ``msgpack.packb(..., use_bin_type=True)`` and
  ``msgpack.unpackb(..., raw=False)``, no validation: what a user writes by hand without a
  kernel, and the strictest comparison;
* :data:`IPC` (``baseline_ipc``): the public strict codec, ``ipc.encode`` / ``ipc.decode``
  of ``ipc.Request`` / ``ipc.Response``, what a peer over a socket would run;
* :data:`LOCAL` (``baseline_local``): ``ipc.LocalCodec``, the codec the kernel itself uses
  between domains, so that the difference to the mediated rate is the mediation alone.

The mediated loop (:func:`mediated_round`) runs inside domain ``client``: the host calls
``client.bench`` with ``{"n": N}`` and the handler times N ``await self.ctx.call("echo",
"echo", payload)``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import trio

import ipc
import tre
from tre.testing import spec

__all__ = [
    "BASELINES",
    "BASELINE_CAPACITY",
    "DEADLINE",
    "HOST_CALLS",
    "IPC",
    "LOCAL",
    "QUOTAS",
    "RAW",
    "TAG",
    "Baseline",
    "domain_specs",
    "ipc_baseline_round",
    "local_baseline_round",
    "mediated_round",
    "payload",
    "raw_baseline_round",
]

#: The scenario's tag in progress lines.
TAG = "ipc"

#: Quotas of the measured domains: the token bucket refills at the manifest maximum and
#: starts full at the maximum burst, so it never throttles; inbox and outstanding as default.
QUOTAS: dict[str, Any] = {
    "calls_per_second": 1e9,
    "burst": 1_000_000_000,
    "inbox_depth": 64,
    "max_outstanding": 64,
}
#: The callee's default deadline (the deadline every mediated call carries) and the one the
#: baselines write in their requests. Longer than any round; the host's call to ``bench``
#: has :data:`BENCH_TIMEOUT`.
DEADLINE = 60.0
BENCH_TIMEOUT = 600.0
#: Memory channel capacity of the baselines (0 or 1; 1 is the faster of the two here).
BASELINE_CAPACITY = 1
#: The largest frame the LocalCodec baseline may build (the kernel's default limit).
LOCAL_MAX_BYTES = 64 * 1024
#: The 32-byte digest of the payload (a constant, so every loop builds the same body).
DIGEST = bytes(32)


def payload(seq: int) -> dict[str, Any]:
    """The body of call ``seq``: a small meter reading. The loops inline this literal; the
    last reply of every round is checked against it."""
    return {"seq": seq, "kwh": 42.5, "unit": "kWh", "digest": DIGEST}


# --- the domains ---------------------------------------------------------------------------


class Echo(tre.Domain):
    @tre.service
    async def echo(self, caller: str, body: Any) -> Any:
        return body


class BenchClient(tre.Domain):
    """Runs the mediated loop inside the TRE: ``bench({"n": N})`` -> timing of N calls."""

    @tre.service
    async def bench(self, caller: str, body: Any) -> dict[str, Any]:
        n = body["n"]
        if type(n) is not int or n < 1:
            raise tre.ServiceError("BAD_N", "n must be a positive int")
        call = self.ctx.call
        digest = DIGEST
        reply: Any = None
        start = time.perf_counter()
        for seq in range(n):
            reply = await call(
                "echo", "echo", {"seq": seq, "kwh": 42.5, "unit": "kWh", "digest": digest}
            )
        elapsed = time.perf_counter() - start
        return {"elapsed": elapsed, "last": reply}


class Idle(tre.Domain):
    """An idle domain: no services, no ``run()``; it only exists."""


#: What the host may call: ``client.bench``.
HOST_CALLS = {"client": ["bench"]}


def domain_specs(idle: int, prefix: str = "idle") -> list[tre.DomainSpec]:
    """``echo`` + ``client`` (client may call echo.echo; the host may call client.bench),
    plus ``idle`` idle domains named ``{prefix}-{i}``."""
    specs = [
        spec(
            Echo,
            id="echo",
            services={"echo": ["client"]},
            quotas=QUOTAS,
            default_deadline=DEADLINE,
        ),
        spec(
            BenchClient,
            id="client",
            services={"bench": ["host"]},
            calls={"echo": ["echo"]},
            quotas=QUOTAS,
            default_deadline=DEADLINE,
        ),
    ]
    specs += [spec(Idle, id=f"{prefix}-{i}", services={}) for i in range(idle)]
    return specs


# --- the baselines: two plain trio tasks -----------------------------------------------------

_Send = trio.MemorySendChannel[bytes]
_Recv = trio.MemoryReceiveChannel[bytes]
#: server(requests in, responses out): answer every request until the channel closes
_Server = Callable[[_Recv, _Send], Awaitable[None]]
#: client(n, requests out, responses in) -> (seconds for n round trips, last wire reply)
_Client = Callable[[int, _Send, _Recv], Awaitable[tuple[float, list[Any]]]]


async def _pair(name: str, n: int, capacity: int, client: _Client, server: _Server) -> float:
    """Run ``client`` against ``server`` over two fresh memory channels; check the last
    reply (``[1, n - 1, payload(n - 1)]``) and return the client's seconds."""
    req_send, req_recv = trio.open_memory_channel[bytes](capacity)
    resp_send, resp_recv = trio.open_memory_channel[bytes](capacity)

    async def serve() -> None:
        async with resp_send, req_recv:
            await server(req_recv, resp_send)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        async with req_send, resp_recv:
            elapsed, reply = await client(n, req_send, resp_recv)
    if reply != [1, n - 1, payload(n - 1)]:
        raise RuntimeError(f"{name}: wrong last reply {reply!r}")
    return elapsed


# Each client loop sends request ``seq`` with msgid ``seq`` (a uint32 for any n used here).


async def _raw_server(requests: _Recv, responses: _Send) -> None:
    packb, unpackb = msgpack.packb, msgpack.unpackb
    async for data in requests:
        request = unpackb(data, raw=False)
        await responses.send(packb([1, request[1], request[4]], use_bin_type=True))


async def _raw_client(n: int, requests: _Send, responses: _Recv) -> tuple[float, list[Any]]:
    packb, unpackb = msgpack.packb, msgpack.unpackb
    digest = DIGEST
    reply: Any = None
    start = time.perf_counter()
    for seq in range(n):
        body = {"seq": seq, "kwh": 42.5, "unit": "kWh", "digest": digest}
        await requests.send(packb([0, seq, "echo", DEADLINE, body], use_bin_type=True))
        reply = unpackb(await responses.receive(), raw=False)
    return time.perf_counter() - start, reply


async def raw_baseline_round(n: int, capacity: int = BASELINE_CAPACITY) -> float:
    """N round trips, each side ``msgpack.packb`` / ``unpackb`` of the wire arrays, with no
    validation (the headline baseline); returns seconds."""
    return await _pair("baseline", n, capacity, _raw_client, _raw_server)


async def _ipc_server(requests: _Recv, responses: _Send) -> None:
    encode, decode, response = ipc.encode, ipc.decode, ipc.Response
    async for data in requests:
        request = decode(data)
        if type(request) is not ipc.Request:
            raise RuntimeError("baseline_ipc server: expected a request")
        await responses.send(encode(response(request.msgid, request.body)))


async def _ipc_client(n: int, requests: _Send, responses: _Recv) -> tuple[float, list[Any]]:
    encode, decode, request = ipc.encode, ipc.decode, ipc.Request
    digest = DIGEST
    reply: Any = None
    start = time.perf_counter()
    for seq in range(n):
        body = {"seq": seq, "kwh": 42.5, "unit": "kWh", "digest": digest}
        await requests.send(encode(request(seq, "echo", body, DEADLINE)))
        reply = decode(await responses.receive())
        if type(reply) is not ipc.Response:
            raise RuntimeError("baseline_ipc client: expected a response")
    elapsed = time.perf_counter() - start
    return elapsed, [1, reply.msgid, reply.body]


async def ipc_baseline_round(n: int, capacity: int = BASELINE_CAPACITY) -> float:
    """N round trips, each side ``ipc.encode`` / ``ipc.decode`` (the public strict codec,
    what a socket peer runs) of ``ipc.Request`` / ``ipc.Response``; returns seconds."""
    return await _pair("baseline_ipc", n, capacity, _ipc_client, _ipc_server)


async def _local_server(requests: _Recv, responses: _Send) -> None:
    codec = ipc.LocalCodec()
    async for data in requests:
        request = codec.unpack(data)
        if request[0] != 0:
            raise RuntimeError("baseline_local server: expected a request")
        await responses.send(codec.response(request[1], request[4], LOCAL_MAX_BYTES))


async def _local_client(n: int, requests: _Send, responses: _Recv) -> tuple[float, list[Any]]:
    codec = ipc.LocalCodec()
    digest, max_bytes = DIGEST, LOCAL_MAX_BYTES
    reply: Any = None
    start = time.perf_counter()
    for seq in range(n):
        body = {"seq": seq, "kwh": 42.5, "unit": "kWh", "digest": digest}
        await requests.send(codec.request(seq, "echo", DEADLINE, body, max_bytes))
        reply = codec.unpack(await responses.receive())
    return time.perf_counter() - start, reply


async def local_baseline_round(n: int, capacity: int = BASELINE_CAPACITY) -> float:
    """N round trips with the codec the kernel uses between domains (``ipc.LocalCodec``:
    reused packer, no re-validation of frames it built itself); returns seconds. The
    difference to the mediated rate is then the kernel's mediation alone."""
    return await _pair("baseline_local", n, capacity, _local_client, _local_server)


@dataclasses.dataclass(frozen=True)
class Baseline:
    """One baseline loop: ``name`` is its key in the JSON (``{name}_rtt_per_s``, samples)
    and in progress lines, ``codec`` what both tasks encode and decode with."""

    name: str
    codec: str
    round: Callable[[int, int], Awaitable[float]]

    @property
    def headline(self) -> bool:
        return self.name == "baseline"

    @property
    def label(self) -> str:
        return f"{self.name}{'' if self.headline else ' (extra)'}: 2 trio tasks, {self.codec}"

    @property
    def ratio_key(self) -> str:
        """``ratio``, ``ratio_ipc``, ``ratio_local``: mediated / this baseline."""
        return "ratio" + self.name.removeprefix("baseline")

    def bound(self, capacity: int) -> Callable[[int], Awaitable[float]]:
        """This baseline's round on channels of ``capacity``: ``loop(n) -> seconds``."""
        return lambda n: self.round(n, capacity)


RAW = Baseline("baseline", "msgpack.packb/unpackb by hand", raw_baseline_round)
IPC = Baseline("baseline_ipc", "strict ipc.encode/decode", ipc_baseline_round)
LOCAL = Baseline("baseline_local", "the kernel's ipc.LocalCodec", local_baseline_round)
#: Every baseline, the headline first.
BASELINES = (RAW, IPC, LOCAL)


# --- the mediated loop -----------------------------------------------------------------------


async def mediated_round(t: tre.TRE, n: int) -> float:
    """N kernel-mediated calls client -> echo, timed inside the client; returns seconds."""
    result = await t.call("client", "bench", {"n": n}, timeout=BENCH_TIMEOUT)
    if result["last"] != payload(n - 1):
        raise RuntimeError(f"mediated: wrong last reply {result['last']!r}")
    return float(result["elapsed"])
