"""``keystore --profile``: where the keystore's time goes, after the timed rounds.

Two views, both on the device the rounds ran on (the TRE closed, the device opened again
directly: ``Device.open`` -> ``device.domain_keys(spec)`` -> ``load_keys`` ->
``Keystore(keys)``, the objects ``ctx.keystore`` wraps, so the kernel call is not in the
picture):

1. **cProfile** of the keystore's sign, seal and unseal (64 B, ``measurement``) and of the
   durable write, next to the raw loops. cProfile runs in one thread only, so the profiled
   write uses an inline ``AsyncStore`` (the store's work on the event loop thread, as an
   in-memory device does): the thread hop is left out there, and measured in (2). C calls
   are grouped by what they are: SQLite (statements; ``COMMIT`` includes the WAL fsync),
   ``os.fsync`` (the counter file), cryptography, msgpack...
2. **Anatomy**: each step of ``Keystore.seal`` / ``unseal`` timed on its own, without
   cProfile's per-call overhead (best of 3 loops; the cost of the timing loop itself is
   subtracted), so the steps add up against the whole operation; and the durable write
   next to its parts (a bare store transaction, the counter, the thread hop, the raw
   insert, the keystore write without the counter), median of rotating rounds.
"""

from __future__ import annotations

import cProfile
import gc
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import trio
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import ipc
import tre
from tre._counter import MonotonicCounter
from tre._device import Device
from tre._keystore import DomainKeys, Keystore, _aad, load_keys
from tre._loader import resolve
from tre._store import AsyncStore, Store

from ._keystore_loops import (
    BENCH_ID,
    NONCE,
    SIGN_LABEL,
    TAG,
    RawCrypto,
    RawDatabase,
    device_internal,
    raw_seal_round,
    raw_sign_round,
    raw_unseal_round,
    raw_write_round,
)
from ._keystore_measure import Settings
from ._profile import profile_report, profiled, profiled_sync, stack_group, us_per_call
from ._report import progress, render_table

__all__ = ["profile_keystore"]

_Key = tuple[str, int, str]

#: Payload and policy of the profiled seal and unseal (the headline ones).
SIZE = 64
POLICY = tre.SealPolicy.MEASUREMENT


#: C calls split by library, then Python files by where they live
_C_GROUPS = (
    ("sqlite3", "sqlite3 (C: SQL; COMMIT = WAL write + fsync)"),
    ("fsync", "os.fsync (C: the counter file)"),
    ("msgpack", "msgpack (C)"),
    ("Packer", "msgpack (C)"),
    ("cryptography", "cryptography (C/Rust)"),
    ("AESGCM", "cryptography (C/Rust)"),
    ("Ed25519", "cryptography (C/Rust)"),
    ("hashlib", "hashlib / hmac (C)"),
    ("_hmac", "hashlib / hmac (C)"),
    ("posix", "os (C: open, read, write, close, urandom)"),
    ("io.", "os (C: open, read, write, close, urandom)"),
)
_PY_GROUPS = (
    ("cryptography/", "cryptography (py)"),
    ("attestation/", "attestation"),
    ("hmac.py", "stdlib (py)"),
)


def _group(key: _Key) -> str:
    """Which part of the stack a profiled function belongs to, C calls split by library."""
    return stack_group(key, _C_GROUPS, _PY_GROUPS)


# --- anatomy: every step on its own -----------------------------------------------------------


def _seal_anatomy(keys: DomainKeys, ks: Keystore, raw: RawCrypto, n: int) -> dict[str, Any]:
    data = raw.sealed[SIZE][0]
    policy, svn, domain = POLICY, keys.svn, keys.domain_id
    aead = keys.aead("seal", policy, svn)
    nonce = os.urandom(NONCE)
    aad = _aad("tre/v1/seal", domain, policy.value, svn, b"")
    ct = aead.encrypt(nonce, data, aad)
    blob = ks.seal(data, policy)
    raw_aead: AESGCM = raw.aesgcm
    _, raw_nonce, raw_ct = raw.sealed[SIZE]
    urandom = os.urandom
    packer = msgpack.Packer(use_bin_type=True)
    loop = us_per_call(lambda: None, n)

    def net(fn: Callable[[], object]) -> float:
        return max(0.0, us_per_call(fn, n) - loop)

    seal_steps = {
        "os.urandom(12)": net(lambda: urandom(NONCE)),
        "keys.aead('seal', policy, svn): cached AESGCM lookup": net(
            lambda: keys.aead("seal", policy, svn)
        ),
        "_aad('tre/v1/seal', domain, policy, svn, aad): msgpack of the AAD": net(
            lambda: _aad("tre/v1/seal", domain, policy.value, svn, b"")
        ),
        "AESGCM.encrypt(nonce, data, that AAD)": net(lambda: aead.encrypt(nonce, data, aad)),
        "_aad(1, policy, svn, nonce, ct): msgpack of the envelope": net(
            lambda: _aad(1, policy.value, svn, nonce, ct)
        ),
    }
    unseal_steps = {
        "ipc.decode_value(blob): strict decode of the envelope": net(
            lambda: ipc.decode_value(blob)
        ),
        "SealPolicy(policy_s)": net(lambda: tre.SealPolicy(policy.value)),
        "keys.aead('seal', policy, svn): cached AESGCM lookup": net(
            lambda: keys.aead("seal", policy, svn)
        ),
        "_aad('tre/v1/seal', domain, policy, svn, aad): msgpack of the AAD": net(
            lambda: _aad("tre/v1/seal", domain, policy.value, svn, b"")
        ),
        "AESGCM.decrypt(nonce, ct, that AAD)": net(lambda: aead.decrypt(nonce, ct, aad)),
    }
    return {
        "payload_bytes": SIZE,
        "policy": policy.value,
        "loop_overhead_us": loop,
        "seal_us": net(lambda: ks.seal(data, policy)),
        "raw_seal_us": net(lambda: raw_aead.encrypt(urandom(NONCE), data, None)),
        "seal_steps_us": seal_steps,
        "unseal_us": net(lambda: ks.unseal(blob)),
        "raw_unseal_us": net(lambda: raw_aead.decrypt(raw_nonce, raw_ct, None)),
        "unseal_steps_us": unseal_steps,
        "for_comparison_us": {
            "msgpack.Packer(use_bin_type=True), reused: .pack of the AAD": net(
                lambda: packer.pack(["tre/v1/seal", domain, policy.value, svn, b""])
            ),
            "msgpack.unpackb(blob): plain decode of the envelope": net(
                lambda: msgpack.unpackb(blob)
            ),
            "AESGCM.encrypt(nonce, data, None): no AAD": net(
                lambda: aead.encrypt(nonce, data, None)
            ),
        },
    }


async def _timed_writes(ks: Keystore, prefix: str, n: int, batch: int) -> float:
    """Microseconds per ``generate`` (batches, untimed deletes, as in the rounds)."""
    elapsed, done = 0.0, 0
    while done < n:
        labels = [f"{prefix}-{i}" for i in range(done, min(n, done + batch))]
        start = time.perf_counter()
        for label in labels:
            await ks.generate(label, "hmac")
        elapsed += time.perf_counter() - start
        for label in labels:
            await ks.delete(label)
        done += len(labels)
    return elapsed / n * 1e6


#: Rounds of the write anatomy (every item once per round, rotating; the median is shown).
ANATOMY_ROUNDS = 3


async def _write_anatomy(
    keys: DomainKeys,
    threaded: AsyncStore,
    inline: AsyncStore,
    database: Path,
    root: Path,
    s: Settings,
) -> dict[str, float]:
    """Microseconds per durable write of the keystore and of its parts: every item once per
    round in a rotating order (the disk's speed drifts), median of the rounds. The
    counter-less keystore write goes through a second connection to the device's own
    ``database`` (``Store.open(database, None)``); the device's counter catches up at its
    next open, as after a crash between a commit and the counter write."""
    n, batch = s.write_calls, s.write_batch
    ks = Keystore(keys)
    scratch = root / "anatomy"
    scratch.mkdir(exist_ok=True)
    # two counters: advancing the lone one past a store's generation would make that
    # store's own advances no-ops (a lower or equal value changes nothing)
    counter = MonotonicCounter(scratch / "counter.bin", os.urandom(32))
    counter.create()
    lone = MonotonicCounter(scratch / "lone-counter.bin", os.urandom(32))
    lone.create()
    bare = Store.create(scratch / "bare.db", None)
    counted = Store.create(scratch / "counted.db", counter)
    # A second connection to the device's own database, without the counter: the same
    # keystore write minus the replay-protected counter (what dropping it would give).
    uncounted = AsyncStore(Store.open(database, None))
    db = RawDatabase(scratch / "raw.db")
    limiter = trio.CapacityLimiter(1)
    labels = iter(range(1 << 62))
    steps = iter(range(1, 1 << 62))

    async def generate(store: AsyncStore) -> float:
        keys.store = store
        return await _timed_writes(ks, f"anat{next(labels)}", n, batch)

    async def sync_us(fn: Callable[[], object]) -> float:
        await trio.lowlevel.checkpoint()
        return us_per_call(fn, n, 1)

    async def hop() -> float:
        start = time.perf_counter()
        for _ in range(n):
            await trio.to_thread.run_sync(int, limiter=limiter)
        return (time.perf_counter() - start) / n * 1e6

    async def raw(thread: bool) -> float:
        return await raw_write_round(db, f"a{next(labels)}", n, batch, thread=thread) / n * 1e6

    def advance() -> None:
        lone.advance(next(steps))

    items: list[tuple[str, Callable[[], Awaitable[float]]]] = [
        (
            "Keystore.generate via AsyncStore (worker thread), as in the rounds",
            lambda: generate(threaded),
        ),
        (
            "Keystore.generate with an inline AsyncStore (no thread hop)",
            lambda: generate(inline),
        ),
        (
            "Keystore.generate via worker thread WITHOUT the counter (counter=None)",
            lambda: generate(uncounted),
        ),
        (
            "Store.write(no-op): BEGIN, generation bump, COMMIT; no counter",
            lambda: sync_us(lambda: bare.write(lambda c: None)),
        ),
        (
            "Store.write(no-op) + counter.advance (read, HMAC, write, fsync)",
            lambda: sync_us(lambda: counted.write(lambda c: None)),
        ),
        ("MonotonicCounter.advance alone", lambda: sync_us(advance)),
        ("raw INSERT, own transaction, inline", lambda: raw(False)),
        ("raw INSERT, own transaction, via trio.to_thread.run_sync", lambda: raw(True)),
        ("trio.to_thread.run_sync(no-op): the thread hop alone", hop),
    ]
    samples: dict[str, list[float]] = {name: [] for name, _ in items}
    try:
        for r in range(ANATOMY_ROUNDS):
            shift = r % len(items)
            for name, item in items[shift:] + items[:shift]:
                gc.collect()
                samples[name].append(await item())
    finally:
        keys.store = inline
        uncounted.sync.close()
        bare.close()
        counted.close()
        db.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def _anatomy_tables(seal: dict[str, Any], writes: dict[str, float]) -> str:
    def steps_table(op: str) -> str:
        total = seal[f"{op}_us"]
        steps: dict[str, float] = seal[f"{op}_steps_us"]
        rows = [(name, f"{us:.3f}", f"{us / total:.0%}") for name, us in steps.items()]
        rest = total - sum(steps.values())
        rows.append(("rest: Python calls, checks, tuples, try/except", f"{rest:.3f}", ""))
        rows.append((f"= Keystore.{op} ({SIZE} B, {POLICY.value})", f"{total:.3f}", "100%"))
        rows.append((f"raw {op} (what the ratio compares with)", f"{seal[f'raw_{op}_us']:.3f}", ""))
        return render_table((f"{op} anatomy", "us/call", "share"), rows)

    compare = render_table(
        ("for comparison", "us/call"),
        ((name, f"{us:.3f}") for name, us in seal["for_comparison_us"].items()),
    )
    write_table = render_table(
        ("durable write anatomy (one op each)", "us/op", "ops/s"),
        ((name, f"{us:.1f}", f"{1e6 / us:.0f}") for name, us in writes.items()),
    )
    return "\n\n".join((steps_table("seal"), steps_table("unseal"), compare, write_table))


# --- the whole profile ---------------------------------------------------------------------------


async def profile_keystore(state: Path, root: Path, s: Settings) -> tuple[str, dict[str, Any]]:
    """Profile and dissect the keystore of ``ksbench`` in ``state``; returns the report
    (for stderr) and the anatomy figures (for the JSON)."""
    progress(TAG, "profile: the device opened directly, cProfile then step timings")
    device = await Device.open(state)
    try:
        spec = next(sp for sp in resolve(device.config) if sp.id == BENCH_ID)
        keys = device.domain_keys(spec)
        threaded = keys.store
        inline = AsyncStore(device.store.sync, inline=True)
        keys.store = inline
        await load_keys(inline, device.key_index, [keys])
        ks = Keystore(keys)
        raw = RawCrypto()
        data = raw.sealed[SIZE][0]
        message = raw.message
        blob = ks.seal(data, POLICY)
        report = ""

        def sign() -> None:
            for _ in range(s.sign_calls):
                ks.sign(SIGN_LABEL, message)

        def seal() -> None:
            for _ in range(s.seal_calls):
                ks.seal(data, POLICY)

        def unseal() -> None:
            for _ in range(s.seal_calls):
                ks.unseal(blob)

        what = f"{SIZE} B, {POLICY.value}"
        signs, seals = s.sign_calls, s.seal_calls
        for title, fn, calls, top in (
            ("Keystore.sign (64 B message)", sign, signs, 10),
            ("raw Ed25519PrivateKey.sign", lambda: raw_sign_round(raw, signs), signs, 5),
            (f"Keystore.seal ({what})", seal, seals, 15),
            (f"raw seal ({SIZE} B)", lambda: raw_seal_round(raw, SIZE, seals), seals, 5),
            (f"Keystore.unseal ({what})", unseal, seals, 15),
            (f"raw unseal ({SIZE} B)", lambda: raw_unseal_round(raw, SIZE, seals), seals, 5),
        ):
            report += profile_report(profiled_sync(fn), title, calls, top, _group)

        n, batch = s.write_calls, s.write_batch
        profs = cProfile.Profile()
        done = 0
        while done < n:  # only the generates are profiled; the deletes are not
            labels = [f"prof-{i}" for i in range(done, min(n, done + batch))]
            gc.collect()
            profs.enable()
            for label in labels:
                await ks.generate(label, "hmac")
            profs.disable()
            for label in labels:
                await ks.delete(label)
            done += len(labels)
        title = "Keystore.generate(hmac), inline store (no thread hop), counter fsync included"
        report += profile_report(profs, title, n, 20, _group)
        db = RawDatabase(root / "raw-profile.db")
        try:

            async def raw_writes() -> None:
                await raw_write_round(db, "p", n, batch, thread=False)

            title = "raw INSERT (own transaction), inline"
            report += profile_report(await profiled(raw_writes), title, n, 8, _group)
        finally:
            db.close()

        progress(TAG, "profile: step timings (no cProfile)")
        seal_anatomy = _seal_anatomy(keys, ks, raw, max(1000, s.seal_calls // 5))
        database = state / device_internal("DB_FILE")
        writes = await _write_anatomy(keys, threaded, inline, database, root, s)
        report += "\n=== anatomy: each step timed on its own (seal/unseal: best of 3 loops, "
        report += f"the loop's own cost subtracted; writes: median of {ANATOMY_ROUNDS} "
        report += "rotating rounds) ===\n"
        report += _anatomy_tables(seal_anatomy, writes) + "\n"
    finally:
        await device.close()
    return report, {"seal_unseal": seal_anatomy, "write_us": writes}
