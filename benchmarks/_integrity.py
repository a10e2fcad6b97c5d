"""Scenario ``integrity``: the full code-base integrity check against raw SHA-256 of the same
bytes (issue 5, section 4).

One run provisions a device in a temporary folder with the reference domains (sealed by
provisioning against the code as installed) and times, in interleaved rounds (every loop
once per round, in an order that rotates each round, so machine noise hits all alike;
figures are medians of the rounds):

* ``check``: ``IntegrityMonitor.check_sync()``, everything a boot or run-time check does:
  for the TRE's code (``tre``, ``ipc``, ``attestation`` as installed) and each domain, read
  and verify the signed manifest, walk the folders, read and hash every file, compare;
* ``raw_hash``: ``hashlib.sha256`` over the very same bytes, held in memory;
* ``raw_read_hash``: the same files read from disk and hashed, from a path list made once;
* extras with no target, to show where the difference goes: the folder walk alone, and
  the manifests alone (JSON parse + Ed25519 verify).

Target (reported, never asserted): a full check within 2 x raw hashing, i.e.
``ratio`` = ``raw_hash_s`` / ``check_s`` >= 0.5. ``ratio_read_hash`` is the same against
the read-and-hash baseline.

The modules: :mod:`benchmarks._integrity_measure` (fixture, loops, rounds) and this one
(the command line, the table and the JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from . import _cli
from ._integrity_measure import FULL, LOOPS, QUICK, Outcome, Settings, run
from ._report import environment, fmt_bytes, median, render_table

__all__ = ["SCENARIO", "TARGET_RATIO", "build_parser", "main", "render", "to_json"]

#: raw_hash_s / check_s: a full check within 2 x raw hashing
TARGET_RATIO = 0.5


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = _cli.scenario_parser(
        prog,
        "The full code-base integrity check (the TRE and the reference domains of a "
        "provisioned temporary device) against raw SHA-256 of the same bytes, in one run.",
        quick_help="short run (a few seconds)",
    )
    tuning = _cli.tuning_group(parser)
    tuning.add_argument("--rounds", type=_cli.positive, help="interleaved rounds")
    tuning.add_argument(
        "--reps", type=_cli.positive, help="passes over every file per loop and round"
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    s = QUICK if args.quick else FULL
    return dataclasses.replace(s, **_cli.overrides(args, ("rounds", "reps")))


def figures(outcome: Outcome) -> dict[str, float]:
    med = {name: median(values) for name, values in outcome.samples.items()}
    return {
        "check_s": med["check"],
        "raw_hash_s": med["raw_hash"],
        "raw_read_hash_s": med["raw_read_hash"],
        "walk_s": med["walk"],
        "manifests_s": med["manifests"],
        "ratio": med["raw_hash"] / med["check"],
        "ratio_read_hash": med["raw_read_hash"] / med["check"],
    }


def to_json(outcome: Outcome) -> dict[str, Any]:
    fx = outcome.fixture
    f = figures(outcome)
    total = sum(map(len, fx.blobs))
    s = outcome.settings
    return {
        "scenario": "integrity",
        **f,
        "files": len(fx.paths),
        "bytes": total,
        "check_mb_per_s": total / f["check_s"] / 1e6,
        "raw_hash_mb_per_s": total / f["raw_hash_s"] / 1e6,
        "files_per_scope": fx.scopes,
        "domains": fx.domains,
        "mismatches": outcome.mismatches,
        "target": {
            "target": "full check within 2 x raw hashing (raw_hash_s / check_s)",
            "min_ratio": TARGET_RATIO,
            "ratio": f["ratio"],
            "met": f["ratio"] >= TARGET_RATIO,
        },
        "loops": {name: {"side": side, "what": what} for name, (side, what) in LOOPS.items()},
        "samples": outcome.samples,
        "ratio_per_round": [
            raw / check
            for raw, check in zip(
                outcome.samples["raw_hash"], outcome.samples["check"], strict=True
            )
        ],
        "quick": s.quick,
        "rounds": s.rounds,
        "reps": s.reps,
        **environment(),
        "elapsed_s": outcome.elapsed_s,
    }


def render(outcome: Outcome) -> str:
    fx = outcome.fixture
    f = figures(outcome)
    total = sum(map(len, fx.blobs))
    check = f["check_s"]
    rows = []
    for name, key in (
        ("check", "check_s"),
        ("raw_hash", "raw_hash_s"),
        ("raw_read_hash", "raw_read_hash_s"),
        ("walk", "walk_s"),
        ("manifests", "manifests_s"),
    ):
        side = LOOPS[name][0]
        rows.append(
            [
                name,
                side,
                f"{f[key] * 1e3:.3f}",
                f"{total / f[key] / 1e6:.0f}",
                f"{f[key] / check:.2f}",
            ]
        )
    table = render_table(
        ["loop", "side", "ms / pass", "MB/s", "x check"],
        rows,
        title=(
            f"integrity: {len(fx.paths)} files, {fmt_bytes(total)} "
            f"(TRE {fx.scopes.get('tre', 0)} files; domains {', '.join(fx.domains)}); "
            f"median of {outcome.settings.rounds} rounds x {outcome.settings.reps} passes"
        ),
    )
    met = "met" if f["ratio"] >= TARGET_RATIO else "MISSED"
    lines = [
        table,
        "",
        f"full check vs raw SHA-256 of the same bytes: ratio {f['ratio']:.2f} "
        f"(target >= {TARGET_RATIO}: {met}); check = {1 / f['ratio']:.1f} x raw hashing",
        f"full check vs read + hash of the same files: ratio {f['ratio_read_hash']:.2f}",
        "(MB/s of the walk and manifest rows: covered bytes over that step's time)",
    ]
    if outcome.mismatches:
        lines.append(f"note: {len(outcome.mismatches)} scopes did not match their manifests")
    lines += ["", "loops:"] + [f"  {n:14} {what}" for n, (_, what) in LOOPS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str], prog: str = "python -m benchmarks integrity") -> int:
    args = build_parser(prog).parse_args(list(argv))
    settings = settings_from_args(args)
    return _cli.run_scenario(args, lambda: run(settings), render, to_json)


SCENARIO: tuple[str, Callable[[Sequence[str], str], int]] = (
    "full code-base integrity check vs raw SHA-256 of the same bytes",
    main,
)
