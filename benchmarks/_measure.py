"""The ``ipc`` scenario's settings and measurement: boots, alternating rounds, memory, profile.

The results here are raw samples; :mod:`benchmarks._results` turns them into the table and
the JSON.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Awaitable, Callable

import trio

import tre
from tre.testing import open_test_tre

from ._loops import (
    BASELINE_CAPACITY,
    BASELINES,
    HOST_CALLS,
    RAW,
    TAG,
    Baseline,
    domain_specs,
    mediated_round,
)
from ._memory import MemoryResult, measure_memory
from ._profile import profile_loops
from ._report import progress

__all__ = ["FULL", "QUICK", "Outcome", "Settings", "SizeResult", "run"]

#: The loop name of the mediated rounds (the baselines' are :attr:`Baseline.name`).
MEDIATED = "mediated"


@dataclasses.dataclass(frozen=True)
class Settings:
    quick: bool
    #: calls per timed round (each loop)
    calls: int
    #: alternating rounds (every loop once per round) per TRE size
    rounds: int
    #: boots of each TRE size timed (the last one is the one the rounds run in)
    boot_repeats: int
    #: calls of each loop run (untimed) in each TRE before its rounds
    warmup_calls: int
    #: idle domain counts measured after the 2-domain TRE (0 is always measured first)
    idle_counts: tuple[int, ...] = (10, 100, 1000)
    #: idle domains booted for the memory measurement
    memory_domains: int = 1000
    baseline_capacity: int = BASELINE_CAPACITY
    #: names of the baselines to run; the headline (``baseline``) always runs
    baselines: tuple[str, ...] = tuple(b.name for b in BASELINES)
    profile: bool = False

    @property
    def baseline_loops(self) -> tuple[Baseline, ...]:
        return tuple(b for b in BASELINES if b is RAW or b.name in self.baselines)


QUICK = Settings(quick=True, calls=15_000, rounds=3, boot_repeats=3, warmup_calls=2_000)
FULL = Settings(quick=False, calls=60_000, rounds=7, boot_repeats=5, warmup_calls=5_000)


@dataclasses.dataclass
class SizeResult:
    """Everything measured for one TRE size."""

    idle: int
    #: loop name (``baseline``, ``baseline_ipc``, ``baseline_local``, ``mediated``) ->
    #: calls/s per round; a baseline that did not run has no entry
    rates: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    open_s: list[float] = dataclasses.field(default_factory=list)
    boot_s: list[float] = dataclasses.field(default_factory=list)
    shutdown_s: list[float] = dataclasses.field(default_factory=list)

    @property
    def domains(self) -> int:
        return self.idle + 2

    @property
    def baseline(self) -> list[float]:
        return self.rates[RAW.name]

    @property
    def mediated(self) -> list[float]:
        return self.rates[MEDIATED]


@dataclasses.dataclass
class Outcome:
    settings: Settings
    #: total domain count as a string ("2", "12", ...) -> its results
    sizes: dict[str, SizeResult]
    memory: MemoryResult
    profile: str | None
    elapsed_s: float = 0.0


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
    """Every loop once per round, in an order that rotates each round so that no loop
    always runs right after another and machine noise hits them all alike."""
    loops: list[tuple[str, Callable[[int], Awaitable[float]]]] = [
        (b.name, b.bound(s.baseline_capacity)) for b in s.baseline_loops
    ]
    loops.append((MEDIATED, lambda k: mediated_round(t, k)))
    for name, _ in loops:
        res.rates[name] = []
    if s.warmup_calls:
        for _, loop in loops:
            await loop(s.warmup_calls)
    for r in range(s.rounds):
        shift = r % len(loops)
        for name, loop in loops[shift:] + loops[:shift]:
            gc.collect()
            rate = _rate(s.calls, await loop(s.calls))
            res.rates[name].append(rate)
            progress(TAG, f"{name} round {r + 1}/{s.rounds}: {rate:.0f} calls/s ({label})")


async def _run(s: Settings) -> Outcome:
    started = time.perf_counter()
    counts = [0, *sorted({c for c in s.idle_counts if c > 0})]
    sizes: dict[str, SizeResult] = {}
    for idle in counts:
        res = await _measure_size(idle, s)
        sizes[str(res.domains)] = res
    memory = await measure_memory(s.memory_domains)
    prof = None
    if s.profile:
        prof = await profile_loops(s.calls, s.warmup_calls, s.baseline_capacity, s.baseline_loops)
    return Outcome(s, sizes, memory, prof, time.perf_counter() - started)


def run(s: Settings) -> Outcome:
    """Run the scenario (its own ``trio.run``); progress lines go to stderr."""
    names = ", ".join(b.name for b in s.baseline_loops)
    progress(
        TAG,
        f"{'quick' if s.quick else 'full'} run: {s.rounds} rounds x {s.calls} calls of each "
        f"loop ({names}, mediated), idle domains {[0, *s.idle_counts]}; "
        "rate limits at 1e9/s, burst 1e9 (never throttle)",
    )
    return trio.run(_run, s)
