"""The ``attest`` scenario's settings and measurement: two TREs, interleaved rounds.

The results here are raw samples (operations/s of every loop in every round);
:mod:`benchmarks._attest_results` turns them into the tables and the JSON.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import trio

import tre
from tre.testing import open_test_tre

from ._attest_loops import (
    EVIDENCE_POOL,
    HOST_CALLS,
    PAYLOADS,
    TAG,
    Fixture,
    Loop,
    RawKeys,
    bare_aead_round,
    bare_session_round,
    count_signature_checks,
    evidence_round,
    make_fixture,
    plain_call_round,
    prepare_session,
    raw_sign_round,
    raw_verify_round,
    session_round,
    session_specs,
    verify_round,
)
from ._loops import BASELINE_CAPACITY
from ._report import progress
from ._rounds import interleaved_rounds, sync_round

__all__ = ["FULL", "QUICK", "LoopSpec", "Outcome", "Settings", "calls_of", "loop_specs", "run"]


@dataclasses.dataclass(frozen=True)
class Settings:
    quick: bool
    #: interleaved rounds (every loop once per round, in a rotating order)
    rounds: int
    #: calls per timed round of the evidence and raw sign loops
    evidence_calls: int
    #: verifications per timed round (the raw loop makes this many sets of checks)
    verify_calls: int
    #: round trips per timed round of every session loop
    session_calls: int
    #: untimed warm-up run of every loop before the rounds, as a fraction of its calls
    warmup: float = 0.1
    payloads: tuple[int, ...] = PAYLOADS
    baseline_capacity: int = BASELINE_CAPACITY
    profile: bool = False


QUICK = Settings(quick=True, rounds=5, evidence_calls=4_000, verify_calls=400, session_calls=8_000)
FULL = Settings(
    quick=False, rounds=9, evidence_calls=12_000, verify_calls=1_200, session_calls=24_000
)


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    """One measured loop. ``op`` is ``evidence``, ``verify`` or ``session``; ``side`` what
    runs it (``tre``, ``raw``, ``extra``)."""

    name: str
    op: str
    side: str
    size: int | None = None


def loop_specs(s: Settings) -> list[LoopSpec]:
    """Every loop of a round, in the order of round 1 (later rounds rotate it)."""
    loops = [
        LoopSpec("evidence", "evidence", "tre"),
        LoopSpec("raw_sign", "evidence", "raw"),
        LoopSpec("raw_sign_sig", "evidence", "extra"),
        LoopSpec("verify", "verify", "tre"),
        LoopSpec("raw_verify", "verify", "raw"),
    ]
    for size in s.payloads:
        loops += [
            LoopSpec(f"session_{size}", "session", "tre", size),
            LoopSpec(f"bare_aead_{size}", "session", "raw", size),
            LoopSpec(f"bare_session_{size}", "session", "extra", size),
            LoopSpec(f"plain_call_{size}", "session", "extra", size),
        ]
    return loops


def calls_of(s: Settings, op: str) -> int:
    return {"evidence": s.evidence_calls, "verify": s.verify_calls}.get(op, s.session_calls)


@dataclasses.dataclass
class Outcome:
    settings: Settings
    loops: list[LoopSpec]
    #: loop name -> operations/s of each round
    rates: dict[str, list[float]]
    fixture: Fixture
    #: the signature checks one verify_evidence really made (counted under cProfile)
    observed_checks: dict[str, int]
    #: seconds: the two ``open_tre`` enters and their boot_seconds
    open_s: dict[str, float]
    boot_s: dict[str, float]
    profile: str | None = None
    #: the --profile run's step timings (see benchmarks._attest_profile)
    anatomy: dict[str, Any] | None = None
    elapsed_s: float = 0.0


def _loop(
    spec: LoopSpec,
    evidence_tre: tre.TRE,
    session_tre: tre.TRE,
    fx: Fixture,
    raw: RawKeys,
    s: Settings,
) -> Loop:
    """``loop(n) -> seconds`` for ``spec``."""
    size = spec.size or 0
    capacity = s.baseline_capacity

    sync = sync_round
    loops: dict[str, Loop] = {
        "evidence": lambda n: sync(evidence_round, evidence_tre, fx, n),
        "raw_sign": lambda n: sync(raw_sign_round, raw, raw.message, n),
        "raw_sign_sig": lambda n: sync(raw_sign_round, raw, raw.sig_message, n),
        "verify": lambda n: sync(verify_round, fx, n),
        "raw_verify": lambda n: sync(raw_verify_round, fx, n),
        f"session_{size}": lambda n: session_round(session_tre, size, n),
        f"bare_aead_{size}": lambda n: bare_aead_round(size, n, capacity),
        f"bare_session_{size}": lambda n: bare_session_round(size, n, capacity),
        f"plain_call_{size}": lambda n: plain_call_round(session_tre, size, n),
    }
    return loops[spec.name]


async def _rounds(bound: list[tuple[LoopSpec, Loop]], s: Settings) -> dict[str, list[float]]:
    """Every loop once per round, rotating (see :func:`benchmarks._rounds.interleaved_rounds`)."""
    return await interleaved_rounds(TAG, bound, s.rounds, s.warmup, lambda op: calls_of(s, op))


async def _run(s: Settings) -> Outcome:
    from ._attest_profile import profile_attest

    opening = time.perf_counter()
    async with tre.open_tre() as evidence_tre:
        open_evidence = time.perf_counter() - opening
        opening = time.perf_counter()
        async with open_test_tre(*session_specs(), host_calls=HOST_CALLS) as session_tre:
            open_session = time.perf_counter() - opening
            progress(
                TAG,
                f"booted: default TRE ({len(evidence_tre.domains())} domains) in "
                f"{open_evidence:.3f} s, session TRE in {open_session:.3f} s",
            )
            fx = make_fixture(evidence_tre)
            observed = count_signature_checks(fx)
            progress(
                TAG,
                f"evidence {fx.evidence_bytes} B (payload {fx.payload_bytes} B, Sig_structure "
                f"{fx.sig_structure_bytes} B, {len(fx.domains)} nested tokens); verify needs "
                f"{len(fx.checks)} signature checks, makes {observed['total']}",
            )
            await prepare_session(session_tre)
            progress(TAG, "attested session sclient <-> sserver open")
            raw = RawKeys(fx)
            loops = loop_specs(s)
            bound = [(spec, _loop(spec, evidence_tre, session_tre, fx, raw, s)) for spec in loops]
            rates = await _rounds(bound, s)
            outcome = Outcome(
                s,
                loops,
                rates,
                fx,
                observed,
                {"evidence_tre": open_evidence, "session_tre": open_session},
                {
                    "evidence_tre": evidence_tre.boot_seconds,
                    "session_tre": session_tre.boot_seconds,
                },
            )
            if s.profile:
                outcome.profile, outcome.anatomy = await profile_attest(
                    evidence_tre, session_tre, fx, raw, s
                )
    return outcome


def run(s: Settings) -> Outcome:
    """Run the scenario (its own ``trio.run``); progress lines go to stderr."""
    progress(
        TAG,
        f"{'quick' if s.quick else 'full'} run: {s.rounds} interleaved rounds of "
        f"{s.evidence_calls} evidence/raw signs, {s.verify_calls} verifications/raw check "
        f"sets, {s.session_calls} session round trips per loop "
        f"({'/'.join(map(str, s.payloads))} B); evidence pool {EVIDENCE_POOL}; pid {os.getpid()}",
    )
    return trio.run(_run, s)
