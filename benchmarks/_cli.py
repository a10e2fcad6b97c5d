"""The command-line plumbing every scenario shares: common options, overrides, the run.

Each scenario builds its parser with :func:`scenario_parser` (``--quick``, ``--json`` and,
when asked, ``--profile``), adds its own options and tuning flags (to the group of
:func:`tuning_group`), maps them onto its settings with :func:`overrides`, and runs with
:func:`run_scenario`: the optional profile report to stderr, the tables to stdout, the
``--json`` file, the total elapsed time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from ._report import write_json

__all__ = [
    "add_dir",
    "add_warmup_fraction",
    "overrides",
    "positive",
    "run_scenario",
    "scenario_parser",
    "tuning_group",
    "warmup_fraction",
]


def positive(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def scenario_parser(
    prog: str,
    description: str,
    *,
    quick_help: str = "short run (under a minute)",
    profile_help: str | None = None,
) -> argparse.ArgumentParser:
    """A scenario's parser with ``--quick``, ``--json FILE`` and, given its help,
    ``--profile``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    if profile_help is not None:
        parser.add_argument("--profile", action="store_true", help=profile_help)
    return parser


def add_dir(parser: argparse.ArgumentParser, help: str) -> None:
    """``--dir DIR``: where the temporary device and databases go."""
    parser.add_argument("--dir", metavar="DIR", help=help)


def tuning_group(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The group of the tuning overrides."""
    return parser.add_argument_group(
        "overrides (for smoke tests; figures are not comparable with standard runs)"
    )


def add_warmup_fraction(group: argparse._ArgumentGroup) -> None:
    """``--warmup F``: untimed warm-up as a fraction of each loop's calls."""
    group.add_argument(
        "--warmup",
        type=float,
        help="untimed warm-up of every loop, as a fraction of its calls (default 0.1)",
    )


def overrides(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """``{name: value}`` of the options in ``names`` that were given on the command line."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def warmup_fraction(args: argparse.Namespace) -> dict[str, Any]:
    """``{"warmup": F}`` (clamped at 0) when ``--warmup`` was given."""
    return {} if args.warmup is None else {"warmup": max(0.0, args.warmup)}


class _Outcome(Protocol):
    elapsed_s: float


OutcomeT = TypeVar("OutcomeT", bound=_Outcome)


def run_scenario(
    args: argparse.Namespace,
    measure: Callable[[], OutcomeT],
    render: Callable[[OutcomeT], str],
    to_json: Callable[[OutcomeT], dict[str, Any]],
    profile: Callable[[OutcomeT], str | None] | None = None,
) -> int:
    """Run, print the profile report (if any) to stderr and the tables to stdout, write
    ``--json``, print the elapsed time; returns the exit status."""
    started = time.perf_counter()
    outcome = measure()
    report = None if profile is None else profile(outcome)
    if report is not None:
        sys.stderr.write(report)
        sys.stderr.flush()
    outcome.elapsed_s = time.perf_counter() - started
    print(render(outcome))
    if args.json:
        write_json(args.json, to_json(outcome))
        print(f"\nJSON written to {args.json}")
    print(f"\ntotal elapsed: {outcome.elapsed_s:.1f} s")
    return 0
