"""Scenario ``audit``: the secure audit record (issue 5, section 4), in one run.

1. **durable appends** per second through the audit log of a provisioned temporary device
   (``AuditLog.append`` with the log's writer, ``serve``, doing the group commit), with 1
   and 16 concurrent appenders, against raw SQLite inserts with the same durability (WAL,
   ``synchronous=FULL``, one insert per committed transaction, from a trio worker thread
   as the store does), in interleaved rounds. Target: >= 0.5 x raw per concurrency. The
   log's transaction also advances the replay-protected counter (a second fsync), signs
   the previous batch's checkpoint and encrypts, MACs and hashes each entry.
2. **proofs** as the log grows (1e3, 1e4, 1e5; 1e6 in the full run): inclusion and
   consistency proof generation over the SQLite tables (``SqlNodeStore``) and
   verification, per-size medians, and the ratio and increment between consecutive sizes
   (logarithmic growth: each 10 x adds a roughly constant amount, nowhere near 10 x).
3. **integrity**: the full integrity check against raw SHA-256 of the same bytes, measured
   by :mod:`benchmarks._integrity_measure` (the ``integrity`` scenario's loops). Target:
   within 2 x raw hashing.

Targets are reported, never asserted. Modules: :mod:`benchmarks._audit_measure` (loops,
rounds) and this one (command line, tables, JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from . import _cli, _integrity
from ._audit_measure import APPEND_LOOPS, CONCURRENCY, FULL, QUICK, RAW, Outcome, Settings, run
from ._report import environment, fmt_rate, median, render_table

__all__ = ["SCENARIO", "build_parser", "main", "render", "to_json"]

#: appends_per_s / raw_inserts_per_s, per concurrency
TARGET_APPEND_RATIO = 0.5
#: raw_hash_s / check_s: within 2 x raw hashing
TARGET_INTEGRITY_RATIO = _integrity.TARGET_RATIO
#: a 10 x larger log may cost at most this many times more per proof to count as
#: logarithmic (linear growth would be 10 x)
LOG_GROWTH_MAX_RATIO = 3.0
PROOF_KINDS = ("inclusion", "consistency")
PROOF_STEPS = ("generate", "verify")

WHY_TWO_FSYNCS = (
    "each log transaction also advances the replay-protected counter (a second fsync "
    "after the WAL's), signs the previous batch's checkpoint (Ed25519) and encrypts, MACs "
    "and hashes every entry; a single appender pays all of it per entry, concurrent "
    "appenders share it through the group commit (up to 512 entries a transaction)"
)
PROOF_TREE = (
    "SQLite file with the log's tables (AUDIT_SCHEMA) filled in bulk transactions with "
    "random leaf hashes and the subtree hashes of attestation.append_leaf; proofs generated "
    "through tre._audit_tables.SqlNodeStore (indexed lookups), verified by "
    "attestation.verify_inclusion / verify_consistency (pure compute)"
)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = _cli.scenario_parser(
        prog,
        "Durable audit appends vs raw SQLite inserts, proof generation and verification "
        "as the log grows, and the full integrity check vs raw SHA-256, in one run.",
    )
    _cli.add_dir(
        parser,
        "make the temporary device and databases under DIR (default: the system temp "
        "folder); durable append rates depend on its filesystem",
    )
    tuning = _cli.tuning_group(parser)
    tuning.add_argument("--rounds", type=_cli.positive, help="interleaved rounds of the appends")
    tuning.add_argument(
        "--appends", type=_cli.positive, help="appends (and raw inserts) per loop and round"
    )
    tuning.add_argument(
        "--max-size", type=_cli.positive, help="largest log size for the proofs (sizes above go)"
    )
    tuning.add_argument(
        "--proof-samples", type=_cli.positive, help="timed proofs per kind and size"
    )
    tuning.add_argument("--integrity-rounds", type=_cli.positive, help="integrity check rounds")
    tuning.add_argument("--integrity-reps", type=_cli.positive, help="integrity passes per round")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    s = QUICK if args.quick else FULL
    changes: dict[str, Any] = {"directory": args.dir}
    if args.rounds is not None:
        changes["rounds"] = args.rounds
    if args.appends is not None:
        changes["appends"] = {c: max(c, args.appends) for c in CONCURRENCY}
        changes["raw_inserts"] = args.appends
    if args.max_size is not None:
        sizes = tuple(n for n in s.sizes if n <= args.max_size)
        changes["sizes"] = sizes or (args.max_size,)
    if args.proof_samples is not None:
        changes["proof_samples"] = args.proof_samples
    integrity = s.integrity
    if args.integrity_rounds is not None:
        integrity = dataclasses.replace(integrity, rounds=args.integrity_rounds)
    if args.integrity_reps is not None:
        integrity = dataclasses.replace(integrity, reps=args.integrity_reps)
    changes["integrity"] = integrity
    return dataclasses.replace(s, **changes)


# --- figures -------------------------------------------------------------------------------


def _appends(outcome: Outcome) -> tuple[dict[str, float], float, dict[str, float]]:
    rates = {c: median(outcome.append_rates[f"log_c{c}"]) for c in CONCURRENCY}
    raw = median(outcome.append_rates[RAW])
    per_s = {str(c): rate for c, rate in rates.items()}
    ratio = {str(c): rate / raw for c, rate in rates.items()}
    return per_s, raw, ratio


def _proof_us(outcome: Outcome) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for size, p in sorted(outcome.proofs.items()):
        out[str(size)] = {
            "inclusion": {
                "generate": median(p.inclusion_generate),
                "verify": median(p.inclusion_verify),
            },
            "consistency": {
                "generate": median(p.consistency_generate),
                "verify": median(p.consistency_verify),
            },
            "inclusion_proof_hashes": median(p.proof_hashes),
        }
    return out


def _growth(proof_us: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Ratio and increment between consecutive sizes, per kind and step."""
    sizes = list(proof_us)
    out = []
    for small, large in itertools.pairwise(sizes):
        entry: dict[str, Any] = {"from": int(small), "to": int(large)}
        for kind in PROOF_KINDS:
            for step in PROOF_STEPS:
                a, b = proof_us[small][kind][step], proof_us[large][kind][step]
                entry[f"{kind}_{step}"] = {"ratio": b / a, "increment_us": b - a}
        out.append(entry)
    return out


def _logarithmic(growth: list[dict[str, Any]]) -> bool:
    return all(
        e[f"{k}_{s}"]["ratio"] < LOG_GROWTH_MAX_RATIO
        for e in growth
        for k in PROOF_KINDS
        for s in PROOF_STEPS
    )


def to_json(outcome: Outcome) -> dict[str, Any]:
    s = outcome.settings
    per_s, raw, ratio = _appends(outcome)
    proof_us = _proof_us(outcome)
    growth = _growth(proof_us)
    integ = _integrity.figures(outcome.integrity)
    fx = outcome.integrity.fixture
    return {
        "scenario": "audit",
        "appends_per_s": per_s,
        "raw_inserts_per_s": raw,
        "append_ratio": ratio,
        "append_target": {
            "target": "durable appends >= 0.5 x raw SQLite inserts of the same durability",
            "min_ratio": TARGET_APPEND_RATIO,
            "met": {c: r >= TARGET_APPEND_RATIO for c, r in ratio.items()},
            "why": WHY_TWO_FSYNCS,
        },
        "proof_us": proof_us,
        "proof_growth": growth,
        "proof_logarithmic": _logarithmic(growth),
        "proof_tree": PROOF_TREE,
        "proof_build_s": {str(n): v for n, v in sorted(outcome.build_s.items())},
        "integrity_check_s": integ["check_s"],
        "integrity_raw_hash_s": integ["raw_hash_s"],
        "integrity_raw_read_hash_s": integ["raw_read_hash_s"],
        "integrity_ratio": integ["ratio"],
        "integrity_ratio_read_hash": integ["ratio_read_hash"],
        "integrity_target": {
            "target": "full check within 2 x raw hashing (raw_hash_s / check_s)",
            "min_ratio": TARGET_INTEGRITY_RATIO,
            "met": integ["ratio"] >= TARGET_INTEGRITY_RATIO,
            "met_vs_read_hash": integ["ratio_read_hash"] >= TARGET_INTEGRITY_RATIO,
        },
        "integrity_files": len(fx.paths),
        "integrity_bytes": sum(map(len, fx.blobs)),
        "integrity_mismatches": outcome.integrity.mismatches,
        "append_samples": outcome.append_rates,
        "append_ratio_per_round": {
            str(c): [
                log / raw
                for log, raw in zip(
                    outcome.append_rates[f"log_c{c}"], outcome.append_rates[RAW], strict=True
                )
            ]
            for c in CONCURRENCY
        },
        "quick": s.quick,
        "rounds": s.rounds,
        "appends": {str(c): n for c, n in s.appends.items()},
        "raw_inserts": s.raw_inserts,
        "sizes": list(s.sizes),
        "proof_samples": s.proof_samples,
        "integrity_rounds": s.integrity.rounds,
        "integrity_reps": s.integrity.reps,
        "log_size": outcome.log_size,
        **environment(),
        "elapsed_s": outcome.elapsed_s,
    }


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def render(outcome: Outcome) -> str:
    s = outcome.settings
    per_s, raw, ratio = _appends(outcome)
    rows = [
        [
            f"log, {c} appender(s)",
            fmt_rate(per_s[c]),
            f"{ratio[c]:.2f}",
            _met(ratio[c] >= TARGET_APPEND_RATIO),
        ]
        for c in per_s
    ]
    rows.append(["raw insert (1 txn each)", fmt_rate(raw), "1.00", ""])
    lines = [
        render_table(
            ["loop", "entries/s", "x raw", f"target >= {TARGET_APPEND_RATIO}"],
            rows,
            title=(
                f"audit appends (durable, WAL + synchronous=FULL): median of {s.rounds} "
                f"rounds; {', '.join(f'{n} appends at c={c}' for c, n in s.appends.items())}, "
                f"{s.raw_inserts} raw inserts per round"
            ),
        ),
        f"why: {WHY_TWO_FSYNCS}",
        "",
    ]
    proof_us = _proof_us(outcome)
    growth = _growth(proof_us)
    rows = []
    previous: dict[str, Any] | None = None
    for size, f in proof_us.items():
        cells = [f"{int(size):,}".replace(",", " "), f"{f['inclusion_proof_hashes']:.0f}"]
        for kind in PROOF_KINDS:
            for step in PROOF_STEPS:
                value = f[kind][step]
                grow = "" if previous is None else f" (x{value / previous[kind][step]:.2f})"
                cells.append(f"{value:.1f}{grow}")
        rows.append(cells)
        previous = f
    lines += [
        render_table(
            ["entries", "hashes", "incl gen us", "incl verify us", "cons gen us", "cons verify us"],
            rows,
            title=(
                f"proofs as the log grows: median of {s.proof_samples} random indices / old "
                "sizes per size; (x..) = vs the previous size"
            ),
        ),
        "increments per 10 x (us): "
        + "; ".join(
            f"{e['from']}->{e['to']}: "
            + ", ".join(
                f"{k[:4]} {st[:3]} {e[f'{k}_{st}']['increment_us']:+.1f}"
                for k in PROOF_KINDS
                for st in PROOF_STEPS
            )
            for e in growth
        ),
        f"logarithmic (every 10 x costs < {LOG_GROWTH_MAX_RATIO:.0f} x): "
        f"{'yes' if _logarithmic(growth) else 'NO'}",
        f"tree: {PROOF_TREE}",
        "",
    ]
    integ = _integrity.figures(outcome.integrity)
    fx = outcome.integrity.fixture
    rows = [
        ["full check", f"{integ['check_s'] * 1e3:.3f}", "", ""],
        [
            "raw SHA-256, in memory",
            f"{integ['raw_hash_s'] * 1e3:.3f}",
            f"{integ['ratio']:.2f}",
            _met(integ["ratio"] >= TARGET_INTEGRITY_RATIO),
        ],
        [
            "raw read + SHA-256",
            f"{integ['raw_read_hash_s'] * 1e3:.3f}",
            f"{integ['ratio_read_hash']:.2f}",
            _met(integ["ratio_read_hash"] >= TARGET_INTEGRITY_RATIO),
        ],
    ]
    lines += [
        render_table(
            ["loop", "ms / pass", "raw / check", f"target >= {TARGET_INTEGRITY_RATIO}"],
            rows,
            title=(
                f"integrity: {len(fx.paths)} files, {sum(map(len, fx.blobs))} bytes; median of "
                f"{s.integrity.rounds} rounds x {s.integrity.reps} passes "
                "(benchmarks._integrity_measure)"
            ),
        ),
        f"full check = {1 / integ['ratio']:.2f} x in-memory SHA-256, "
        f"{1 / integ['ratio_read_hash']:.2f} x read + SHA-256 of the same files",
    ]
    if outcome.integrity.mismatches:
        lines.append(f"note: {len(outcome.integrity.mismatches)} scopes did not match")
    lines.append(
        f"(append loops: {', '.join(APPEND_LOOPS)}; log size at the end: {outcome.log_size})"
    )
    return "\n".join(lines)


def main(argv: Sequence[str], prog: str = "python -m benchmarks audit") -> int:
    args = build_parser(prog).parse_args(list(argv))
    settings = settings_from_args(args)
    return _cli.run_scenario(args, lambda: run(settings), render, to_json)


SCENARIO: tuple[str, Callable[[Sequence[str], str], int]] = (
    "durable audit appends vs raw SQLite, proof costs as the log grows, integrity check",
    main,
)
