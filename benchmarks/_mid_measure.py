"""The ``mid`` scenario's device, network side, loops and interleaved rounds.

**The device** (:func:`make_device`): ``factory_init`` (CA and owner keys for ``oem``,
``mno`` and ``meter``; the root delegates each to its owner key) and ``provision`` into a
temporary folder, with ``oem`` and ``mno`` enabled and the host allowed mno's MID services;
booted with ``tre.open_tre(state=...)``. A second device from the same factory, never booted,
takes the domain package installs (:mod:`benchmarks._mid_install`).

**The network side** (:class:`Network`, the issuer and the home network, in the host task):
holds K and OPc of the benchmark MID and the mno owner key from the factory; makes MID
packages exactly as ``tre mid package`` does (HPKE to the device's ``mid-hpke`` key, signed
by the owner) and AUTNs with the pure MILENAGE functions (``tre._milenage``), always before
the timer starts.

**Loops** (``loop(n) -> seconds``; the host times them):

* ``aka``: ``await t.call("mno", "authenticate", {imsi, rand, autn})`` with fresh AUTNs
  (SQN going up by one each call): MILENAGE in the keystore, then the MID's SQN counter
  raised durably -- a replay-protected keystore counter (``ks.advance_counter``: one
  in-place write and fsync of its authenticated record, in a worker thread) -- before RES,
  CK and IK are sent.
* ``raw_aka``: on a :class:`tre._milenage.Milenage` held in a variable, f2345 (RES, CK, IK,
  AK), unconceal SQN, check MAC-A with f1 (constant time), check freshness, then one
  ``BEGIN IMMEDIATE; INSERT OR REPLACE one row; COMMIT`` into a separate SQLite file with
  the TRE's connection settings (WAL, ``synchronous=FULL``) from a trio worker thread
  (``CapacityLimiter(1)``, as ``AsyncStore``).
* ``install``: ``await t.call("mno", "install_package", {"package": ...})`` with fresh
  packages (new txid, higher counter) in batches of ``install_batch``; after each batch,
  untimed, the batch's MIDs are deleted again (``mno.delete``). The batch's IMSIs are
  free ones from a fixed pool (see :data:`INSTALL_BATCH`).
* ``raw_verify_hash``: ``Ed25519PublicKey.verify(sig, package)`` + ``sha256(package)`` of a
  package of the same size.
* ``domain_install``, ``raw_domain_verify_hash``, ``domain_verify_package`` and their
  ``_large`` twins: offline installs (updates) of the ``meter`` domain from TUF-style
  packages against raw Ed25519 verify + SHA-256 of the same bytes, and against the
  library's verification alone; see :mod:`benchmarks._mid_install`.
"""

from __future__ import annotations

import cProfile
import dataclasses
import hashlib
import hmac
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

import attestation
import tre
from tre._config import HostPolicy, TREConfig
from tre._factory import factory_init
from tre._midpackage import TXID_LEN, hpke_seal, mid_info, pack_header, signed_bytes
from tre._milenage import Milenage
from tre._provision import provision
from tre._store import _connect

from ._keystore_measure import filesystem_of
from ._mid_install import (
    DOMAIN,
    LARGE_BYTES,
    PAYLOADS,
    DomainInstaller,
    InstallInfo,
    install_anatomy,
    suffix,
)
from ._profile import profile_report, profiled, stack_group
from ._report import progress
from ._rounds import interleaved_rounds, sync_round

__all__ = [
    "AKA_IMSI",
    "FULL",
    "INSTALL_BATCH",
    "QUICK",
    "TAG",
    "LoopSpec",
    "Outcome",
    "Settings",
    "run",
]

TAG = "mid"
#: The MID authenticated in the ``aka`` loop (installed from a package and enabled).
AKA_IMSI = "001019900000001"
#: Installs between two untimed clean-ups, and the size of the IMSI pool they use. Every
#: deleted MID keeps a tombstone in mno's MID record (at most 4096 bytes), so a brand-new
#: IMSI for every install would fill it after about a hundred installs; each batch takes
#: IMSIs that are not installed (deleted ones from the pool), so the record stays small.
INSTALL_BATCH = 16
POOL = tuple(f"0010198{i:08d}" for i in range(INSTALL_BATCH))
AMF = bytes.fromhex("8000")
#: The host's timeout for one call.
CALL_TIMEOUT = 120.0
#: The mno services the host may call.
SERVICES = frozenset(
    {"status", "mids", "mid_key", "install_package", "enable", "disable", "delete", "authenticate"}
)

Loop = Callable[[int], Awaitable[float]]


@dataclasses.dataclass(frozen=True)
class Settings:
    quick: bool
    rounds: int
    #: authentications per round (each loop)
    aka_calls: int
    #: package installs per round
    install_calls: int
    #: raw verify + hash calls per round (cheap: more calls for a timeable round)
    verify_calls: int
    install_batch: int = INSTALL_BATCH
    warmup: float = 0.1
    #: calls of each loop in the step timings after the rounds
    anatomy_calls: int = 100
    #: domain package installs per round (each payload)
    domain_install_calls: int = 24
    #: raw verify + hash, and verify_package, calls per round (each payload)
    domain_verify_calls: int = 1000
    #: the size of the large payload's extra file, KiB
    large_kib: int = LARGE_BYTES // 1024
    #: installs of each step in the install step timings
    domain_anatomy_calls: int = 20
    profile: bool = False
    directory: str | None = None


QUICK = Settings(quick=True, rounds=7, aka_calls=1000, install_calls=64, verify_calls=5000)
FULL = Settings(
    quick=False,
    rounds=11,
    aka_calls=3000,
    install_calls=192,
    verify_calls=20_000,
    anatomy_calls=300,
    domain_install_calls=64,
    domain_verify_calls=3000,
    domain_anatomy_calls=50,
)


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    name: str
    op: str  # aka, install, verify, domain_install, domain_verify


LOOPS = (
    LoopSpec("aka", "aka"),
    LoopSpec("raw_aka", "aka"),
    LoopSpec("install", "install"),
    LoopSpec("raw_verify_hash", "verify"),
    *(
        LoopSpec(name + suffix(payload), op)
        for payload in PAYLOADS
        for name, op in (
            ("domain_install", "domain_install"),
            ("raw_domain_verify_hash", "domain_verify"),
            ("domain_verify_package", "domain_verify"),
        )
    ),
)


def calls_of(s: Settings, op: str) -> int:
    calls = {
        "aka": s.aka_calls,
        "install": s.install_calls,
        "domain_install": s.domain_install_calls,
        "domain_verify": s.domain_verify_calls,
    }
    return calls.get(op, s.verify_calls)


@dataclasses.dataclass
class Outcome:
    settings: Settings
    #: loop name -> calls/s of each round
    rates: dict[str, list[float]]
    provision_s: float
    open_s: float
    filesystem: str
    package_bytes: int
    #: microseconds per call of each step (see :func:`_anatomy`)
    anatomy: dict[str, float]
    final_sqn: int
    mids_left: list[tuple[str, str]]
    #: the domain package installs: payloads, step timings, final counter
    domain: InstallInfo
    profile: str | None = None
    elapsed_s: float = 0.0


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


# --- the device and the network side ----------------------------------------------------------


def make_device(root: Path) -> tuple[Path, Path]:
    """A factory and a provisioned device under ``root``: (state folder, factory folder)."""
    factory = root / "factory"
    factory_init(factory, domains=("oem", "mno", DOMAIN))
    config = TREConfig(
        name="mid-bench", enable=("oem", "mno"), host=HostPolicy(calls={"mno": SERVICES})
    )
    state = root / "state"
    provision(state, factory, config=config)
    return state, factory


class Network:
    """The issuer and the home network: K, OPc, the owner key, SQN and package counters."""

    def __init__(self, factory: Path, mid_key: bytes, ueid: bytes) -> None:
        issuer = attestation.load_private_key_pem((factory / "owners" / "mno.key").read_bytes())
        if not isinstance(issuer, Ed25519PrivateKey):
            raise RuntimeError("the mno owner key is not Ed25519")
        self.issuer = issuer
        self.mid_key = X25519PublicKey.from_public_bytes(mid_key)
        self.ueid = ueid
        self.k, self.opc = os.urandom(16), os.urandom(16)
        self.milenage = Milenage(self.k, self.opc)
        self.counter = 0
        self.sqn = 0  # the last SQN sent to the device
        self.raw_sqn = 0  # the last SQN sent to the raw side

    def package(self, imsi: str) -> bytes:
        """A fresh MID package for ``imsi``, as ``tre mid package`` makes it."""
        self.counter += 1
        header = pack_header(imsi, os.urandom(TXID_LEN), self.counter, self.ueid)
        secret = {"imsi": imsi, "k": self.k, "opc": self.opc, "sqn": 0, "amf": AMF}
        plaintext = msgpack.packb(secret, use_bin_type=True)
        enc, ct = hpke_seal(self.mid_key, plaintext, mid_info(self.ueid), header)
        sig = self.issuer.sign(signed_bytes(header, enc, ct))
        fields = {"header": header, "enc": enc, "ct": ct, "sig": sig}
        return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]

    def autn(self, rand: bytes, sqn: int) -> bytes:
        """AUTN = (SQN xor AK) || AMF || MAC-A (TS 33.102 6.3.2), pure MILENAGE."""
        sqn_b = sqn.to_bytes(6, "big")
        m = self.milenage
        return _xor(sqn_b, m.f5(rand)) + AMF + m.f1(rand, sqn_b, AMF)

    def challenges(self, n: int, *, raw: bool = False) -> list[tuple[bytes, bytes]]:
        """``n`` fresh (RAND, AUTN), SQN going up by one each."""
        out = []
        for _ in range(n):
            if raw:
                self.raw_sqn += 1
                sqn = self.raw_sqn
            else:
                self.sqn += 1
                sqn = self.sqn
            rand = os.urandom(16)
            out.append((rand, self.autn(rand, sqn)))
        return out


# --- the raw side ------------------------------------------------------------------------------


class RawSide:
    """A MILENAGE key in a variable, a separate SQLite file (WAL, synchronous=FULL)."""

    def __init__(self, root: Path, net: Network, package: bytes) -> None:
        self.milenage = Milenage(net.k, net.opc)
        self.highest = 0
        self.conn = _connect(root / "raw.db")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS sqn (imsi TEXT PRIMARY KEY, sqn INTEGER NOT NULL, "
            "at REAL NOT NULL)"
        )
        mode = self.conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = self.conn.execute("PRAGMA synchronous").fetchone()[0]
        if (mode, sync) != ("wal", 2):
            raise RuntimeError(f"raw database: journal_mode {mode}, synchronous {sync}")
        self.limiter = trio.CapacityLimiter(1)
        self.package = package
        self.issuer_public = net.issuer.public_key()
        self.package_sig = net.issuer.sign(package)

    def write(self, sqn: int) -> None:
        """One row in its own committed transaction (durable when COMMIT returns)."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT OR REPLACE INTO sqn VALUES (?, ?, ?)", (AKA_IMSI, sqn, time.time())
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def stored_sqn(self) -> int:
        row = self.conn.execute("SELECT sqn FROM sqn").fetchone()
        return 0 if row is None else int(row[0])

    def milenage_check(self, rand: bytes, autn: bytes) -> tuple[int, bytes]:
        """f2345, unconceal SQN, constant-time f1 check; (SQN, RES)."""
        m = self.milenage
        v = m.f2345(rand)
        sqn_b = _xor(autn[:6], v.ak)
        if not hmac.compare_digest(m.f1(rand, sqn_b, autn[6:8]), autn[8:]):
            raise RuntimeError("raw AKA: MAC failure")
        return int.from_bytes(sqn_b, "big"), v.res

    def close(self) -> None:
        self.conn.close()


async def raw_aka_round(raw: RawSide, challenges: list[tuple[bytes, bytes]]) -> float:
    check, write = raw.milenage_check, raw.write
    run_sync, limiter = trio.to_thread.run_sync, raw.limiter
    highest = raw.highest
    start = time.perf_counter()
    for rand, autn in challenges:
        sqn, _res = check(rand, autn)
        if sqn <= highest:
            raise RuntimeError("raw AKA: stale SQN")
        await run_sync(write, sqn, limiter=limiter)
        highest = sqn
    elapsed = time.perf_counter() - start
    raw.highest = highest
    return elapsed


def raw_verify_hash_round(raw: RawSide, n: int) -> float:
    verify, sha256 = raw.issuer_public.verify, hashlib.sha256
    package, sig = raw.package, raw.package_sig
    start = time.perf_counter()
    for _ in range(n):
        verify(sig, package)
        sha256(package).digest()
    return time.perf_counter() - start


# --- the device-side loops ----------------------------------------------------------------------


class Runner:
    def __init__(
        self, t: tre.TRE, net: Network, raw: RawSide, s: Settings, installer: DomainInstaller
    ) -> None:
        self.t, self.net, self.raw, self.s = t, net, raw, s
        self.domain_loops = installer.loops()

    async def call(self, method: str, body: Any = None) -> Any:
        return await self.t.call("mno", method, body, timeout=CALL_TIMEOUT)

    async def aka(self, n: int) -> float:
        challenges = self.net.challenges(n)  # network side, untimed
        call, timeout = self.t.call, CALL_TIMEOUT
        reply: Any = {}
        start = time.perf_counter()
        for rand, autn in challenges:
            body = {"imsi": AKA_IMSI, "rand": rand, "autn": autn}
            reply = await call("mno", "authenticate", body, timeout=timeout)
        elapsed = time.perf_counter() - start
        rand = challenges[-1][0]
        if reply.get("res") != self.net.milenage.f2345(rand).res:
            raise RuntimeError(f"mno.authenticate: unexpected answer {sorted(reply)}")
        return elapsed

    async def raw_aka(self, n: int) -> float:
        return await raw_aka_round(self.raw, self.net.challenges(n, raw=True))

    async def install(self, n: int) -> float:
        call, timeout = self.t.call, CALL_TIMEOUT
        elapsed = 0.0
        done = 0
        while done < n:
            imsis = POOL[: min(self.s.install_batch, len(POOL), n - done)]
            packages = [self.net.package(imsi) for imsi in imsis]  # issuer side, untimed
            start = time.perf_counter()
            for package in packages:
                await call("mno", "install_package", {"package": package}, timeout=timeout)
            elapsed += time.perf_counter() - start
            for imsi in imsis:
                await self.call("delete", {"imsi": imsi})
            done += len(imsis)
        return elapsed

    def loop(self, spec: LoopSpec) -> Loop:
        if spec.name == "aka":
            return self.aka
        if spec.name == "raw_aka":
            return self.raw_aka
        if spec.name == "install":
            return self.install
        if spec.name in self.domain_loops:
            return self.domain_loops[spec.name]
        return lambda n: sync_round(raw_verify_hash_round, self.raw, n)


async def _anatomy(runner: Runner, root: Path, n: int) -> dict[str, float]:
    """Microseconds per call of the parts of one AKA, each on its own (median of 3)."""
    raw, net = runner.raw, runner.net
    results: dict[str, list[float]] = {}

    async def timed(name: str, fn: Callable[[], Awaitable[float]]) -> None:
        results.setdefault(name, []).append(await fn() / n * 1e6)

    async def authenticate() -> float:
        return await runner.aka(n)

    async def host_call() -> float:
        start = time.perf_counter()
        for _ in range(n):
            await runner.call("status")
        return time.perf_counter() - start

    async def milenage() -> float:
        await trio.lowlevel.checkpoint()
        pairs = net.challenges(n, raw=True)
        check = raw.milenage_check
        start = time.perf_counter()
        for rand, autn in pairs:
            check(rand, autn)
        elapsed = time.perf_counter() - start
        raw.highest = net.raw_sqn
        return elapsed

    async def raw_write() -> float:
        start = time.perf_counter()
        for _ in range(n):
            await trio.to_thread.run_sync(raw.write, raw.highest, limiter=raw.limiter)
        return time.perf_counter() - start

    async def fsync() -> float:
        path = root / "counter-proxy.bin"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:

            def one() -> None:
                os.pwrite(fd, os.urandom(48), 0)
                os.fsync(fd)

            start = time.perf_counter()
            for _ in range(n):
                await trio.to_thread.run_sync(one, limiter=raw.limiter)
            return time.perf_counter() - start
        finally:
            os.close(fd)

    steps = (
        ("authenticate", authenticate),
        ("host_call", host_call),
        ("milenage", milenage),
        ("raw_write", raw_write),
        ("fsync", fsync),
    )
    for _ in range(3):
        for name, fn in steps:
            await timed(name, fn)
    out = {name: statistics.median(values) for name, values in results.items()}
    out["rest"] = out["authenticate"] - sum(out[k] for k in ("host_call", "milenage", "fsync"))
    return out


async def _profile(runner: Runner, n: int) -> str:
    """cProfile of ``n`` host authentications (main thread only: the worker thread's
    SQLite and fsync show as trio waiting in epoll)."""
    prof: cProfile.Profile = await profiled(lambda: runner.aka(n))

    def group(key: tuple[str, int, str]) -> str:
        return stack_group(
            key,
            (("poll", "waiting for the worker thread (SQLite COMMIT + counter fsync)"),),
            (("domains/mno/", "mno domain"), ("tre/_keystore", "tre keystore")),
        )

    return profile_report(prof, "mno.authenticate through the host", n, 20, group)


async def _run(s: Settings, root: Path) -> Outcome:
    started = time.perf_counter()
    state, factory = make_device(root)
    provision_s = time.perf_counter() - started
    filesystem = filesystem_of(state)
    progress(TAG, f"device provisioned in {provision_s:.3f} s ({root}, {filesystem})")
    installer = DomainInstaller(root, factory, s.large_kib * 1024)
    progress(TAG, f"install device provisioned in {installer.provision_s:.3f} s")
    opening = time.perf_counter()
    async with tre.open_tre(state=state) as t:
        open_s = time.perf_counter() - opening
        key = await t.call("mno", "mid_key")
        net = Network(factory, key["public"], key["ueid"])
        sample = net.package(POOL[0])
        raw = RawSide(root, net, sample)
        try:
            runner = Runner(t, net, raw, s, installer)
            await runner.call("install_package", {"package": net.package(AKA_IMSI)})
            await runner.call("enable", {"imsi": AKA_IMSI})
            bound = [(spec, runner.loop(spec)) for spec in LOOPS]
            rates = await interleaved_rounds(
                TAG, bound, s.rounds, s.warmup, lambda op: calls_of(s, op)
            )
            progress(TAG, f"step timings: {s.anatomy_calls} calls of each, 3 times")
            anatomy = await _anatomy(runner, root, s.anatomy_calls)
            profile = await _profile(runner, s.anatomy_calls) if s.profile else None
            mids = await runner.call("mids")
            final_sqn = next(m["sqn"] for m in mids if m["imsi"] == AKA_IMSI)
            if final_sqn != net.sqn:
                raise RuntimeError(f"the device's SQN {final_sqn} is not the last sent {net.sqn}")
            if raw.stored_sqn() != raw.highest:
                raise RuntimeError("the raw database does not hold the last SQN")
            left = [(m["imsi"], m["state"]) for m in mids if m["state"] != "deleted"]
        finally:
            raw.close()
    n = s.domain_anatomy_calls
    progress(TAG, f"install step timings: {n} calls of each, 3 times, each payload")
    domain = installer.info(install_anatomy(installer, n))
    if domain.versions_left != [str(domain.counter)]:
        raise RuntimeError(
            f"{DOMAIN} at counter {domain.counter} left version folders {domain.versions_left}"
        )
    return Outcome(
        s,
        rates,
        provision_s,
        open_s,
        filesystem,
        len(sample),
        anatomy,
        final_sqn,
        left,
        domain,
        profile,
    )


def run(s: Settings) -> Outcome:
    """Run the scenario (its own ``trio.run``) in a temporary folder removed afterwards."""
    progress(
        TAG,
        f"{'quick' if s.quick else 'full'} run: {s.rounds} interleaved rounds of "
        f"{s.aka_calls} AKA runs (each loop), {s.install_calls} installs (batches of "
        f"{s.install_batch}), {s.verify_calls} raw verify+hash, {s.domain_install_calls} "
        f"{DOMAIN} package installs and {s.domain_verify_calls} of its verifications (each "
        f"payload; large: +{s.large_kib} KiB); sqlite "
        f"{sqlite3.sqlite_version}, pid {os.getpid()}",
    )
    with tempfile.TemporaryDirectory(prefix="tre-midbench-", dir=s.directory) as tmp:
        return trio.run(_run, s, Path(tmp))
