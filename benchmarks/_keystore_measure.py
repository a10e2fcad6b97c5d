"""The ``keystore`` scenario's settings and measurement: the device, interleaved rounds.

The results here are raw samples (calls/s of every loop in every round);
:mod:`benchmarks._keystore_results` turns them into the table and the JSON.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

import tre

from ._keystore_loops import (
    BENCH_ID,
    BENCH_TIMEOUT,
    MESSAGE_BYTES,
    PAYLOADS,
    POLICIES,
    TAG,
    WRITE_BATCH,
    Loop,
    RawCrypto,
    RawDatabase,
    make_device,
    raw_seal_round,
    raw_sign_round,
    raw_unseal_round,
    raw_write_round,
)
from ._report import progress
from ._rounds import interleaved_rounds, sync_round

__all__ = ["FULL", "QUICK", "LoopSpec", "Outcome", "Settings", "filesystem_of", "loop_specs", "run"]


@dataclasses.dataclass(frozen=True)
class Settings:
    quick: bool
    #: interleaved rounds (every loop once per round, in a rotating order)
    rounds: int
    #: calls per timed round of each sign loop
    sign_calls: int
    #: calls per timed round of each seal and unseal loop
    seal_calls: int
    #: durable writes per timed round of each write loop
    write_calls: int
    #: keys written between two (untimed) clean-ups
    write_batch: int = WRITE_BATCH
    #: untimed warm-up run of every loop before the rounds, as a fraction of its calls
    warmup: float = 0.1
    payloads: tuple[int, ...] = PAYLOADS
    policies: tuple[str, ...] = POLICIES
    profile: bool = False
    #: where the temporary factory, device and raw database go (None: the system default)
    directory: str | None = None


QUICK = Settings(quick=True, rounds=5, sign_calls=10_000, seal_calls=50_000, write_calls=256)
FULL = Settings(quick=False, rounds=9, sign_calls=40_000, seal_calls=200_000, write_calls=1024)


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    """One measured loop. ``side`` is ``keystore`` (inside ``ksbench``), ``raw`` or
    ``raw_inline`` (durable writes without the thread hop)."""

    name: str
    op: str  # sign, seal, unseal, write
    side: str
    size: int | None = None
    policy: str | None = None


def loop_specs(s: Settings) -> list[LoopSpec]:
    """Every loop of a round, in the order of round 1 (later rounds rotate it)."""
    loops = [LoopSpec("sign", "sign", "keystore"), LoopSpec("raw_sign", "sign", "raw")]
    for size in s.payloads:
        for op in ("seal", "unseal"):
            loops.append(LoopSpec(f"raw_{op}_{size}", op, "raw", size))
            loops += [LoopSpec(f"{op}_{size}_{p}", op, "keystore", size, p) for p in s.policies]
    loops += [
        LoopSpec("write", "write", "keystore"),
        LoopSpec("raw_write", "write", "raw"),
        LoopSpec("raw_write_inline", "write", "raw_inline"),
    ]
    return loops


def calls_of(s: Settings, op: str) -> int:
    return {"sign": s.sign_calls, "seal": s.seal_calls, "unseal": s.seal_calls}.get(
        op, s.write_calls
    )


@dataclasses.dataclass
class Outcome:
    settings: Settings
    loops: list[LoopSpec]
    #: loop name -> calls/s of each round
    rates: dict[str, list[float]]
    #: seconds: factory_init + provision; the open_tre enter; its boot_seconds
    provision_s: float
    open_s: float
    boot_s: float
    #: the filesystem type the device and the raw database live on (e.g. ext4, tmpfs)
    filesystem: str
    #: keys the domain held at the end (its signing key; every written key was deleted)
    keys_left: int
    raw_rows_left: int
    profile: str | None = None
    #: the --profile run's step timings (see benchmarks._keystore_profile)
    anatomy: dict[str, Any] | None = None
    elapsed_s: float = 0.0


def filesystem_of(path: Path) -> str:
    """The type of the filesystem holding ``path`` (Linux: /proc/self/mounts), or "?"."""
    try:
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "?"
    target = str(path.resolve())
    best, kind = "", "?"
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind


class _Runner:
    """Builds ``loop(n) -> seconds`` for every :class:`LoopSpec` against one booted TRE."""

    def __init__(self, t: tre.TRE, raw: RawCrypto, db: RawDatabase, s: Settings) -> None:
        self.t = t
        self.raw = raw
        self.db = db
        self.s = s
        self.public = b""
        self._prefix = 0

    async def _call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = await self.t.call(BENCH_ID, method, body, timeout=BENCH_TIMEOUT)
        return reply

    def _labels(self) -> str:
        """A fresh label prefix for one write round (labels are never reused)."""
        self._prefix += 1
        return f"r{self._prefix}"

    async def _sign(self, n: int) -> float:
        reply = await self._call("sign", {"n": n, "message": self.raw.message})
        if not tre.verify_ed25519(self.public, self.raw.message, reply["last"]):
            raise RuntimeError("keystore sign: the last signature does not verify")
        return float(reply["elapsed"])

    async def _seal(self, op: str, size: int, policy: str, n: int) -> float:
        reply = await self._call(op, {"n": n, "size": size, "policy": policy})
        if reply["ok"] is not True:
            raise RuntimeError(f"keystore {op} ({size} B, {policy}): wrong result")
        return float(reply["elapsed"])

    async def _write(self, n: int) -> float:
        prefix = self._labels()
        reply = await self._call("write", {"n": n, "prefix": prefix, "batch": self.s.write_batch})
        return float(reply["elapsed"])

    async def _raw_write(self, n: int, thread: bool) -> float:
        return await raw_write_round(self.db, self._labels(), n, self.s.write_batch, thread=thread)

    def loop(self, spec: LoopSpec) -> Loop:
        raw = self.raw
        size = spec.size or 0

        sync_loop = sync_round
        if spec.side == "keystore":
            if spec.op == "sign":
                return self._sign
            if spec.op == "write":
                return self._write
            policy = spec.policy or POLICIES[0]
            return lambda n: self._seal(spec.op, size, policy, n)
        if spec.op == "sign":
            return lambda n: sync_loop(raw_sign_round, raw, n)
        if spec.op == "seal":
            return lambda n: sync_loop(raw_seal_round, raw, size, n)
        if spec.op == "unseal":
            return lambda n: sync_loop(raw_unseal_round, raw, size, n)
        return lambda n: self._raw_write(n, spec.side == "raw")


async def _rounds(runner: _Runner, s: Settings, loops: list[LoopSpec]) -> dict[str, list[float]]:
    """Every loop once per round, rotating (see :func:`benchmarks._rounds.interleaved_rounds`)."""
    bound = [(spec, runner.loop(spec)) for spec in loops]
    return await interleaved_rounds(TAG, bound, s.rounds, s.warmup, lambda op: calls_of(s, op))


async def _run(s: Settings, root: Path) -> Outcome:
    from ._keystore_profile import profile_keystore

    started = time.perf_counter()
    state = make_device(root)
    provision_s = time.perf_counter() - started
    filesystem = filesystem_of(state)
    progress(TAG, f"device provisioned in {provision_s:.3f} s ({root}, {filesystem})")
    raw = RawCrypto()
    db = RawDatabase(root / "raw.db")
    loops = loop_specs(s)
    try:
        opening = time.perf_counter()
        async with tre.open_tre(state=state) as t:
            open_s = time.perf_counter() - opening
            progress(TAG, f"booted: open_tre {open_s:.3f} s (boot_seconds {t.boot_seconds:.4f})")
            runner = _Runner(t, raw, db, s)
            prepared = await runner._call("prepare", {})
            runner.public = prepared["public"]
            rates = await _rounds(runner, s, loops)
            keys_left = int((await runner._call("prepare", {}))["keys"])
            boot_s = t.boot_seconds
        raw_rows = db.count()
        outcome = Outcome(
            s, loops, rates, provision_s, open_s, boot_s, filesystem, keys_left, raw_rows
        )
        if s.profile:
            outcome.profile, outcome.anatomy = await profile_keystore(state, root, s)
    finally:
        db.close()
    return outcome


def run(s: Settings) -> Outcome:
    """Run the scenario (its own ``trio.run``) in a temporary folder removed afterwards;
    progress lines go to stderr."""
    progress(
        TAG,
        f"{'quick' if s.quick else 'full'} run: {s.rounds} interleaved rounds of "
        f"{s.sign_calls} signs ({MESSAGE_BYTES} B), {s.seal_calls} seals and unseals "
        f"({'/'.join(map(str, s.payloads))} B, {'/'.join(s.policies)}), {s.write_calls} "
        f"durable writes (batches of {s.write_batch}); keystore vs raw primitive; "
        f"sqlite {sqlite3.sqlite_version}, pid {os.getpid()}",
    )
    with tempfile.TemporaryDirectory(prefix="tre-ksbench-", dir=s.directory) as tmp:
        return trio.run(_run, s, Path(tmp))
