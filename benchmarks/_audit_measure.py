"""The ``audit`` scenario's fixtures, loops and rounds.

Three parts, one run:

1. **appends**: a device provisioned in a temporary folder (default config), opened with
   ``Device.open`` and its log with ``AuditLog.open``; the log's writer (``serve``, the
   group commit of tre/_audit.py) runs in a nursery and ``c`` tasks (1 and 16) call
   ``await audit.append("tre", kind, body)`` (returns once the entry is durable). Against
   it, raw SQLite inserts of a row shaped like an audit entry into a separate file with
   the TRE's connection settings and audit schema (``tre._store._connect``: WAL,
   ``synchronous=FULL``), one insert per committed transaction, through
   ``trio.to_thread.run_sync`` under a ``CapacityLimiter(1)`` as ``AsyncStore`` does. Each
   loop once per round, in an order that rotates each round; rates are medians of rounds.
   After each log loop an untimed ``flush`` writes the pending checkpoint, so no loop
   pays for another's trailing transaction.
2. **proofs**: a separate SQLite file with the log's tables (``AUDIT_SCHEMA``) filled in
   bulk transactions (``synchronous=OFF`` while building: durability does not matter for
   read timing) with random 32-byte leaf hashes and the subtree hashes the log's own
   :func:`attestation.append_leaf` makes; proofs are generated through the log's
   :class:`tre._audit_tables.SqlNodeStore` (one indexed lookup per subtree, as ``tre
   audit prove`` does) and verified with :func:`attestation.verify_inclusion` /
   :func:`attestation.verify_consistency` (pure compute). The tree grows to each size in
   turn (1e3, 1e4, 1e5[, 1e6]); at each, random indices / old sizes are timed one call at
   a time.
3. **integrity**: :func:`benchmarks._integrity_measure.run`, unchanged.
"""

from __future__ import annotations

import dataclasses
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import trio

import attestation
import tre
from tre._audit import AuditLog
from tre._audit_crypto import TRE_DOMAIN
from tre._audit_tables import SqlNodeStore
from tre._device import Device
from tre._factory import factory_init
from tre._provision import provision
from tre._store import AUDIT_SCHEMA, _connect

from . import _integrity_measure
from ._report import progress

__all__ = [
    "APPEND_LOOPS",
    "FULL",
    "QUICK",
    "Outcome",
    "ProofSamples",
    "Settings",
    "run",
]

TAG = "audit"

#: appender concurrencies measured through the log
CONCURRENCY = (1, 16)
#: the raw loop's name among the append loops
RAW = "raw"
APPEND_LOOPS = [f"log_c{c}" for c in CONCURRENCY] + [RAW]
#: what every appended entry carries (a small event body, as hooks record)
BODY = {"subject": "tre", "detail": "benchmark entry " + "x" * 40}


@dataclasses.dataclass(frozen=True)
class Settings:
    quick: bool
    #: interleaved rounds of the append loops
    rounds: int
    #: appends (and raw inserts) per loop per round, per concurrency
    appends: dict[int, int]
    raw_inserts: int
    #: log sizes at which proofs are timed (nested: the tree grows through them)
    sizes: tuple[int, ...]
    #: timed proofs of each kind per size
    proof_samples: int
    integrity: _integrity_measure.Settings
    directory: str | None = None


QUICK = Settings(
    quick=True,
    rounds=5,
    appends={1: 100, 16: 800},
    raw_inserts=100,
    sizes=(1_000, 10_000, 100_000),
    proof_samples=300,
    integrity=_integrity_measure.QUICK,
)
FULL = Settings(
    quick=False,
    rounds=11,
    appends={1: 300, 16: 3000},
    raw_inserts=300,
    sizes=(1_000, 10_000, 100_000, 1_000_000),
    proof_samples=2000,
    integrity=_integrity_measure.FULL,
)


@dataclasses.dataclass
class ProofSamples:
    """Microseconds per call, one value per random index / old size."""

    inclusion_generate: list[float]
    inclusion_verify: list[float]
    consistency_generate: list[float]
    consistency_verify: list[float]
    proof_hashes: list[int]  # hashes per inclusion proof (log2 n, about)


@dataclasses.dataclass
class Outcome:
    settings: Settings
    #: loop -> entries (or rows) per second, one per round
    append_rates: dict[str, list[float]]
    #: size -> samples
    proofs: dict[int, ProofSamples]
    build_s: dict[int, float]
    integrity: _integrity_measure.Outcome
    log_size: int = 0
    elapsed_s: float = 0.0


# --- 1. appends ----------------------------------------------------------------------------


def _provision(folder: Path) -> Path:
    factory = folder / "factory"
    factory_init(factory)
    state = folder / "state"
    provision(state, factory, config=tre.default_config())
    return state


class RawDatabase:
    """A separate SQLite file with the TRE's connection settings and the audit schema."""

    def __init__(self, path: Path) -> None:
        self.conn = _connect(path)
        self.conn.executescript(AUDIT_SCHEMA)
        self.limiter = trio.CapacityLimiter(1)
        self.seq = 0
        mode = self.conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = self.conn.execute("PRAGMA synchronous").fetchone()[0]
        if (mode, sync) != ("wal", 2):
            raise RuntimeError(f"raw database: unexpected settings {mode}, {sync}")

    def insert(self) -> None:
        """One row shaped like an audit entry, in its own committed transaction."""
        row = (
            self.seq,
            time.time(),
            TRE_DOMAIN,
            "bench",
            os.urandom(12),
            os.urandom(96),
            os.urandom(32),
            os.urandom(32),
        )
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO audit_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self.seq += 1

    def close(self) -> None:
        self.conn.close()


async def _log_round(audit: AuditLog, concurrency: int, n: int) -> float:
    """``n`` durable appends from ``concurrency`` tasks; entries per second."""
    per_task = max(1, n // concurrency)

    async def appender() -> None:
        for _ in range(per_task):
            await audit.append(TRE_DOMAIN, "bench", BODY)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(appender)
    elapsed = time.perf_counter() - start
    await audit.flush()  # the trailing checkpoint, untimed
    return per_task * concurrency / elapsed


async def _raw_round(db: RawDatabase, n: int) -> float:
    run_sync, insert, limiter = trio.to_thread.run_sync, db.insert, db.limiter
    start = time.perf_counter()
    for _ in range(n):
        await run_sync(insert, limiter=limiter)
    return n / (time.perf_counter() - start)


def _rotations(names: list[str], rounds: int) -> Iterator[tuple[int, list[str]]]:
    for i in range(rounds):
        k = i % len(names)
        yield i, names[k:] + names[:k]


async def _appends(settings: Settings, folder: Path) -> tuple[dict[str, list[float]], int]:
    progress(TAG, "provisioning a device (default config) for the append loops")
    state = await trio.to_thread.run_sync(_provision, folder / "device")
    device = await Device.open(state)
    raw = RawDatabase(folder / "raw.db")
    rates: dict[str, list[float]] = {name: [] for name in APPEND_LOOPS}
    try:
        audit = await AuditLog.open(device)
        async with trio.open_nursery() as nursery:
            await nursery.start(audit.serve)
            # warm-up: takes in the provisioning's events, first-call costs
            for c in CONCURRENCY:
                await _log_round(audit, c, max(c, settings.appends[c] // 10))
            await _raw_round(raw, max(1, settings.raw_inserts // 10))
            for i, order in _rotations(APPEND_LOOPS, settings.rounds):
                for name in order:
                    if name == RAW:
                        rate = await _raw_round(raw, settings.raw_inserts)
                    else:
                        c = int(name.removeprefix("log_c"))
                        rate = await _log_round(audit, c, settings.appends[c])
                    rates[name].append(rate)
                progress(
                    TAG,
                    f"appends round {i + 1}/{settings.rounds}: "
                    + ", ".join(f"{n} {rates[n][-1]:.0f}/s" for n in APPEND_LOOPS),
                )
            await audit.aclose()
            size = audit.size
            nursery.cancel_scope.cancel()
    finally:
        raw.close()
        await device.close()
    return rates, size


# --- 2. proofs -----------------------------------------------------------------------------


class _TreeBuilder:
    """The log's tables in a file of their own, grown in bulk transactions."""

    CHUNK = 50_000

    def __init__(self, path: Path, rng: random.Random) -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.executescript(AUDIT_SCHEMA)
        self.frontier: list[bytes] = []
        self.size = 0
        self.rng = rng
        self.store = SqlNodeStore(self.conn)

    def grow(self, target: int) -> None:
        append_leaf, randbytes = attestation.append_leaf, self.rng.randbytes
        while self.size < target:
            end = min(target, self.size + self.CHUNK)
            entries, nodes = [], []
            for seq in range(self.size, end):
                leaf = randbytes(32)
                entries.append((seq, 0.0, TRE_DOMAIN, "bench", b"", b"", b"", leaf))
                nodes += append_leaf(self.frontier, seq, leaf)
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT INTO audit_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", entries
            )
            self.conn.executemany("INSERT INTO audit_nodes VALUES (?, ?, ?)", nodes)
            self.conn.execute("COMMIT")
            self.size = end

    def close(self) -> None:
        self.conn.close()


def _time_proofs(tree: _TreeBuilder, samples: int, rng: random.Random) -> ProofSamples:
    store, size, conn = tree.store, tree.size, tree.conn
    clock = time.perf_counter_ns
    root = attestation.merkle_root(store, size)
    if root != attestation.frontier_root(tree.frontier):
        raise RuntimeError("the stored tree's root is not the frontier's")
    out = ProofSamples([], [], [], [], [])
    conn.execute("BEGIN")  # one read snapshot, as `tre audit prove` reads
    try:
        for _ in range(samples):
            index = rng.randrange(size)
            leaf = store.subtree(0, index)
            t0 = clock()
            proof = attestation.inclusion_proof(store, index, size)
            t1 = clock()
            ok = attestation.verify_inclusion(leaf, index, size, proof, root)
            t2 = clock()
            if not ok:
                raise RuntimeError(f"inclusion proof of {index} in {size} does not verify")
            out.inclusion_generate.append((t1 - t0) / 1e3)
            out.inclusion_verify.append((t2 - t1) / 1e3)
            out.proof_hashes.append(len(proof))

            old = rng.randrange(1, size)
            old_root = attestation.merkle_root(store, old)
            t0 = clock()
            proof = attestation.consistency_proof(store, old, size)
            t1 = clock()
            ok = attestation.verify_consistency(old, size, old_root, root, proof)
            t2 = clock()
            if not ok:
                raise RuntimeError(f"consistency proof {old} -> {size} does not verify")
            out.consistency_generate.append((t1 - t0) / 1e3)
            out.consistency_verify.append((t2 - t1) / 1e3)
    finally:
        conn.execute("COMMIT")
    return out


def _proofs(settings: Settings, folder: Path) -> tuple[dict[int, ProofSamples], dict[int, float]]:
    rng = random.Random(5)  # reproducible indices, not secrets
    tree = _TreeBuilder(folder / "proofs.db", rng)
    results: dict[int, ProofSamples] = {}
    build: dict[int, float] = {}
    try:
        for size in sorted(settings.sizes):
            start = time.perf_counter()
            tree.grow(size)
            build[size] = time.perf_counter() - start
            progress(TAG, f"proofs: tree grown to {size} entries in {build[size]:.1f} s")
            _time_proofs(tree, max(1, settings.proof_samples // 10), rng)  # warm-up
            results[size] = _time_proofs(tree, settings.proof_samples, rng)
    finally:
        tree.close()
    return results, build


# --- the run -------------------------------------------------------------------------------


def run(settings: Settings) -> Outcome:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tre-bench-audit-", dir=settings.directory) as tmp:
        folder = Path(tmp)
        rates, size = trio.run(_appends, settings, folder)
        proofs, build = _proofs(settings, folder)
    progress(TAG, "integrity: the full check vs raw hashing (benchmarks._integrity_measure)")
    integrity = _integrity_measure.run(settings.integrity)
    outcome = Outcome(settings, rates, proofs, build, integrity, size)
    outcome.elapsed_s = time.perf_counter() - started
    return outcome
