"""``--profile``: each loop once under cProfile, where the time goes, by package and function.

Run after the timed rounds, never mixed with them: cProfile slows Python code several
times over, so these figures explain the rates, they do not replace them. C code that
cProfile does not see as a call of its own (msgpack's Cython ``Packer.pack`` and
``unpackb``, for one) counts in the tottime of the Python function that called it.
"""

from __future__ import annotations

import cProfile
import functools
import gc
import io
import math
import pstats
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tre.testing import open_test_tre

from ._loops import HOST_CALLS, TAG, Baseline, domain_specs, mediated_round
from ._report import package_of, progress, render_table, short_path

__all__ = [
    "Key",
    "profile_loops",
    "profile_report",
    "profiled",
    "profiled_sync",
    "stack_group",
    "us_per_call",
]

#: pstats' key of a function: (file, line, name)
_Key = tuple[str, int, str]
Key = _Key


def stack_group(
    key: _Key,
    c_groups: Sequence[tuple[str, str]],
    py_groups: Sequence[tuple[str, str]],
    generated: str | None = None,
) -> str:
    """Which part of the stack a profiled function belongs to: a C call by the first
    ``(needle, group)`` of ``c_groups`` whose needle is in its name (else builtins), a
    Python one by the first ``(prefix, group)`` of ``py_groups`` its short path starts
    with, then ``generated`` for attrs-generated code (when given), else its package."""
    filename, _, name = key
    if filename == "~":
        for needle, group in c_groups:
            if needle in name:
                return group
        return "builtins (C)"
    path = short_path(filename)
    for prefix, group in py_groups:
        if path.startswith(prefix):
            return group
    if generated is not None and filename.startswith("<attrs generated"):
        return generated
    return package_of(filename)


async def profiled(loop: Callable[[], Awaitable[object]]) -> cProfile.Profile:
    """One run of ``loop()`` under cProfile (after a garbage collection)."""
    gc.collect()
    prof = cProfile.Profile()
    prof.enable()
    try:
        await loop()
    finally:
        prof.disable()
    return prof


def profiled_sync(fn: Callable[[], object]) -> cProfile.Profile:
    """One call of ``fn()`` under cProfile (after a garbage collection)."""
    gc.collect()
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    return prof


def us_per_call(fn: Callable[[], object], n: int, repeat: int = 3) -> float:
    """Microseconds per call of ``fn``: the best of ``repeat`` loops of ``n`` calls."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def _group(key: _Key) -> str:
    """Which part of the stack a profiled function belongs to."""
    filename, _, name = key
    if filename == "~":
        if "msgpack" in name or "Packer" in name:
            return "msgpack (C)"
        return "builtins (C)"
    return package_of(filename)


def profile_report(
    prof: cProfile.Profile,
    title: str,
    calls: int,
    top: int,
    group: Callable[[_Key], str] | None = None,
) -> str:
    """Tottime summed by package (or by ``group(key)``), then the ``top`` functions by
    tottime."""
    group = _group if group is None else group
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    raw: dict[_Key, tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    groups: dict[str, float] = {}
    for key, entry in raw.items():
        name = group(key)
        groups[name] = groups.get(name, 0.0) + entry[2]
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


async def profile_loops(
    calls: int, warmup: int, capacity: int, baselines: Sequence[Baseline]
) -> str:
    """Profile the mediated loop (2-domain TRE, top 25 functions) and each baseline (the
    headline's top 15, the others' top 10), ``calls`` calls each after ``warmup``."""
    progress(TAG, f"profile: {calls} calls of each loop under cProfile")
    async with open_test_tre(*domain_specs(0), host_calls=HOST_CALLS) as t:
        loops: list[tuple[str, Callable[[int], Awaitable[float]], int]] = [
            ("mediated (client -> kernel -> echo)", lambda k: mediated_round(t, k), 25)
        ]
        loops += [
            (base.label, base.bound(capacity), 15 if base.headline else 10) for base in baselines
        ]
        report = ""
        for title, loop, top in loops:
            await loop(warmup or 100)
            report += profile_report(
                await profiled(functools.partial(loop, calls)), title, calls, top
            )
    return report
