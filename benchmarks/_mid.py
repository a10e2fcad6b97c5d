"""Scenario ``mid``: MID authentication and package install in the mno domain, and domain
package install, against raw primitives, in one run (issue 6, section 5).

On a provisioned temporary device (``factory_init`` + ``provision``, booted with
``tre.open_tre(state=...)``), interleaved rounds of:

(1) **AKA runs per second**: the host calls ``mno.authenticate`` with fresh AUTNs (SQN
    going up, built network-side with the pure MILENAGE functions before the timer); each
    run persists its SQN durably before answering. Baseline: raw MILENAGE (f1 check +
    f2345, ``tre._milenage`` on a key in a variable) plus one raw durable SQLite write
    (WAL, ``synchronous=FULL``, one row per committed transaction, via a trio worker
    thread). Target: >= 0.5x.
(2) **MID package install time**: ``mno.install_package`` through the host with fresh
    packages (deleted again afterwards, untimed), against raw Ed25519 verify plus SHA-256
    of the same bytes. The ratio is reported; it has no target.
(3) **Domain package install time**: ``tre._install.install_package`` (``tre install``)
    updating the ``meter`` domain of a second, unbooted device from the same factory, with
    TUF-style packages signed by its owner (release counter going up), for the meter code
    and for the meter code plus a 256 KiB data file; against raw Ed25519 verify of the
    signed metadata plus SHA-256 of every file, and against ``attestation.verify_package``
    + ``check_files``. The ratio (installs/s over baseline/s, like the AKA figure) is
    reported; it has no target. Step timings after the rounds show where an install's time
    goes (device open, verification, staging with fsync, loading, the commit).

After the rounds a quick step timing of one AKA run (host call, MILENAGE, durable write,
an extra fsync) explains the ratio; ``--profile`` adds cProfile of the host loop.

Modules: :mod:`benchmarks._mid_measure` (device, network side, loops, rounds),
:mod:`benchmarks._mid_install` (the domain installs and their step timings),
:mod:`benchmarks._mid_results` (tables, JSON), this one (the command line).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from . import _cli
from ._mid_measure import FULL, INSTALL_BATCH, QUICK, Settings, run
from ._mid_results import render, to_json

__all__ = ["SCENARIO", "build_parser", "main", "settings_from_args"]


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = _cli.scenario_parser(
        prog,
        "MID AKA runs (durable SQN) and MID package installs through the mno domain, and "
        "domain package installs (tre install), against raw MILENAGE + a durable SQLite "
        "write and raw Ed25519 verify + SHA-256.",
        profile_help="afterwards, cProfile the host's AKA loop (to stderr)",
    )
    _cli.add_dir(
        parser,
        "make the temporary device and raw database under DIR (default: the system temp "
        "folder); durable write rates depend on its filesystem",
    )
    tuning = _cli.tuning_group(parser)
    tuning.add_argument("--rounds", type=_cli.positive, help="interleaved rounds")
    tuning.add_argument("--aka-calls", type=_cli.positive, help="AKA runs per round (each loop)")
    tuning.add_argument("--install-calls", type=_cli.positive, help="installs per round")
    tuning.add_argument("--verify-calls", type=_cli.positive, help="raw verify+hash per round")
    tuning.add_argument(
        "--install-batch",
        type=_cli.positive,
        help=f"installs between untimed deletions (default and maximum {INSTALL_BATCH})",
    )
    tuning.add_argument(
        "--anatomy-calls", type=_cli.positive, help="calls per step of the quick profile"
    )
    tuning.add_argument(
        "--domain-install-calls", type=_cli.positive, help="domain installs per round (each size)"
    )
    tuning.add_argument(
        "--domain-verify-calls",
        type=_cli.positive,
        help="raw verify+hash and verify_package calls per round (each size)",
    )
    tuning.add_argument(
        "--large-kib", type=_cli.positive, help="the large package's data file, KiB (default 256)"
    )
    tuning.add_argument(
        "--domain-anatomy-calls",
        type=_cli.positive,
        help="calls per step of the install step timings",
    )
    _cli.add_warmup_fraction(tuning)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    s = QUICK if args.quick else FULL
    changes: dict[str, Any] = {"profile": bool(args.profile), "directory": args.dir}
    changes |= _cli.overrides(
        args,
        (
            "rounds",
            "aka_calls",
            "install_calls",
            "verify_calls",
            "install_batch",
            "anatomy_calls",
            "domain_install_calls",
            "domain_verify_calls",
            "large_kib",
            "domain_anatomy_calls",
        ),
    )
    changes |= _cli.warmup_fraction(args)
    return dataclasses.replace(s, **changes)


def main(argv: Sequence[str], prog: str = "python -m benchmarks mid") -> int:
    args = build_parser(prog).parse_args(list(argv))
    settings = settings_from_args(args)
    return _cli.run_scenario(args, lambda: run(settings), render, to_json, lambda o: o.profile)


SCENARIO: tuple[str, Callable[[Sequence[str], str], int]] = (
    "MID AKA runs (durable SQN), MID and domain package installs vs raw MILENAGE, SQLite, "
    "Ed25519 + SHA-256",
    main,
)
