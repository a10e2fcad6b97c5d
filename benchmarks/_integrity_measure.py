"""The ``integrity`` scenario's fixture, loops and interleaved rounds.

The fixture is a device provisioned in a temporary folder with the default config (the
four reference domains), sealed by provisioning against the code as installed; the
monitor is built exactly as ``open_tre`` builds it at boot (the manufacturer's key for the
TRE, each domain's verifying key from the installed-domains table). Nothing here writes to
the installed packages.

Loops (each call of each is one pass over every covered file):

* ``check``: :meth:`IntegrityMonitor.check_sync`, the whole check: for the TRE and each
  domain, read and verify its signed manifest, walk its folders, read every file, SHA-256
  it, compare.
* ``raw_hash``: ``hashlib.sha256(data).digest()`` over the very bytes the check reads,
  held in memory (read once, before the rounds).
* ``raw_read_hash``: the same files read again and hashed (``path.read_bytes()``), from a
  path list made once: no folder walk, no manifests.
* ``walk`` (extra, no target): only the check's listing of the covered folders
  (:func:`tre._measure.code_files`), nothing read.
* ``manifests`` (extra, no target): only reading and verifying the signed manifests.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import tre
from tre._factory import factory_init, load_factory
from tre._integrity import TRE_SCOPE, IntegrityMonitor, IntegritySettings, read_manifest
from tre._integrity_seal import domain_verify_keys
from tre._loader import resolve
from tre._measure import code_files, tre_roots
from tre._provision import provision

from ._report import progress

__all__ = ["FULL", "LOOPS", "QUICK", "Fixture", "Outcome", "Settings", "fixture", "run"]

TAG = "integrity"


@dataclasses.dataclass(frozen=True)
class Settings:
    quick: bool
    #: interleaved rounds (every loop once per round, in a rotating order)
    rounds: int
    #: passes over every file per loop per round
    reps: int


QUICK = Settings(quick=True, rounds=7, reps=5)
FULL = Settings(quick=False, rounds=21, reps=20)

#: loop name -> (side, what it is); ``tre`` has the target, ``raw`` the baselines
LOOPS: dict[str, tuple[str, str]] = {
    "check": ("tre", "IntegrityMonitor.check_sync(): manifests, walk, read, SHA-256, compare"),
    "raw_hash": ("raw", "hashlib.sha256(data).digest() over the same bytes, held in memory"),
    "raw_read_hash": ("raw", "the same files read (path.read_bytes()) and hashed, no walk"),
    "walk": ("extra", "only the check's folder walk (tre._measure.code_files), no reads"),
    "manifests": ("extra", "only reading and verifying the signed manifests (JSON + Ed25519)"),
}


@dataclasses.dataclass(frozen=True)
class Fixture:
    monitor: IntegrityMonitor
    #: every covered folder: the TRE's packages, then each domain's
    folders: dict[str, Path]
    #: every covered file and its contents, as the check reads them
    paths: list[Path]
    blobs: list[bytes]
    scopes: dict[str, int]  # scope -> files
    domains: list[str]


@dataclasses.dataclass
class Outcome:
    settings: Settings
    fixture: Fixture
    samples: dict[str, list[float]]  # loop -> seconds per pass, one per round
    mismatches: list[str]
    elapsed_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class _Device:
    state: Path
    factory: Path


def _provision(folder: Path) -> _Device:
    factory = folder / "factory"
    factory_init(factory)
    state = folder / "state"
    provision(state, factory, config=tre.default_config())
    return _Device(state, factory)


def fixture(folder: Path) -> Fixture:
    """Provision a device in ``folder`` and build its integrity monitor as the boot does."""
    device = _provision(folder)
    ca_public = load_factory(device.factory).ca_key.public_key()
    specs = resolve(tre.load_config(device.state / "config.toml"))
    keys = domain_verify_keys(device.state, ca_public)
    domains = {s.id: (s, keys.get(s.id, ca_public)) for s in specs}
    monitor = IntegrityMonitor(device.state, ca_public, domains, IntegritySettings())
    folders = {f"tre:{name}": root for name, root in sorted(tre_roots().items())}
    for spec in specs:
        if spec.manifest.directory is not None:
            folders[spec.id] = spec.manifest.directory
    paths: list[Path] = []
    scopes: dict[str, int] = {}
    for name, root in folders.items():
        listed = [path for _, path in code_files(root)]
        paths += listed
        scope = TRE_SCOPE if name.startswith("tre:") else name
        scopes[scope] = scopes.get(scope, 0) + len(listed)
    blobs = [path.read_bytes() for path in paths]
    return Fixture(monitor, folders, paths, blobs, scopes, [s.id for s in specs])


# --- the loops -----------------------------------------------------------------------------


def _loop_check(fx: Fixture) -> Callable[[], object]:
    return fx.monitor.check_sync


def _loop_raw_hash(fx: Fixture) -> Callable[[], object]:
    blobs = fx.blobs
    sha256 = hashlib.sha256

    def run() -> object:
        return [sha256(data).digest() for data in blobs]

    return run


def _loop_raw_read_hash(fx: Fixture) -> Callable[[], object]:
    paths = fx.paths
    sha256 = hashlib.sha256

    def run() -> object:
        return [sha256(path.read_bytes()).digest() for path in paths]

    return run


def _loop_walk(fx: Fixture) -> Callable[[], object]:
    roots = list(fx.folders.values())

    def run() -> object:
        return [list(code_files(root)) for root in roots]

    return run


def _loop_manifests(fx: Fixture) -> Callable[[], object]:
    monitor = fx.monitor
    state = monitor.state_dir
    scopes: list[tuple[str, Any]] = [(TRE_SCOPE, monitor._tre_key)]
    scopes += [(d, key) for d, (_, key) in monitor._domains.items()]

    def run() -> object:
        return [read_manifest(state, scope, key) for scope, key in scopes]

    return run


_MAKERS: dict[str, Callable[[Fixture], Callable[[], object]]] = {
    "check": _loop_check,
    "raw_hash": _loop_raw_hash,
    "raw_read_hash": _loop_raw_read_hash,
    "walk": _loop_walk,
    "manifests": _loop_manifests,
}


def _timed(fn: Callable[[], object], reps: int) -> float:
    """Seconds per call of ``fn`` over ``reps`` calls, the garbage collector off (as
    timeit does), so no loop pays for another's garbage."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        started = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - started) / reps
    finally:
        if enabled:
            gc.enable()


def _rotations(names: list[str], rounds: int) -> Iterator[tuple[int, list[str]]]:
    for i in range(rounds):
        k = i % len(names)
        yield i, names[k:] + names[:k]


def run(settings: Settings) -> Outcome:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tre-bench-integrity-") as tmp:
        progress(TAG, "provisioning a device with the reference domains (sealed as installed)")
        fx = fixture(Path(tmp))
        tre_problem, domain_problems = fx.monitor.check_sync()
        problems = ([tre_problem] if tre_problem else []) + list(domain_problems.values())
        mismatches = [p.describe() for p in problems]
        for line in mismatches:  # the code changed between sealing and now: still timed
            progress(TAG, f"warning: mismatch {line}")
        loops = {name: make(fx) for name, make in _MAKERS.items()}
        total = sum(map(len, fx.blobs))
        progress(TAG, f"{len(fx.paths)} files, {total} bytes in {len(fx.folders)} folders")
        for fn in loops.values():  # warm-up: page cache, imports, first-call costs
            fn()
        samples: dict[str, list[float]] = {name: [] for name in loops}
        for i, order in _rotations(list(loops), settings.rounds):
            for name in order:
                samples[name].append(_timed(loops[name], settings.reps))
            progress(
                TAG,
                f"round {i + 1}/{settings.rounds}: "
                + ", ".join(f"{n} {samples[n][-1] * 1e3:.3f} ms" for n in loops),
            )
        outcome = Outcome(settings, fx, samples, mismatches)
    outcome.elapsed_s = time.perf_counter() - started
    return outcome
