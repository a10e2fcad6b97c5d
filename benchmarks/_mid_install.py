"""The ``mid`` scenario's domain package install (``tre install``) against raw verify + hash.

**The device** (:class:`DomainInstaller`): a second device provisioned from the scenario's
factory (whose root delegates ``meter`` to its owner key ``owners/meter.key``), never
booted: :func:`tre._install.install_package` takes the state folder's lock, which a booted
TRE holds. Each install is an update of the ``meter`` domain (the first, in the warm-up,
installs it) to a package with the next release counter, signed by the meter owner.

**Payloads** (:class:`Payload`): ``small`` is every code file of the installed
``domains/meter`` package (``tre._measure.code_files``); ``large`` is the same files plus
one random ``data.bin`` (256 KiB by default), so that the share of hashing is visible.

**Loops** (``loop(n) -> seconds``; envelopes are built and signed before the timer):

* ``domain_install``: ``install_package(state, envelope, files, domain="meter", now=...)``
  with the release counter going up by one each call: state lock, device open, verify
  against the stored root, files staged with fsync, one SQLite transaction (plus the
  replay-protected counter's fsync), the superseded version folder deleted.
* ``raw_domain_verify_hash``: ``Ed25519PublicKey.verify(sig, signed)`` of the envelope's
  signed metadata bytes plus ``hashlib.sha256(data).digest()`` of every file.
* ``domain_verify_package``: ``attestation.verify_package`` (parse, threshold, target,
  expiry, counter) plus ``attestation.check_files`` (length and SHA-256 of every file), in
  memory: the library's whole verification, nothing written.

Each loop exists for both payloads (``_large`` suffix for the large one).

**Step timings** (:func:`install_anatomy`, after the rounds): the whole install, then each
part on its own -- the state lock plus opening and closing the device, verify_package +
check_files, the real staging step (``tre._install._stage`` on a scratch folder: write and
fsync each file, fsync the folders, read back and re-check, rename), the write + fsync of
the files alone, and the commit (one durable write through the device's store: a SQLite
transaction rewriting the domain row, then the replay-protected counter's fsync).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import attestation
import domains.meter
from tre._config import TREConfig
from tre._device import Device, measure
from tre._install import _stage, install_package
from tre._installed import PACKAGE_DIR
from tre._loader import load_domain_dir
from tre._measure import code_files, read_code, tre_code_hash
from tre._provision import provision
from tre._root import read_root
from tre._runlock import state_lock

from ._rounds import sync_round

__all__ = [
    "DATA_FILE",
    "DOMAIN",
    "LARGE_BYTES",
    "PARTS",
    "PAYLOADS",
    "DomainInstaller",
    "InstallInfo",
    "Payload",
    "install_anatomy",
    "suffix",
]

#: The domain every benchmark install updates.
DOMAIN = "meter"
TARGET = attestation.domain_target(DOMAIN)
#: The extra file of the large payload, and its default size.
DATA_FILE = "data.bin"
LARGE_BYTES = 256 * 1024
#: Payload names; a loop of the ``large`` payload has the suffix ``_large``.
PAYLOADS = ("small", "large")
#: How long the benchmark packages are valid (the device checks expiry against ``now``).
VALIDITY_S = 86_400

Loop = Callable[[int], Awaitable[float]]


def suffix(payload: str) -> str:
    """The loop-name suffix of a payload: ``""`` or ``"_large"``."""
    return "" if payload == "small" else f"_{payload}"


@dataclasses.dataclass(frozen=True)
class Payload:
    name: str
    files: dict[str, bytes]
    #: the signed metadata bytes of a package listing ``files``, and the owner's signature
    signed: bytes
    sig: bytes
    #: a sample envelope (for verify_package; its counter is 1)
    envelope: bytes

    @property
    def file_bytes(self) -> int:
        return sum(map(len, self.files.values()))

    def describe(self) -> dict[str, int]:
        return {"files": len(self.files), "bytes": self.file_bytes, "envelope": len(self.envelope)}


@dataclasses.dataclass(frozen=True)
class InstallInfo:
    """What the domain-install part of a run reports besides its rates."""

    #: payload -> files, file bytes, envelope bytes
    payloads: dict[str, dict[str, int]]
    #: payload -> step -> microseconds per call (see :func:`install_anatomy`)
    anatomy: dict[str, dict[str, float]]
    #: the domain's release counter after the run (one per install, warm-up included)
    counter: int
    #: the domain's version folders left on the device (only the installed one)
    versions_left: list[str]
    provision_s: float


def meter_files() -> dict[str, bytes]:
    """Every code file of the installed ``domains/meter`` package, as install measures it."""
    folder = Path(domains.meter.__file__).parent
    return {rel: read_code(path) for rel, path in code_files(folder)}


class DomainInstaller:
    """A provisioned (never booted) device, the meter owner key, the payloads."""

    def __init__(self, root: Path, factory: Path, large_bytes: int) -> None:
        started = time.perf_counter()
        self.state = root / "install-state"
        provision(self.state, factory, config=TREConfig(name="install-bench", enable=("oem",)))
        self.provision_s = time.perf_counter() - started
        owner = attestation.load_private_key_pem((factory / "owners" / "meter.key").read_bytes())
        if not isinstance(owner, Ed25519PrivateKey):
            raise RuntimeError("the meter owner key is not Ed25519")
        self.owner = owner
        self.root = read_root(self.state)  # the root install_package verifies against
        self.scratch = root / "install-scratch"
        self.now = int(time.time())
        self.counter = 0  # the last release counter sent to the device
        small = meter_files()
        self.payloads = {
            "small": self._payload("small", small),
            "large": self._payload("large", small | {DATA_FILE: os.urandom(large_bytes)}),
        }

    def _envelope(self, files: dict[str, bytes], counter: int) -> bytes:
        return attestation.make_package(
            target=TARGET,
            counter=counter,
            expires=self.now + VALIDITY_S,
            files=files,
            signers=[self.owner],
        )

    def _payload(self, name: str, files: dict[str, bytes]) -> Payload:
        envelope = self._envelope(files, 1)
        package = attestation.verify_package(
            self.root, envelope, target=TARGET, last_counter=0, now=self.now
        )
        sig = self.owner.sign(package.signed)  # Ed25519 is deterministic: the envelope's
        if sig not in envelope:
            raise RuntimeError("the raw signature is not the envelope's")
        return Payload(name, files, package.signed, sig, envelope)

    def envelopes(self, payload: Payload, n: int) -> list[bytes]:
        """``n`` packages of ``payload``, release counter going up by one each (untimed)."""
        out = []
        for _ in range(n):
            self.counter += 1
            out.append(self._envelope(payload.files, self.counter))
        return out

    def install(self, payload: Payload, n: int) -> float:
        envelopes = self.envelopes(payload, n)  # owner side, untimed
        state, files, now = self.state, payload.files, self.now
        result: dict[str, Any] = {}
        start = time.perf_counter()
        for envelope in envelopes:
            result = install_package(state, envelope, files, domain=DOMAIN, now=now)
        elapsed = time.perf_counter() - start
        if result.get("counter") != self.counter or result.get("files") != len(files):
            raise RuntimeError(f"install_package: unexpected answer {result}")
        return elapsed

    def raw_verify_hash(self, payload: Payload, n: int) -> float:
        verify, sha256 = self.owner.public_key().verify, hashlib.sha256
        sig, signed, blobs = payload.sig, payload.signed, list(payload.files.values())
        start = time.perf_counter()
        for _ in range(n):
            verify(sig, signed)
            for data in blobs:
                sha256(data).digest()
        return time.perf_counter() - start

    def verify_package(self, payload: Payload, n: int) -> float:
        verify, check = attestation.verify_package, attestation.check_files
        root, envelope, files, now = self.root, payload.envelope, payload.files, self.now
        start = time.perf_counter()
        for _ in range(n):
            check(verify(root, envelope, target=TARGET, last_counter=0, now=now), files)
        return time.perf_counter() - start

    def loops(self) -> dict[str, Loop]:
        """Loop name -> ``async (n) -> seconds`` (each a synchronous round after a trio
        checkpoint: install runs offline, under the state lock, in the caller's thread)."""
        out: dict[str, Loop] = {}
        for name, payload in self.payloads.items():
            end = suffix(name)
            for loop, fn in (
                ("domain_install", self.install),
                ("raw_domain_verify_hash", self.raw_verify_hash),
                ("domain_verify_package", self.verify_package),
            ):
                out[loop + end] = _bind(fn, payload)
        return out

    def versions_left(self) -> list[str]:
        folder = self.state / PACKAGE_DIR / DOMAIN
        return sorted(p.name for p in folder.iterdir())

    def info(self, anatomy: dict[str, dict[str, float]]) -> InstallInfo:
        payloads = {name: p.describe() for name, p in self.payloads.items()}
        return InstallInfo(payloads, anatomy, self.counter, self.versions_left(), self.provision_s)


def _bind(fn: Callable[[Payload, int], float], payload: Payload) -> Loop:
    return lambda n: sync_round(fn, payload, n)


# --- step timings ---------------------------------------------------------------------------


def _open_close(state: Path, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        with state_lock(state, "benchmark"):
            Device.open_sync(state).store.sync.close()
    return time.perf_counter() - start


def _stage_step(inst: DomainInstaller, payload: Payload, n: int) -> float:
    """The real staging step on a scratch state folder; with no committed records, each
    call's sweep removes the previous call's version folder."""
    package = attestation.verify_package(
        inst.root, payload.envelope, target=TARGET, last_counter=0, now=inst.now
    )
    start = time.perf_counter()
    for _ in range(n):
        _stage(inst.scratch, DOMAIN, package, payload.files, {})
    return time.perf_counter() - start


def _tre_code_hash(n: int) -> float:
    """Only the measurement of the TRE's own code that every device open makes."""
    start = time.perf_counter()
    for _ in range(n):
        tre_code_hash()
    return time.perf_counter() - start


def _load(inst: DomainInstaller, payload: Payload, n: int) -> float:
    """Loading the staged code (manifest, strict import of its entry) and measuring it."""
    package = attestation.verify_package(
        inst.root, payload.envelope, target=TARGET, last_counter=0, now=inst.now
    )
    folder = _stage(inst.scratch, DOMAIN, package, payload.files, {})  # untimed
    owner_hash = attestation.owner_key_hash(min(inst.root.owners[DOMAIN].keys))
    start = time.perf_counter()
    for _ in range(n):
        measure(load_domain_dir(folder, strict=True), owner_hash)
    return time.perf_counter() - start


def _write_fsync(inst: DomainInstaller, payload: Payload, n: int) -> float:
    """Only writing each file (``O_EXCL``) with an fsync, then the folder's fsync."""
    inst.scratch.mkdir(parents=True, exist_ok=True)
    elapsed = 0.0
    items = sorted(payload.files.items())
    for _ in range(n):
        folder = Path(tempfile.mkdtemp(dir=inst.scratch))
        start = time.perf_counter()
        for rel, data in items:
            fd = os.open(folder / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        elapsed += time.perf_counter() - start
        shutil.rmtree(folder)
    return elapsed


def _commit(state: Path, n: int) -> float:
    """The install's durable write, through the device's store: one SQLite transaction that
    rewrites the domain's row and adds an event (and bumps the store's generation), then the
    replay-protected counter's fsync. As in an install, each is the first write on a freshly
    opened device (opening and closing it are not timed)."""

    def write(conn: sqlite3.Connection) -> None:
        stamp = time.time()
        conn.execute("UPDATE domains SET installed = ? WHERE id = ?", (stamp, DOMAIN))
        conn.execute(
            "INSERT INTO events(time, kind, domain, detail) VALUES (?, ?, ?, ?)",
            (stamp, "benchmark", DOMAIN, "benchmarks mid: the install's commit, timed alone"),
        )

    elapsed = 0.0
    with state_lock(state, "benchmark"):
        for _ in range(n):
            device = Device.open_sync(state)
            try:
                start = time.perf_counter()
                device.store.sync.write(write)
                elapsed += time.perf_counter() - start
            finally:
                device.store.sync.close()
    return elapsed


#: The steps that add up to an install (with ``rest``); ``write_fsync`` is part of
#: ``stage``. ``tre_code_hash`` is timed for comparison only: the device measures the TRE's
#: code on first use, which an install that re-seals nothing never reaches.
PARTS = ("open", "verify", "stage", "load", "commit")


def _steps(inst: DomainInstaller, payload: Payload, n: int) -> dict[str, Callable[[], float]]:
    return {
        "install": lambda: inst.install(payload, n),
        "open": lambda: _open_close(inst.state, n),
        "tre_code_hash": lambda: _tre_code_hash(n),
        "verify": lambda: inst.verify_package(payload, n),
        "stage": lambda: _stage_step(inst, payload, n),
        "write_fsync": lambda: _write_fsync(inst, payload, n),
        "load": lambda: _load(inst, payload, n),
        "commit": lambda: _commit(inst.state, n),
    }


def install_anatomy(inst: DomainInstaller, n: int) -> dict[str, dict[str, float]]:
    """Microseconds per call of the parts of one install, each on its own (median of 3,
    the payloads taking turns in each repetition); ``rest`` is the whole less the
    :data:`PARTS` (reading the root and the records, deriving the domain's keys, deleting
    the superseded folder, the lock)."""
    steps = {name: _steps(inst, payload, n) for name, payload in inst.payloads.items()}
    results: dict[str, dict[str, list[float]]] = {name: {} for name in steps}
    for _ in range(3):
        for name, fns in steps.items():
            for step, fn in fns.items():
                results[name].setdefault(step, []).append(fn() / n * 1e6)
    out = {}
    for name, values in results.items():
        us = {step: statistics.median(v) for step, v in values.items()}
        us["rest"] = us["install"] - sum(us[k] for k in PARTS)
        out[name] = us
    shutil.rmtree(inst.scratch, ignore_errors=True)
    return out
