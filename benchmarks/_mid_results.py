"""The ``mid`` scenario's results: the targets, the ``--json`` document and the tables.

Rates are medians of the interleaved rounds; ``aka_ratio`` is mno AKA runs/s over raw AKA
runs/s (target >= 0.5x); ``install_ratio`` is MID install seconds over raw verify + hash
seconds (how many times slower; no target, a figure to report). The domain package installs
are expressed like the AKA figure: ``domain_install_ratio`` is installs/s over raw verify +
hash/s of the same bytes (0.01x: an install does a hundredth of the baseline's rate), for
the meter code and (``_large``) with an extra data file; ``*_verify_package_ratio`` is the
same against ``attestation.verify_package`` + ``check_files``. No target.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import cryptography

from ._mid_install import DATA_FILE, DOMAIN, PAYLOADS, suffix
from ._mid_measure import Outcome
from ._report import (
    Target,
    environment,
    fmt_bytes,
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
        "keystore.aka (f2345 + f1 check + freshness), then advance_counter of the MID's SQN "
        "counter (one in-place write + fsync of its authenticated record, worker thread) "
        "before RES, CK, IK are returned"
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


def _domain_sides() -> dict[str, str]:
    sides: dict[str, str] = {}
    for payload in PAYLOADS:
        end = suffix(payload)
        what = f"the {DOMAIN} code files" + (f" + {DATA_FILE}" if payload == "large" else "")
        sides |= {
            f"domain_install{end}": (
                f"tre._install.install_package(state, envelope, files, domain={DOMAIN!r}) of "
                f"{what}, release counter +1 each (an update; envelopes signed by the owner "
                "before the timer), on a provisioned device that is not booted: state lock, "
                "device open, verify_package against the stored root, files staged with "
                "fsync, loaded and measured, one SQLite transaction + replay-protected counter "
                "fsync, old version folder deleted"
            ),
            f"raw_domain_verify_hash{end}": (
                "Ed25519PublicKey.verify(sig, signed_metadata_bytes) of the same envelope + "
                f"hashlib.sha256(data).digest() of every file of {what}"
            ),
            f"domain_verify_package{end}": (
                "attestation.verify_package(root, envelope, ...) + attestation.check_files("
                f"package, files) of {what}, in memory: the library's verification only"
            ),
        }
    return sides


SIDES |= _domain_sides()

DURABLE_NOTE = (
    "each mno AKA run raises the MID's replay-protected SQN counter (one write + fsync of "
    "its authenticated record, as a USIM keeps SQN in its own memory) where the raw side "
    "commits one SQLite row (WAL fsync); ours also pays the host call through the kernel"
)


def _med(o: Outcome, name: str) -> float:
    return median(o.rates[name])


def _domain_figures(o: Outcome, payload: str) -> dict[str, float]:
    end = suffix(payload)
    install = _med(o, f"domain_install{end}")
    raw = _med(o, f"raw_domain_verify_hash{end}")
    verify = _med(o, f"domain_verify_package{end}")
    return {
        f"domain_install{end}_s": 1 / install,
        f"raw_domain_verify_hash{end}_s": 1 / raw,
        f"domain_verify_package{end}_s": 1 / verify,
        f"domain_install{end}_ratio": install / raw,
        f"domain_install{end}_verify_package_ratio": install / verify,
    }


def _figures(o: Outcome) -> dict[str, float]:
    aka, raw_aka = _med(o, "aka"), _med(o, "raw_aka")
    install_s, raw_s = 1 / _med(o, "install"), 1 / _med(o, "raw_verify_hash")
    figures = {
        "aka_per_s": aka,
        "raw_aka_per_s": raw_aka,
        "aka_ratio": aka / raw_aka,
        "install_s": install_s,
        "raw_verify_hash_s": raw_s,
        "install_ratio": install_s / raw_s,
    }
    for payload in PAYLOADS:
        figures |= _domain_figures(o, payload)
    return figures


def _payload_label(o: Outcome, payload: str) -> str:
    p = o.domain.payloads[payload]
    extra = f", {DATA_FILE}" if payload == "large" else ""
    return f"{DOMAIN} {payload}: {p['files']} files{extra}, {fmt_bytes(p['bytes'])}"


def _small_ratio(ratio: float) -> str:
    """A rate ratio far below 1: ``0.0076x (132x the time)``."""
    return f"{ratio:.4f}x ({1 / ratio:.0f}x the time)"


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
        *(
            (
                f"{DOMAIN} install ({payload}) / raw verify + hash (no target)",
                _small_ratio(f[f"domain_install{suffix(payload)}_ratio"]),
                "report",
                None,
            )
            for payload in PAYLOADS
        ),
    ]


def _explanation(o: Outcome) -> str:
    a = o.anatomy
    rows = [
        ("mno.authenticate through the host (whole)", a["authenticate"]),
        ("  host call through the kernel (mno.status)", a["host_call"]),
        ("  raw MILENAGE f2345 + f1 check", a["milenage"]),
        ("  write + fsync of a 48-byte record (thread): the SQN counter", a["fsync"]),
        ("  rest (keystore, counter MAC, checks)", a["rest"]),
        ("the raw side's durable SQLite write (thread), for comparison", a["raw_write"]),
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
        "mno.authenticate pays MILENAGE, the SQN counter's write + fsync and the host call "
        "through the kernel -- roughly the rows above."
    )
    return f"{table}\n{verdict}"


def _domain_table(o: Outcome) -> str:
    f = _figures(o)
    rows = []
    for payload in PAYLOADS:
        end = suffix(payload)
        install, raw = o.rates[f"domain_install{end}"], o.rates[f"raw_domain_verify_hash{end}"]
        rounds = per_round(install, raw)
        rows.append(
            (
                _payload_label(o, payload),
                f"{f[f'domain_install{end}_s'] * 1e3:.2f}",
                spread(install),
                f"{f[f'raw_domain_verify_hash{end}_s'] * 1e3:.4f}",
                spread(raw),
                _small_ratio(f[f"domain_install{end}_ratio"]),
                f"{min(rounds):.4f}-{max(rounds):.4f}",
                f"{f[f'domain_verify_package{end}_s'] * 1e3:.4f}",
                f"{f[f'domain_install{end}_verify_package_ratio']:.4f}x",
            )
        )
    return render_table(
        (
            "domain package install (update)",
            "ms/install",
            "installs/s range",
            "raw ms",
            "raw/s range",
            "ratio (rate)",
            "per round",
            "verify_package ms",
            "ratio",
        ),
        rows,
        title=(
            f"tre._install.install_package of {DOMAIN} on a device not booted; raw: one "
            "Ed25519 verify of the signed metadata + SHA-256 of every file; verify_package: "
            "attestation.verify_package + check_files (in memory)"
        ),
    )


def _domain_explanation(o: Outcome) -> str:
    rows = (
        ("install_package (whole)", "install"),
        ("  state lock + open the device + close", "open"),
        ("  (for comparison: measuring the TRE's code, which installs skip)", "tre_code_hash"),
        ("  verify_package + check_files (in memory)", "verify"),
        ("  stage: files written + fsync'd, folders fsync'd, read back, rename", "stage"),
        ("    of which writing + fsync of the files and their folder", "write_fsync"),
        ("  load the staged code (strict) + measure it", "load"),
        ("  commit: SQLite transaction + replay-protected counter fsync", "commit"),
        ("  rest (root and records read, key derivation, old folder deleted)", "rest"),
    )
    a = o.domain.anatomy
    table = render_table(
        (f"quick profile: one {DOMAIN} install", *(f"{p} ms" for p in PAYLOADS)),
        ((what, *(f"{a[p][key] / 1e3:.3f}" for p in PAYLOADS)) for what, key in rows),
    )
    small = a["small"]
    whole = small["install"]

    def share(key: str) -> str:
        return f"{small[key] / whole:.0%}"

    lines = [
        f"Shares of a {DOMAIN} code install (steps timed alone, "
        f"{o.settings.domain_anatomy_calls} calls each, median of 3): verification "
        f"{share('verify')}; durable I/O: staging {share('stage')} (writing + fsync alone "
        f"{share('write_fsync')}) and the commit {share('commit')}; opening the device "
        f"{share('open')} (the TRE's code is no longer measured: nothing is derived from it "
        f"unless rows are re-sealed); loading the "
        f"new code {share('load')}; rest {share('rest')}.",
    ]
    f = _figures(o)
    extra = o.domain.payloads["large"]["bytes"] - o.domain.payloads["small"]["bytes"]
    added = f["domain_install_large_s"] - f["domain_install_s"]
    hashing = f["raw_domain_verify_hash_large_s"] - f["raw_domain_verify_hash_s"]
    staging = a["large"]["stage"] - small["stage"]
    lines.append(
        f"{fmt_bytes(extra)} more: {added * 1e3:+.2f} ms per install and {hashing * 1e3:+.2f} "
        f"ms of raw verify + hash (medians of the rounds); staging {staging / 1e3:+.2f} ms "
        "(step timings)."
    )
    return f"{table}\n" + "\n".join(lines)


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
    parts = (ops, notes, install, _explanation(o), _domain_table(o), _domain_explanation(o))
    return "\n\n".join((*parts, targets_table(targets(o))))


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
        "ratio_per_round": {
            "aka": per_round(o.rates["aka"], o.rates["raw_aka"]),
            **{
                f"domain_install{suffix(p)}": per_round(
                    o.rates[f"domain_install{suffix(p)}"],
                    o.rates[f"raw_domain_verify_hash{suffix(p)}"],
                )
                for p in PAYLOADS
            },
        },
        "anatomy_us": o.anatomy,
        "domain_anatomy_us": o.domain.anatomy,
        "domain_payloads": o.domain.payloads,
        "domain_counter": o.domain.counter,
        "targets": targets_json(targets(o)),
        "quick": s.quick,
        "rounds": s.rounds,
        "calls_per_round": {
            "aka": s.aka_calls,
            "install": s.install_calls,
            "verify": s.verify_calls,
            "domain_install": s.domain_install_calls,
            "domain_verify": s.domain_verify_calls,
        },
        "large_kib": s.large_kib,
        "domain_anatomy_calls": s.domain_anatomy_calls,
        "install_batch": s.install_batch,
        "package_bytes": o.package_bytes,
        "final_sqn": o.final_sqn,
        "mids_left": [list(m) for m in o.mids_left],
        "filesystem": o.filesystem,
        "provision_s": o.provision_s,
        "install_device_provision_s": o.domain.provision_s,
        "open_s": o.open_s,
        "elapsed_s": o.elapsed_s,
        "sqlite": sqlite3.sqlite_version,
        "cryptography": cryptography.__version__,
        **environment(),
    }
