"""Output and argument helpers shared by every command: ``--json`` output (indented,
sorted keys, one trailing newline), the refusal line and status, a validity in days."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from ipc import TREError

__all__ = ["MAX_DAYS", "REFUSED", "days_arg", "print_json", "refuse"]

#: Exit status of an input the device refuses (a package, a root, a transfer, a host call).
REFUSED = 3
#: The longest validity a command accepts, in days (a century).
MAX_DAYS = 36500.0


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def refuse(exc: TREError) -> int:
    """Print one line ``tre: error: <CODE>: <message>`` and return :data:`REFUSED`."""
    message = " ".join(str(exc).split())
    print(f"tre: error: {exc.code}: {message}", file=sys.stderr)
    return REFUSED


def days_arg(text: str) -> float:
    """argparse type: a validity in days, finite, above 0, at most :data:`MAX_DAYS`."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_DAYS):
        raise argparse.ArgumentTypeError(f"{text!r} is not a validity in days, (0, {MAX_DAYS:g}]")
    return value
