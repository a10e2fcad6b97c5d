"""Interleaved timed rounds, shared by the scenarios that rotate their loops each round."""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import trio

from ._report import progress

__all__ = ["interleaved_rounds", "rate", "sync_round"]


def rate(n: int, seconds: float) -> float:
    """Calls per second (inf for a round too fast to time)."""
    return n / seconds if seconds > 0 else float("inf")


async def sync_round(fn: Any, *args: Any) -> float:
    """Run a synchronous round ``fn(*args) -> seconds`` after a trio checkpoint."""
    await trio.lowlevel.checkpoint()
    return float(fn(*args))


class _Spec(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def op(self) -> str: ...


SpecT = TypeVar("SpecT", bound=_Spec)


async def interleaved_rounds(
    tag: str,
    bound: Sequence[tuple[SpecT, Callable[[int], Awaitable[float]]]],
    rounds: int,
    warmup: float,
    calls: Callable[[str], int],
) -> dict[str, list[float]]:
    """Every loop once per round, in an order that rotates each round so that no loop
    always runs right after another and machine noise hits them all alike; ``calls(op)``
    is a loop's calls per round, ``warmup`` the fraction of them run once untimed first."""
    loops = list(bound)
    rates: dict[str, list[float]] = {spec.name: [] for spec, _ in loops}
    if warmup > 0:
        progress(tag, f"warm-up: every loop once at {warmup:.0%} of its calls (untimed)")
        for spec, loop in loops:
            await loop(max(1, int(calls(spec.op) * warmup)))
    for r in range(rounds):
        shift = r % len(loops)
        for spec, loop in loops[shift:] + loops[:shift]:
            n = calls(spec.op)
            gc.collect()
            value = rate(n, await loop(n))
            rates[spec.name].append(value)
            progress(tag, f"{spec.name} round {r + 1}/{rounds}: {value:.0f} ops/s")
    return rates
