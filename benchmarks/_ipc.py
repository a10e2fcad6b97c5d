"""Scenario ``ipc``: what the kernel's mediation costs, and how it scales with domain count.

One run measures, on the same interpreter and within the same minutes:

(a) **baseline**: a bare request/response between two plain trio tasks over two trio memory
    channels (capacity :data:`BASELINE_CAPACITY` by default), each side encoding and decoding
    the same envelopes as the kernel: the client sends ``ipc.encode(ipc.Request(msgid,
    "echo", payload, 60.0))``, the server decodes it and answers ``ipc.encode(ipc.Response(
    msgid, body))``, the client decodes the reply. This is what a user would write by hand
    without a kernel.
(b) **mediated**: the same payload as a kernel-mediated call from domain ``client`` to domain
    ``echo``. The loop runs inside ``client`` (a domain reaches others only through its
    context): the host calls ``client.bench`` with ``{"n": N}`` and the handler times N
    ``await self.ctx.call("echo", "echo", payload)``.
(c) (b) again with 10, 100 and 1000 idle domains (no services, no ``run()``) booted in the
    same TRE.

Baseline and mediated rounds alternate inside every TRE size (the order flips each round) so
that machine noise hits both alike; medians are reported and the ratio ``mediated /
baseline`` is taken from the 2-domain TRE's rounds. Every TRE size is booted
``boot_repeats`` times to time ``open_tre`` (``t.boot_seconds``: the boot of all domains;
``open_s``: the whole ``async with open_tre`` enter, measured here). Memory per idle domain
is measured last, under ``tracemalloc``: the traced memory with ``memory_domains`` idle
domains booted minus that with none, divided by ``memory_domains`` (specs included: the TRE
holds them). A snapshot difference by source line shows where those bytes go.

Keys of ``scale``, ``boot_s`` and the other per-size maps in the JSON are the TOTAL number of
domains in the TRE as strings: ``"2"`` (client + echo), ``"12"``, ``"102"``, ``"1002"``
(client + echo + 10/100/1000 idle); ``idle_domains`` maps each key to its idle count.

Rate limits are set to the manifest maxima (``calls_per_second`` 1e9, ``burst`` 1e9) so the
token buckets never throttle a run, and deadlines are longer than any run.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import io
import os
import pstats
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import trio

import ipc
import tre
from tre.testing import open_test_tre, spec

from ._report import environment, fmt_bytes, median, progress, render_table, write_json

__all__ = [
    "FULL",
    "QUICK",
    "Settings",
    "baseline_round",
    "main",
    "run",
]

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
#: baseline writes in its requests. Longer than any round; the host's call to ``bench``
#: has :data:`BENCH_TIMEOUT`.
DEADLINE = 60.0
BENCH_TIMEOUT = 600.0
#: Memory channel capacity of the baseline (0 or 1; 1 is the faster of the two here).
BASELINE_CAPACITY = 1
#: The 32-byte digest of the payload (a constant, so both loops build the same body).
DIGEST = bytes(32)

# Targets (reported, never asserted).
TARGET_RATIO = 1.0
TARGET_SCALE = 0.90
TARGET_BOOT_S = 1.0
TARGET_BYTES = 32 * 1024


def payload(seq: int) -> dict[str, Any]:
    """The body of every call: a small meter reading (both loops inline this literal)."""
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
        return {"elapsed": elapsed, "last_seq": reply["seq"]}


class Idle(tre.Domain):
    """An idle domain: no services, no ``run()``; it only exists."""


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


HOST_CALLS = {"client": ["bench"]}


# --- one round of each loop --------------------------------------------------------------


async def baseline_round(n: int, capacity: int = BASELINE_CAPACITY) -> float:
    """N request/response round trips between two plain trio tasks; returns seconds."""
    req_send, req_recv = trio.open_memory_channel[bytes](capacity)
    resp_send, resp_recv = trio.open_memory_channel[bytes](capacity)

    async def server() -> None:
        async with resp_send:
            async for data in req_recv:
                request = ipc.decode(data)
                if type(request) is not ipc.Request:
                    raise RuntimeError("baseline server: expected a request")
                await resp_send.send(ipc.encode(ipc.Response(request.msgid, request.body)))

    digest = DIGEST
    msgid = 0
    body: Any = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        start = time.perf_counter()
        for seq in range(n):
            msgid = (msgid + 1) & 0xFFFFFFFF
            frame = ipc.encode(
                ipc.Request(
                    msgid,
                    "echo",
                    {"seq": seq, "kwh": 42.5, "unit": "kWh", "digest": digest},
                    DEADLINE,
                )
            )
            await req_send.send(frame)
            reply = ipc.decode(await resp_recv.receive())
            if type(reply) is not ipc.Response:
                raise RuntimeError("baseline client: expected a response")
            body = reply.body
        elapsed = time.perf_counter() - start
        await req_send.aclose()
    if body["seq"] != n - 1:
        raise RuntimeError("baseline: wrong last reply")
    return elapsed


def local_codec() -> Any:
    """The kernel's own codec (``ipc.LocalCodec``) if this ``ipc`` has one, else None."""
    return getattr(ipc, "LocalCodec", None)


async def local_baseline_round(n: int, capacity: int = BASELINE_CAPACITY) -> float:
    """As :func:`baseline_round`, but with the codec the kernel uses between domains
    (``ipc.LocalCodec``: reused packer, no re-validation of frames it built itself). The
    difference to the mediated rate is then the kernel's mediation alone."""
    factory = local_codec()
    if factory is None:
        raise RuntimeError("this ipc has no LocalCodec")
    codec = factory()
    max_bytes = 64 * 1024
    req_send, req_recv = trio.open_memory_channel[bytes](capacity)
    resp_send, resp_recv = trio.open_memory_channel[bytes](capacity)

    async def server() -> None:
        async with resp_send:
            async for data in req_recv:
                request = codec.unpack(data)
                if request[0] != 0:
                    raise RuntimeError("local baseline server: expected a request")
                await resp_send.send(codec.response(request[1], request[4], max_bytes))

    digest = DIGEST
    msgid = 0
    body: Any = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        start = time.perf_counter()
        for seq in range(n):
            msgid = (msgid + 1) & 0xFFFFFFFF
            frame = codec.request(
                msgid,
                "echo",
                DEADLINE,
                {"seq": seq, "kwh": 42.5, "unit": "kWh", "digest": digest},
                max_bytes,
            )
            await req_send.send(frame)
            reply = codec.unpack(await resp_recv.receive())
            if reply[0] != 1:
                raise RuntimeError("local baseline client: expected a response")
            body = reply[2]
        elapsed = time.perf_counter() - start
        await req_send.aclose()
    if body["seq"] != n - 1:
        raise RuntimeError("local baseline: wrong last reply")
    return elapsed


async def mediated_round(t: tre.TRE, n: int) -> float:
    """N kernel-mediated calls client -> echo, timed inside the client; returns seconds."""
    result = await t.call("client", "bench", {"n": n}, timeout=BENCH_TIMEOUT)
    if result["last_seq"] != n - 1:
        raise RuntimeError("mediated: wrong last reply")
    return float(result["elapsed"])


# --- settings and results --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    quick: bool
    #: calls per timed round (each loop)
    calls: int
    #: alternating baseline/mediated rounds per TRE size
    rounds: int
    #: idle domain counts measured after the 2-domain TRE (0 is always measured first)
    idle_counts: tuple[int, ...]
    #: boots of each TRE size timed (the last one is the one the rounds run in)
    boot_repeats: int
    #: idle domains booted for the memory measurement
    memory_domains: int
    #: calls of each loop run (untimed) in each TRE before its rounds
    warmup_calls: int
    baseline_capacity: int = BASELINE_CAPACITY
    #: also run the baseline with the kernel's own codec (when ipc has one)
    local_baseline: bool = True
    profile: bool = False


QUICK = Settings(
    quick=True,
    calls=15_000,
    rounds=3,
    idle_counts=(10, 100, 1000),
    boot_repeats=3,
    memory_domains=1000,
    warmup_calls=2_000,
)
FULL = Settings(
    quick=False,
    calls=60_000,
    rounds=7,
    idle_counts=(10, 100, 1000),
    boot_repeats=5,
    memory_domains=1000,
    warmup_calls=5_000,
)


@dataclasses.dataclass
class SizeResult:
    """Everything measured for one TRE size."""

    idle: int
    baseline: list[float] = dataclasses.field(default_factory=list)  # calls/s per round
    local: list[float] = dataclasses.field(default_factory=list)  # calls/s per round
    mediated: list[float] = dataclasses.field(default_factory=list)  # calls/s per round
    open_s: list[float] = dataclasses.field(default_factory=list)
    boot_s: list[float] = dataclasses.field(default_factory=list)
    shutdown_s: list[float] = dataclasses.field(default_factory=list)

    @property
    def domains(self) -> int:
        return self.idle + 2


@dataclasses.dataclass
class MemoryResult:
    domains: int
    traced_delta: int
    snapshot_delta: int
    #: (source line, bytes per domain, blocks per domain), biggest first
    top: list[tuple[str, float, float]]
    #: package -> bytes per domain (allocations filed under the line that made them)
    by_package: dict[str, float]

    @property
    def bytes_per_domain(self) -> float:
        return self.traced_delta / self.domains

    @property
    def snapshot_bytes_per_domain(self) -> float:
        return self.snapshot_delta / self.domains


# --- the measurements ------------------------------------------------------------------------


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


async def _measure_size(idle: int, s: Settings) -> SizeResult:
    res = SizeResult(idle)
    label = f"{res.domains} domains"
    specs = domain_specs(idle)
    for rep in range(s.boot_repeats):
        last = rep == s.boot_repeats - 1
        gc.collect()
        started = time.perf_counter()
        async with open_test_tre(*specs, host_calls=HOST_CALLS) as t:
            res.open_s.append(time.perf_counter() - started)
            res.boot_s.append(t.boot_seconds)
            progress(
                TAG,
                f"{label}: boot {rep + 1}/{s.boot_repeats}: {t.boot_seconds:.4f} s "
                f"(open_tre {res.open_s[-1]:.4f} s)",
            )
            if last:
                await _rounds(t, res, s, label)
            closing = time.perf_counter()
        res.shutdown_s.append(time.perf_counter() - closing)
    return res


async def _rounds(t: tre.TRE, res: SizeResult, s: Settings, label: str) -> None:
    n, cap = s.calls, s.baseline_capacity
    loops: list[tuple[str, Callable[[int], Awaitable[float]], list[float]]] = [
        ("baseline", lambda k: baseline_round(k, cap), res.baseline),
        ("mediated", lambda k: mediated_round(t, k), res.mediated),
    ]
    if s.local_baseline and local_codec() is not None:
        loops.insert(1, ("baseline-local", lambda k: local_baseline_round(k, cap), res.local))
    if s.warmup_calls:
        for _, loop, _ in loops:
            await loop(s.warmup_calls)
    for r in range(s.rounds):
        # Rotate the order each round so no loop always runs right after another.
        shift = r % len(loops)
        for which, loop, samples in loops[shift:] + loops[:shift]:
            gc.collect()
            rate = _rate(n, await loop(n))
            samples.append(rate)
            progress(TAG, f"{which} round {r + 1}/{s.rounds}: {rate:.0f} calls/s ({label})")


def _tracemalloc_filter(snapshot: tracemalloc.Snapshot) -> tracemalloc.Snapshot:
    return snapshot.filter_traces(
        (
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<unknown>"),
        )
    )


async def _traced_tre(specs: Sequence[tre.DomainSpec], dump_to: Path) -> int:
    """Boot ``specs`` under tracemalloc; return the traced bytes and dump a snapshot."""
    async with open_test_tre(*specs, host_calls=HOST_CALLS):
        gc.collect()
        current = tracemalloc.get_traced_memory()[0]
        # Dumped to a file, not kept: a snapshot held in memory would be traced itself.
        tracemalloc.take_snapshot().dump(str(dump_to))
    return current


async def _measure_memory(n: int) -> MemoryResult:
    progress(TAG, f"memory: tracemalloc, 2 domains vs {n + 2} domains")
    with tempfile.TemporaryDirectory(prefix="tre-bench-") as tmp:
        small_file, big_file = Path(tmp, "small.snap"), Path(tmp, "big.snap")
        gc.collect()
        tracemalloc.start()
        try:
            small = await _traced_tre(domain_specs(0), small_file)
            # Fresh ids ("mem-N"): per-id state kept by libraries (loggers) is counted too.
            specs = domain_specs(n, prefix="mem")
            big = await _traced_tre(specs, big_file)
            del specs
        finally:
            tracemalloc.stop()
        snap_small = _tracemalloc_filter(tracemalloc.Snapshot.load(str(small_file)))
        snap_big = _tracemalloc_filter(tracemalloc.Snapshot.load(str(big_file)))
    size_small = sum(stat.size for stat in snap_small.statistics("filename"))
    size_big = sum(stat.size for stat in snap_big.statistics("filename"))
    top = [
        (_site(diff.traceback), diff.size_diff / n, diff.count_diff / n)
        for diff in snap_big.compare_to(snap_small, "lineno")[:12]
    ]
    by_package: dict[str, float] = {}
    for diff in snap_big.compare_to(snap_small, "filename"):
        group = _package(diff.traceback[0].filename)
        by_package[group] = by_package.get(group, 0.0) + diff.size_diff / n
    by_package = {
        name: size
        for name, size in sorted(by_package.items(), key=lambda kv: -kv[1])
        if abs(size) >= 1
    }
    result = MemoryResult(n, big - small, size_big - size_small, top, by_package)
    progress(
        TAG,
        f"memory: {result.bytes_per_domain:.0f} B per idle domain (traced), "
        f"{result.snapshot_bytes_per_domain:.0f} B (snapshot)",
    )
    return result


def _site(traceback: tracemalloc.Traceback) -> str:
    frame = traceback[0]
    return f"{_short_path(frame.filename)}:{frame.lineno}"


def _short_path(filename: str) -> str:
    """``.../site-packages/trio/_core/_run.py`` -> ``trio/_core/_run.py``; project files
    relative to the project."""
    path = filename.replace(os.sep, "/")
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3" else tail
    root = str(Path(tre.__file__).resolve().parent.parent).replace(os.sep, "/") + "/"
    return path[len(root) :] if path.startswith(root) else path


# --- profiling -------------------------------------------------------------------------------


_Key = tuple[str, int, str]


def _group(key: _Key) -> str:
    """Which part of the stack a profiled function belongs to."""
    filename, _, name = key
    if filename == "~":
        if "msgpack" in name or "Packer" in name:
            return "msgpack (C)"
        return "builtins (C)"
    return _package(filename)


def _package(filename: str) -> str:
    """Which part of the stack a source file belongs to."""
    if filename.startswith("<attrs generated"):
        # "<attrs generated methods outcome._impl.Value>": file it under its package.
        path = filename.rsplit(" ", 1)[-1].rstrip(">").replace(".", "/")
    else:
        path = _short_path(filename)
    for prefix, group in (
        ("tre/", "tre (runtime)"),
        ("ipc/", "ipc (codec, envelopes)"),
        ("trio/", "trio"),
        ("outcome/", "outcome"),
        ("msgpack/", "msgpack (py)"),
        ("benchmarks/", "benchmarks"),
    ):
        if path.startswith(prefix):
            return group
    if "/lib/python3" in filename.replace(os.sep, "/"):
        return "stdlib (py)"
    return "other"


def _profile_report(prof: cProfile.Profile, title: str, calls: int, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    raw: dict[_Key, tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    groups: dict[str, float] = {}
    for key, entry in raw.items():
        groups[_group(key)] = groups.get(_group(key), 0.0) + entry[2]
    out.write(f"\n=== {title}: {calls} calls, {total:.3f} s of tottime under cProfile, ")
    out.write(f"{total / calls * 1e6:.1f} us per call ===\n")
    out.write(
        render_table(
            ("where (tottime summed by package)", "s", "us/call", "share"),
            (
                (name, f"{sec:.3f}", f"{sec / calls * 1e6:.2f}", f"{sec / total:.0%}")
                for name, sec in sorted(groups.items(), key=lambda kv: -kv[1])
            ),
        )
    )
    out.write(f"\n\ntop {top} functions by tottime:\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


async def _profile(s: Settings) -> str:
    """Run each loop once under cProfile (after the timed rounds: never mixed with them)."""
    progress(TAG, f"profile: {s.calls} calls of each loop under cProfile")
    async with open_test_tre(*domain_specs(0), host_calls=HOST_CALLS) as t:
        await mediated_round(t, s.warmup_calls or 100)
        gc.collect()
        mediated = cProfile.Profile()
        mediated.enable()
        await mediated_round(t, s.calls)
        mediated.disable()
        gc.collect()
        baseline = cProfile.Profile()
        baseline.enable()
        await baseline_round(s.calls, s.baseline_capacity)
        baseline.disable()
        report = _profile_report(mediated, "mediated (client -> kernel -> echo)", s.calls, 25)
        title = "baseline (two trio tasks, ipc.encode/decode)"
        report += _profile_report(baseline, title, s.calls, 15)
        if s.local_baseline and local_codec() is not None:
            gc.collect()
            local = cProfile.Profile()
            local.enable()
            await local_baseline_round(s.calls, s.baseline_capacity)
            local.disable()
            report += _profile_report(local, "baseline-local (ipc.LocalCodec)", s.calls, 10)
    return report


# --- the whole scenario ----------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    settings: Settings
    sizes: dict[str, SizeResult]
    memory: MemoryResult
    profile: str | None
    elapsed_s: float = 0.0


async def _run(s: Settings) -> Outcome:
    started = time.perf_counter()
    counts = [0, *sorted({c for c in s.idle_counts if c > 0})]
    sizes: dict[str, SizeResult] = {}
    for idle in counts:
        res = await _measure_size(idle, s)
        sizes[str(res.domains)] = res
    memory = await _measure_memory(s.memory_domains)
    prof = await _profile(s) if s.profile else None
    return Outcome(s, sizes, memory, prof, time.perf_counter() - started)


def run(s: Settings) -> Outcome:
    """Run the scenario (its own ``trio.run``); progress lines go to stderr."""
    progress(
        TAG,
        f"{'quick' if s.quick else 'full'} run: {s.rounds} rounds x {s.calls} calls per loop, "
        f"idle domains {[0, *s.idle_counts]}; rate limits at 1e9/s, burst 1e9 (never throttle)",
    )
    return trio.run(_run, s)


def _targets(o: Outcome) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, goal, met) rows; met is None when this run cannot tell."""
    sizes = o.sizes
    small = sizes["2"]
    biggest = sizes[max(sizes, key=int)]
    ratio = median(small.mediated) / median(small.baseline)
    rows: list[tuple[str, str, str, bool | None]] = [
        ("mediated / baseline", f"{ratio:.3f}x", f">= {TARGET_RATIO:.1f}x", ratio >= TARGET_RATIO)
    ]
    if biggest.idle >= 1000:
        rel = median(biggest.mediated) / median(small.mediated)
        rows.append(
            (
                f"{biggest.domains} domains vs 2: calls/s",
                f"{rel:.3f}x",
                f">= {TARGET_SCALE:.2f}x",
                rel >= TARGET_SCALE,
            )
        )
        boot = median(biggest.boot_s)
        rows.append(
            (
                f"boot of {biggest.domains} domains",
                f"{boot:.3f} s",
                f"< {TARGET_BOOT_S:.0f} s",
                boot < TARGET_BOOT_S,
            )
        )
    else:
        rows.append(("1000 idle domains: calls/s, boot", "not measured", "-", None))
    per = o.memory.bytes_per_domain
    rows.append(
        (
            "memory per idle domain",
            f"{per / 1024:.1f} KiB",
            f"< {TARGET_BYTES // 1024} KiB",
            per < TARGET_BYTES,
        )
    )
    return rows


def to_json(o: Outcome) -> dict[str, Any]:
    """The ``--json`` document (see the module docstring for the keys of per-size maps)."""
    s = o.settings
    sizes = o.sizes
    small = sizes["2"]
    base = median(small.baseline)
    med = median(small.mediated)
    scale = {k: median(r.mediated) for k, r in sizes.items()}
    scale_baseline = {k: median(r.baseline) for k, r in sizes.items()}
    norm_2 = scale["2"] / scale_baseline["2"]
    return {
        "scenario": "ipc",
        "baseline_rtt_per_s": base,
        "mediated_rtt_per_s": med,
        "ratio": med / base,
        "baseline_local_rtt_per_s": median(small.local) if small.local else None,
        "ratio_local": med / median(small.local) if small.local else None,
        "scale": scale,
        "scale_keys": "total domains in the TRE: client + echo + idle",
        "idle_domains": {k: r.idle for k, r in sizes.items()},
        "scale_vs_2": {k: v / scale["2"] for k, v in scale.items()},
        "scale_baseline": scale_baseline,
        "scale_vs_2_normalized": {k: (scale[k] / scale_baseline[k]) / norm_2 for k in sizes},
        "boot_s": {k: median(r.boot_s) for k, r in sizes.items()},
        "open_tre_s": {k: median(r.open_s) for k, r in sizes.items()},
        "shutdown_s": {k: median(r.shutdown_s) for k, r in sizes.items()},
        "bytes_per_domain": o.memory.bytes_per_domain,
        "bytes_per_domain_snapshot": o.memory.snapshot_bytes_per_domain,
        "memory_domains": o.memory.domains,
        "memory_by_package": o.memory.by_package,
        "memory_top": [
            {"site": site, "bytes_per_domain": size, "blocks_per_domain": count}
            for site, size, count in o.memory.top
        ],
        "samples": {
            k: {
                "baseline": r.baseline,
                "baseline_local": r.local,
                "mediated": r.mediated,
                "boot_s": r.boot_s,
                "open_tre_s": r.open_s,
                "shutdown_s": r.shutdown_s,
            }
            for k, r in sizes.items()
        },
        "targets": [
            {"target": name, "measured": value, "goal": goal, "met": met}
            for name, value, goal, met in _targets(o)
        ],
        **environment(),
        "quick": s.quick,
        "rounds": s.rounds,
        "calls_per_round": s.calls,
        "warmup_calls": s.warmup_calls,
        "boot_repeats": s.boot_repeats,
        "statistic": "median of rounds",
        "baseline_capacity": s.baseline_capacity,
        "baseline_local_codec": "ipc.LocalCodec" if small.local else None,
        "quotas": QUOTAS,
        "deadline_s": DEADLINE,
        "elapsed_s": o.elapsed_s,
    }


def render(o: Outcome) -> str:
    s = o.settings
    sizes = o.sizes
    small = sizes["2"]
    base = median(small.baseline)
    rows: list[tuple[str, ...]] = [
        (
            f"baseline: 2 trio tasks, memory channels (capacity {s.baseline_capacity})",
            f"{base:.0f}",
            f"{min(small.baseline):.0f}-{max(small.baseline):.0f}",
            "1.000x",
            "",
        )
    ]
    if small.local:
        local = median(small.local)
        rows.append(
            (
                "baseline-local: same, with the kernel's codec (ipc.LocalCodec)",
                f"{local:.0f}",
                f"{min(small.local):.0f}-{max(small.local):.0f}",
                f"{local / base:.3f}x",
                "",
            )
        )
    med_2 = median(small.mediated)
    for key, res in sizes.items():
        rate = median(res.mediated)
        what = "mediated: client -> echo" + (f", +{res.idle} idle" if res.idle else "")
        rows.append(
            (
                f"{what} ({key} domains)",
                f"{rate:.0f}",
                f"{min(res.mediated):.0f}-{max(res.mediated):.0f}",
                f"{rate / base:.3f}x",
                f"{rate / med_2:.3f}x",
            )
        )
    mode = "quick" if s.quick else "full"
    calls_table = render_table(
        ("round trips", "calls/s", "range", "vs baseline", "vs 2 domains"),
        rows,
        title=(
            f"ipc ({mode}): median of {s.rounds} alternating rounds x {s.calls} calls; "
            "rate limits 1e9/s, burst 1e9 (never throttle)"
        ),
    )
    norm_rows = []
    for key, res in sizes.items():
        b, m = median(res.baseline), median(res.mediated)
        loc = f"{m / median(res.local):.3f}" if res.local else "-"
        norm_rows.append((f"{key} domains", f"{b:.0f}", f"{m:.0f}", f"{m / b:.3f}", loc))
    norm_table = render_table(
        (
            "same-window check",
            "baseline calls/s",
            "mediated calls/s",
            "mediated/baseline",
            "mediated/baseline-local",
        ),
        norm_rows,
    )
    boot_table = render_table(
        ("boot (median)", "boot_seconds", "open_tre enter", "per domain", "shutdown"),
        (
            (
                f"{key} domains ({res.idle} idle)",
                f"{median(res.boot_s):.4f} s",
                f"{median(res.open_s):.4f} s",
                f"{median(res.boot_s) / res.domains * 1e6:.0f} us",
                f"{median(res.shutdown_s):.4f} s",
            )
            for key, res in sizes.items()
        ),
    )
    mem = o.memory
    mem_table = render_table(
        (f"memory per idle domain ({mem.domains} booted, tracemalloc)", "bytes/domain"),
        [
            ("traced memory difference", fmt_bytes(mem.bytes_per_domain)),
            ("snapshot difference (gc.collect first)", fmt_bytes(mem.snapshot_bytes_per_domain)),
            *((f"  by package: {name}", f"{size:.0f} B") for name, size in mem.by_package.items()),
            *((f"  by line: {site}", f"{size:.0f} B") for site, size, _ in mem.top[:8]),
        ],
    )
    target_table = render_table(
        ("target", "measured", "goal", "status"),
        (
            (name, value, goal, "n/a" if met is None else ("met" if met else "MISSED"))
            for name, value, goal, met in _targets(o)
        ),
    )
    return "\n\n".join((calls_table, norm_table, boot_table, mem_table, target_table))


# --- command line ----------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not counts or any(c < 0 or c > 100_000 for c in counts):
        raise argparse.ArgumentTypeError("idle counts must be 0..100000")
    return counts


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Kernel-mediated call rate vs a bare trio baseline, scaling with idle domains, "
            "boot time and memory per domain."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="short run (under a minute)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, run each loop under cProfile and print the top functions to stderr",
    )
    parser.add_argument(
        "--baseline-capacity",
        type=int,
        choices=(0, 1),
        default=None,
        help=f"memory channel capacity of the baseline (default {BASELINE_CAPACITY})",
    )
    tuning = parser.add_argument_group(
        "overrides (for smoke tests; figures are not comparable with standard runs)"
    )
    tuning.add_argument("--calls", type=_positive, help="calls per timed round")
    tuning.add_argument("--rounds", type=_positive, help="alternating rounds per TRE size")
    tuning.add_argument(
        "--domains",
        type=_counts,
        metavar="N[,N...]",
        help="idle domain counts (default 10,100,1000)",
    )
    tuning.add_argument("--boot-repeats", type=_positive, help="boots timed per TRE size")
    tuning.add_argument("--warmup", type=int, help="untimed warm-up calls per TRE size")
    tuning.add_argument(
        "--no-local-baseline",
        action="store_true",
        help="skip the baseline that uses the kernel's codec (ipc.LocalCodec)",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    s = QUICK if args.quick else FULL
    changes: dict[str, Any] = {
        "profile": bool(args.profile),
        "local_baseline": not args.no_local_baseline,
    }
    for name, attr in (
        ("calls", "calls"),
        ("rounds", "rounds"),
        ("boot_repeats", "boot_repeats"),
        ("baseline_capacity", "baseline_capacity"),
    ):
        value = getattr(args, name)
        if value is not None:
            changes[attr] = value
    if args.warmup is not None:
        changes["warmup_calls"] = max(0, args.warmup)
    if args.domains is not None:
        idle = tuple(c for c in args.domains if c > 0)
        changes["idle_counts"] = idle
        changes["memory_domains"] = max(idle, default=10)
    return dataclasses.replace(s, **changes)


def main(argv: Sequence[str], prog: str = "python -m benchmarks ipc") -> int:
    args = build_parser(prog).parse_args(list(argv))
    settings = settings_from_args(args)
    started = time.perf_counter()
    outcome = run(settings)
    if outcome.profile is not None:
        sys.stderr.write(outcome.profile)
        sys.stderr.flush()
    outcome.elapsed_s = time.perf_counter() - started
    print(render(outcome))
    if args.json:
        write_json(args.json, to_json(outcome))
        print(f"\nJSON written to {args.json}")
    print(f"\ntotal elapsed: {outcome.elapsed_s:.1f} s")
    return 0


SCENARIO: tuple[str, Callable[[Sequence[str], str], int]] = (
    "kernel-mediated IPC vs a bare trio baseline; scaling, boot time, memory per domain",
    main,
)
