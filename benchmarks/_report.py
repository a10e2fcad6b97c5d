"""Shared helpers for the scenarios: progress to stderr, tables to stdout, JSON, metadata.

Progress goes to stderr so that stdout holds only the final table (pipe it, diff it);
machine-readable results go to the ``--json`` file.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import msgpack
import trio

__all__ = [
    "Target",
    "environment",
    "fmt_bytes",
    "fmt_rate",
    "median",
    "package_of",
    "per_round",
    "progress",
    "ratio_row",
    "render_table",
    "short_path",
    "spread",
    "status",
    "targets_json",
    "targets_table",
    "write_json",
]

#: (target, measured, goal, met) of a targets table; met is None when a run cannot tell
Target = tuple[str, str, str, bool | None]

#: The project's root directory (the parent of ``benchmarks/``), with a trailing slash.
_ROOT = str(Path(__file__).resolve().parent.parent).replace(os.sep, "/") + "/"


def progress(tag: str, message: str, *, stream: TextIO | None = None) -> None:
    """One progress line, ``[tag] message``, to stderr (flushed at once)."""
    out = sys.stderr if stream is None else stream
    print(f"[{tag}] {message}", file=out, flush=True)


def median(values: Iterable[float]) -> float:
    data = list(values)
    if not data:
        raise ValueError("median of no values")
    return float(statistics.median(data))


def fmt_rate(value: float) -> str:
    """Calls per second with thousands separators: ``54 321``."""
    return f"{value:,.0f}".replace(",", " ")


def fmt_bytes(value: float) -> str:
    if abs(value) >= 1024:
        return f"{value:,.0f} B ({value / 1024:.1f} KiB)".replace(",", " ")
    return f"{value:.0f} B"


def spread(rates: Sequence[float]) -> str:
    """The range of a loop's rates over the rounds: ``min-max``."""
    return f"{fmt_rate(min(rates))}-{fmt_rate(max(rates))}"


def status(met: bool | None) -> str:
    """``met``, ``MISSED`` or ``n/a`` (this run cannot tell)."""
    return "n/a" if met is None else ("met" if met else "MISSED")


def per_round(ours: Sequence[float], raw: Sequence[float]) -> list[float]:
    """ours / raw within each round (the two ran in the same round)."""
    return [a / b for a, b in zip(ours, raw, strict=True)]


def ratio_row(
    what: str, ours: Sequence[float], raw: Sequence[float], goal: float | None, goal_fmt: str = ""
) -> tuple[str, ...]:
    """One row of an operations table: what, our rate, its range, the raw rate, the
    ratio of the medians, its range per round, the target (``>= {goal}x met``)."""
    a, b = median(ours), median(raw)
    ratio = a / b
    met = None if goal is None else ratio >= goal
    target = "" if goal is None else f">= {goal:{goal_fmt}}x {status(met)}"
    rounds = per_round(ours, raw)
    return (
        what,
        fmt_rate(a),
        spread(ours),
        fmt_rate(b),
        f"{ratio:.3f}x",
        f"{min(rounds):.2f}-{max(rounds):.2f}",
        target,
    )


def targets_json(rows: Iterable[Target]) -> list[dict[str, Any]]:
    """The ``targets`` list of the ``--json`` document."""
    return [
        {"target": name, "measured": value, "goal": goal, "met": met}
        for name, value, goal, met in rows
    ]


def targets_table(rows: Iterable[Target]) -> str:
    """The targets table printed last."""
    return render_table(
        ("target", "measured", "goal", "status"),
        ((name, value, goal, status(met)) for name, value, goal, met in rows),
    )


def render_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, title: str | None = None
) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    body = [list(map(str, row)) for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells, expected {len(headers)}")
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])]
        out += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    lines = [] if title is None else [title]
    lines.append(line(headers))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(line(row) for row in body)
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    """Where the figures come from: interpreter, libraries, machine, time."""
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "trio": trio.__version__,
        "msgpack": ".".join(map(str, msgpack.version)),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON (atomically: a temp file renamed over ``path``)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(target)


def short_path(filename: str) -> str:
    """``.../site-packages/trio/_core/_run.py`` -> ``trio/_core/_run.py``; stdlib files
    relative to the stdlib, project files relative to the project."""
    path = filename.replace(os.sep, "/")
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3" else tail
    return path.removeprefix(_ROOT)


def package_of(filename: str) -> str:
    """Which part of the stack a source file (as tracemalloc or cProfile name it) is in."""
    if filename.startswith("<attrs generated"):
        # "<attrs generated methods outcome._impl.Value>": file it under its package.
        path = filename.rsplit(" ", 1)[-1].rstrip(">").replace(".", "/")
    else:
        path = short_path(filename)
    for prefix, group in (
        ("tre/", "tre (runtime)"),
        ("ipc/", "ipc (codec, envelopes)"),
        ("trio/", "trio"),
        ("outcome/", "outcome"),
        ("msgpack/", "msgpack (py)"),
        ("benchmarks/", "benchmarks"),
    ):
        if path.startswith(prefix):
            return group
    if "/lib/python3" in filename.replace(os.sep, "/"):
        return "stdlib (py)"
    return "other"
