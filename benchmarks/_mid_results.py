"""The ``mid`` scenario's results: the targets, the ``--json`` document and the tables.

Rates are medians of the interleaved rounds; ``aka_ratio`` is mno AKA runs/s over raw AKA
runs/s (target >= 0.5x); ``install_ratio`` is install seconds over raw verify + hash
seconds (how many times slower; no target, a figure to report).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import cryptography

from ._mid_measure import Outcome
from ._report import (
    Target,
    environment,
    fmt_rate,
    median,
    per_round,
    ratio_row,
    render_table,
    spread,
    targets_json,
    targets_table,
)

__all__ = ["TARGET_AKA", "render", "targets", "to_json"]

TARGET_AKA = 0.5

SIDES = {
    "aka": (
        "host: await t.call('mno', 'authenticate', {imsi, rand, autn}) with a fresh AUTN (SQN "
        "+1, built network-side with pure MILENAGE before the timer); in the domain: "
        "keystore.aka (f2345 + f1 check + freshness), then put_record of the MID record "
        "(sealed; SQLite transaction + replay-protected counter fsync, worker thread) before "
        "RES, CK, IK are returned"
    ),
    "raw_aka": (
        "tre._milenage.Milenage held in a variable: f2345, unconceal SQN, constant-time f1 "
        "check, freshness; then BEGIN IMMEDIATE; INSERT OR REPLACE one row; COMMIT in a "
        "separate SQLite file (WAL, synchronous=FULL, tre._store._connect), via "
        "trio.to_thread.run_sync with CapacityLimiter(1)"
    ),
    "install": (
        "host: await t.call('mno', 'install_package', {package}) of a fresh package (new "
        "txid, higher counter, an IMSI not installed); batch's MIDs deleted afterwards, "
        "untimed"
    ),
    "raw_verify_hash": (
        "Ed25519PublicKey.verify(sig, package_bytes) + hashlib.sha256(package_bytes).digest() "
        "of a package of the same size"
    ),
}

DURABLE_NOTE = (
    "each mno AKA run rewrites the sealed MID record (SQLite COMMIT, WAL fsync) and advances "
    "the replay-protected counter (a second fsync): two fsyncs to the raw side's one, plus "
    "the host call through the kernel"
)


def _med(o: Outcome, name: str) -> float:
    return median(o.rates[name])


def _figures(o: Outcome) -> dict[str, float]:
    aka, raw_aka = _med(o, "aka"), _med(o, "raw_aka")
    install_s, raw_s = 1 / _med(o, "install"), 1 / _med(o, "raw_verify_hash")
    return {
        "aka_per_s": aka,
        "raw_aka_per_s": raw_aka,
        "aka_ratio": aka / raw_aka,
        "install_s": install_s,
        "raw_verify_hash_s": raw_s,
        "install_ratio": install_s / raw_s,
    }


def targets(o: Outcome) -> list[Target]:
    f = _figures(o)
    return [
        (
            "AKA runs/s / raw MILENAGE + durable write",
            f"{f['aka_ratio']:.3f}x",
            f">= {TARGET_AKA}x",
            f["aka_ratio"] >= TARGET_AKA,
        ),
        (
            "install / raw verify + hash (no target)",
            f"{f['install_ratio']:.0f}x slower",
            "report",
            None,
        ),
    ]


def _explanation(o: Outcome) -> str:
    a = o.anatomy
    rows = [
        ("mno.authenticate through the host (whole)", a["authenticate"]),
        ("  host call through the kernel (mno.mid_key)", a["host_call"]),
        ("  raw MILENAGE f2345 + f1 check", a["milenage"]),
        ("  raw durable SQLite write (thread)", a["raw_write"]),
        ("  one more write + fsync of a small file (thread)", a["fsync"]),
        ("  rest (record sealing, msgpack, keystore, copies)", a["rest"]),
    ]
    table = render_table(
        ("quick profile: one AKA run", "us/call"),
        ((what, f"{us:.0f}") for what, us in rows),
    )
    met = _figures(o)["aka_ratio"] >= TARGET_AKA
    verdict = (
        "AKA target met."
        if met
        else "AKA target MISSED: the raw side pays one MILENAGE and one fsync'd commit; "
        "mno.authenticate pays the durable SQN record rewrite (sealed put_record: a SQLite "
        "commit) plus the replay-protected counter's own fsync, and the host call through "
        "the kernel -- roughly the rows above."
    )
    return f"{table}\n{verdict}"


def render(o: Outcome) -> str:
    s = o.settings
    f = _figures(o)
    mode = "quick" if s.quick else "full"
    ops = render_table(
        ("operation", "ours/s", "range", "raw/s", "ratio", "per round", "target"),
        [
            ratio_row("AKA run (SQN durable)*", o.rates["aka"], o.rates["raw_aka"], TARGET_AKA),
        ],
        title=(
            f"mid ({mode}): median of {s.rounds} interleaved rounds; per round {s.aka_calls} "
            f"AKA runs per loop, {s.install_calls} installs, {s.verify_calls} raw verify+hash; "
            f"device on {o.filesystem}"
        ),
    )
    install = render_table(
        ("MID package install", "ms/install", "installs/s range", "raw ms", "raw/s range", "ratio"),
        [
            (
                f"install_package ({o.package_bytes} B package)",
                f"{f['install_s'] * 1e3:.2f}",
                spread(o.rates["install"]),
                f"{f['raw_verify_hash_s'] * 1e3:.4f}",
                spread(o.rates["raw_verify_hash"]),
                f"{f['install_ratio']:.0f}x",
            )
        ],
    )
    notes = f"* {DURABLE_NOTE}.\nraw AKA runs/s: {fmt_rate(f['raw_aka_per_s'])}"
    return "\n\n".join((ops, notes, install, _explanation(o), targets_table(targets(o))))


def to_json(o: Outcome) -> dict[str, Any]:
    s = o.settings
    return {
        "scenario": "mid",
        **_figures(o),
        "aka_target": TARGET_AKA,
        "aka_target_met": _figures(o)["aka_ratio"] >= TARGET_AKA,
        "durable_note": DURABLE_NOTE,
        "sides": SIDES,
        "samples": o.rates,
        "ratio_per_round": {"aka": per_round(o.rates["aka"], o.rates["raw_aka"])},
        "anatomy_us": o.anatomy,
        "targets": targets_json(targets(o)),
        "quick": s.quick,
        "rounds": s.rounds,
        "calls_per_round": {
            "aka": s.aka_calls,
            "install": s.install_calls,
            "verify": s.verify_calls,
        },
        "install_batch": s.install_batch,
        "package_bytes": o.package_bytes,
        "final_sqn": o.final_sqn,
        "mids_left": [list(m) for m in o.mids_left],
        "filesystem": o.filesystem,
        "provision_s": o.provision_s,
        "open_s": o.open_s,
        "elapsed_s": o.elapsed_s,
        "sqlite": sqlite3.sqlite_version,
        "cryptography": cryptography.__version__,
        **environment(),
    }
