"""The ``ipc`` scenario's results: the targets, the ``--json`` document and the tables.

Every figure is the median of the rounds. Ratios are taken within one TRE size, where the
loops ran interleaved: ``ratio`` is mediated / ``baseline`` (msgpack by hand) in the
2-domain TRE, ``ratio_ipc`` and ``ratio_local`` the same against the extra baselines.
"""

from __future__ import annotations

from typing import Any

from ._loops import BASELINES, DEADLINE, QUOTAS, RAW
from ._measure import Outcome, SizeResult
from ._report import (
    Target,
    environment,
    fmt_bytes,
    fmt_rate,
    median,
    render_table,
    spread,
    targets_json,
    targets_table,
)

__all__ = ["render", "targets", "to_json"]

# Targets (reported, never asserted).
TARGET_RATIO = 1.0
TARGET_SCALE = 0.90
TARGET_BOOT_S = 1.0
TARGET_BYTES = 32 * 1024


def _ratio(res: SizeResult, name: str) -> float:
    """Mediated / baseline ``name`` in one TRE size, where the two ran interleaved."""
    return median(res.mediated) / median(res.rates[name])


def targets(o: Outcome) -> list[Target]:
    """(target, measured, goal, met) rows; met is None when this run cannot tell."""
    sizes = o.sizes
    small = sizes["2"]
    biggest = sizes[max(sizes, key=int)]
    ratio = _ratio(small, RAW.name)
    rows: list[Target] = [
        ("mediated / baseline", f"{ratio:.3f}x", f">= {TARGET_RATIO:.1f}x", ratio >= TARGET_RATIO)
    ]
    if biggest.idle >= 1000:
        rel = median(biggest.mediated) / median(small.mediated)
        goal = f">= {TARGET_SCALE:.2f}x"
        what = f"{biggest.domains} domains vs 2: calls/s"
        rows.append((what, f"{rel:.3f}x", goal, rel >= TARGET_SCALE))
        boot = median(biggest.boot_s)
        goal = f"< {TARGET_BOOT_S:.0f} s"
        what = f"boot of {biggest.domains} domains"
        rows.append((what, f"{boot:.3f} s", goal, boot < TARGET_BOOT_S))
    else:
        rows.append(("1000 idle domains: calls/s, boot", "not measured", "-", None))
    per = o.memory.bytes_per_domain
    goal = f"< {TARGET_BYTES // 1024} KiB"
    rows.append(("memory per idle domain", f"{per / 1024:.1f} KiB", goal, per < TARGET_BYTES))
    return rows


def to_json(o: Outcome) -> dict[str, Any]:
    """The ``--json`` document (see :mod:`benchmarks._ipc` for the keys of per-size maps).

    ``{name}_rtt_per_s`` and the matching ratio are None for an extra baseline skipped by
    option.
    """
    s = o.settings
    sizes = o.sizes
    small = sizes["2"]
    extras: dict[str, float | None] = {}
    for base in BASELINES[1:]:
        ran = base.name in small.rates
        extras[f"{base.name}_rtt_per_s"] = median(small.rates[base.name]) if ran else None
        extras[base.ratio_key] = _ratio(small, base.name) if ran else None
    scale = {k: median(r.mediated) for k, r in sizes.items()}
    scale_baseline = {k: median(r.baseline) for k, r in sizes.items()}
    norm_2 = scale["2"] / scale_baseline["2"]
    return {
        "scenario": "ipc",
        "baseline_rtt_per_s": median(small.baseline),
        "mediated_rtt_per_s": median(small.mediated),
        "ratio": _ratio(small, RAW.name),
        **extras,
        "scale": scale,
        "scale_keys": "total domains in the TRE: client + echo + idle",
        "idle_domains": {k: r.idle for k, r in sizes.items()},
        "scale_vs_2": {k: v / scale["2"] for k, v in scale.items()},
        "scale_baseline": scale_baseline,
        "scale_vs_2_normalized": {k: (scale[k] / scale_baseline[k]) / norm_2 for k in sizes},
        "boot_s": {k: median(r.boot_s) for k, r in sizes.items()},
        "open_tre_s": {k: median(r.open_s) for k, r in sizes.items()},
        "shutdown_s": {k: median(r.shutdown_s) for k, r in sizes.items()},
        "bytes_per_domain": o.memory.bytes_per_domain,
        "bytes_per_domain_snapshot": o.memory.snapshot_bytes_per_domain,
        "memory_domains": o.memory.domains,
        "memory_by_package": o.memory.by_package,
        "memory_top": [
            {"site": site, "bytes_per_domain": size, "blocks_per_domain": count}
            for site, size, count in o.memory.top
        ],
        "samples": {
            k: {
                **r.rates,
                "boot_s": r.boot_s,
                "open_tre_s": r.open_s,
                "shutdown_s": r.shutdown_s,
            }
            for k, r in sizes.items()
        },
        "targets": targets_json(targets(o)),
        **environment(),
        "quick": s.quick,
        "rounds": s.rounds,
        "calls_per_round": s.calls,
        "warmup_calls": s.warmup_calls,
        "boot_repeats": s.boot_repeats,
        "statistic": "median of rounds",
        "baseline_capacity": s.baseline_capacity,
        "baseline_codecs": {b.name: b.codec for b in s.baseline_loops},
        "quotas": QUOTAS,
        "deadline_s": DEADLINE,
        "elapsed_s": o.elapsed_s,
    }


def _calls_table(o: Outcome) -> str:
    s = o.settings
    small = o.sizes["2"]
    base = median(small.baseline)
    rows: list[tuple[str, ...]] = []
    for b in s.baseline_loops:
        rates = small.rates[b.name]
        rate = median(rates)
        rows.append((b.label, fmt_rate(rate), spread(rates), f"{rate / base:.3f}x", ""))
    med_2 = median(small.mediated)
    for key, res in o.sizes.items():
        rate = median(res.mediated)
        what = "mediated: client -> echo" + (f", +{res.idle} idle" if res.idle else "")
        rows.append(
            (
                f"{what} ({key} domains)",
                fmt_rate(rate),
                spread(res.mediated),
                f"{rate / base:.3f}x",
                f"{rate / med_2:.3f}x",
            )
        )
    mode = "quick" if s.quick else "full"
    return render_table(
        ("round trips", "calls/s", "range", "vs baseline", "vs 2 domains"),
        rows,
        title=(
            f"ipc ({mode}): median of {s.rounds} interleaved rounds x {s.calls} calls; "
            f"baseline channels of capacity {s.baseline_capacity}; "
            "rate limits 1e9/s, burst 1e9 (never throttle)"
        ),
    )


def _window_table(o: Outcome) -> str:
    """Mediated vs every baseline within each TRE size (the loops ran interleaved there)."""
    bases = o.settings.baseline_loops
    rows = [
        (
            f"{key} domains",
            fmt_rate(median(res.baseline)),
            fmt_rate(median(res.mediated)),
            *(f"{_ratio(res, b.name):.3f}" for b in bases),
        )
        for key, res in o.sizes.items()
    ]
    headers = ("same-window check", "baseline calls/s", "mediated calls/s")
    return render_table(headers + tuple(f"mediated/{b.name}" for b in bases), rows)


def _boot_table(o: Outcome) -> str:
    return render_table(
        ("boot (median)", "boot_seconds", "open_tre enter", "per domain", "shutdown"),
        (
            (
                f"{key} domains ({res.idle} idle)",
                f"{median(res.boot_s):.4f} s",
                f"{median(res.open_s):.4f} s",
                f"{median(res.boot_s) / res.domains * 1e6:.0f} us",
                f"{median(res.shutdown_s):.4f} s",
            )
            for key, res in o.sizes.items()
        ),
    )


def _memory_table(o: Outcome) -> str:
    mem = o.memory
    return render_table(
        (f"memory per idle domain ({mem.domains} booted, tracemalloc)", "bytes/domain"),
        [
            ("traced memory difference", fmt_bytes(mem.bytes_per_domain)),
            ("snapshot difference (gc.collect first)", fmt_bytes(mem.snapshot_bytes_per_domain)),
            *((f"  by package: {name}", f"{size:.0f} B") for name, size in mem.by_package.items()),
            *((f"  by line: {site}", f"{size:.0f} B") for site, size, _ in mem.top[:8]),
        ],
    )


def render(o: Outcome) -> str:
    """The tables printed to stdout: rates, same-window ratios, boot, memory, targets."""
    target_table = targets_table(targets(o))
    tables = (_calls_table(o), _window_table(o), _boot_table(o), _memory_table(o), target_table)
    return "\n\n".join(tables)
