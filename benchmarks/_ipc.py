"""Scenario ``ipc``: what the kernel's mediation costs, and how it scales with domain count.

One run measures, on the same interpreter and within the same minutes:

(a) **baseline** (the headline): a bare request/response between two plain trio tasks over
    two trio memory channels (capacity :data:`~benchmarks._loops.BASELINE_CAPACITY` by
    default), each side msgpack-encoding and decoding the same envelope and payload as the
    kernel, by hand: the client sends ``msgpack.packb([0, msgid, "echo", 60.0, payload],
    use_bin_type=True)``, the server ``msgpack.unpackb(data, raw=False)``s it and answers
    ``packb([1, msgid, body])``, the client unpacks the reply. No validation layer: this is
    what a user would write without a kernel, the fastest baseline and the strictest
    comparison. ``ratio`` (mediated / baseline) is against it.
(a') two extra baselines, the same two tasks and wire arrays with another codec:
    **baseline_ipc**, the public strict codec (``ipc.encode`` / ``ipc.decode`` of
    ``ipc.Request`` / ``ipc.Response``, what a peer over a socket would run; ``ratio_ipc``),
    and **baseline_local**, the codec the kernel itself uses between domains
    (``ipc.LocalCodec``), so that the difference to (b) is the mediation alone with codec
    costs equal (``ratio_local``).
(b) **mediated**: the same payload as a kernel-mediated call from domain ``client`` to domain
    ``echo``. The loop runs inside ``client`` (a domain reaches others only through its
    context): the host calls ``client.bench`` with ``{"n": N}`` and the handler times N
    ``await self.ctx.call("echo", "echo", payload)``.
(c) (b) again with 10, 100 and 1000 idle domains (no services, no ``run()``) booted in the
    same TRE.

Every loop runs once per round inside every TRE size, in an order that rotates each round,
so that machine noise hits them alike; medians are reported and the ratios are taken from
the 2-domain TRE's rounds. Every TRE size is booted ``boot_repeats`` times to time
``open_tre`` (``t.boot_seconds``: the boot of all domains; ``open_s``: the whole ``async
with open_tre`` enter, measured here). Memory per idle domain is measured last, under
``tracemalloc`` (:mod:`benchmarks._memory`); ``--profile`` then runs each loop under cProfile
(:mod:`benchmarks._profile`).

Keys of ``scale``, ``boot_s`` and the other per-size maps in the JSON are the TOTAL number of
domains in the TRE as strings: ``"2"`` (client + echo), ``"12"``, ``"102"``, ``"1002"``
(client + echo + 10/100/1000 idle); ``idle_domains`` maps each key to its idle count.

Rate limits are set to the manifest maxima (``calls_per_second`` 1e9, ``burst`` 1e9) so the
token buckets never throttle a run, and deadlines are longer than any run.

The modules: :mod:`benchmarks._loops` (payload, domains, one round of each loop),
:mod:`benchmarks._measure` (settings, boots and rounds), :mod:`benchmarks._results`
(targets, JSON, tables), this one (the command line).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from . import _cli
from ._loops import BASELINE_CAPACITY, IPC, LOCAL
from ._measure import FULL, QUICK, Settings, run
from ._results import render, to_json

__all__ = ["SCENARIO", "build_parser", "main", "settings_from_args"]


# --- command line ----------------------------------------------------------------------------


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not counts or any(c < 0 or c > 100_000 for c in counts):
        raise argparse.ArgumentTypeError("idle counts must be 0..100000")
    return counts


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = _cli.scenario_parser(
        prog,
        "Kernel-mediated call rate vs a bare trio baseline, scaling with idle domains, "
        "boot time and memory per domain.",
        profile_help="afterwards, run each loop under cProfile and print the top functions "
        "to stderr",
    )
    parser.add_argument(
        "--baseline-capacity",
        type=int,
        choices=(0, 1),
        default=None,
        help=f"memory channel capacity of the baselines (default {BASELINE_CAPACITY})",
    )
    tuning = _cli.tuning_group(parser)
    tuning.add_argument("--calls", type=_cli.positive, help="calls per timed round")
    tuning.add_argument("--rounds", type=_cli.positive, help="alternating rounds per TRE size")
    tuning.add_argument(
        "--domains",
        type=_counts,
        metavar="N[,N...]",
        help="idle domain counts (default 10,100,1000)",
    )
    tuning.add_argument("--boot-repeats", type=_cli.positive, help="boots timed per TRE size")
    tuning.add_argument("--warmup", type=int, help="untimed warm-up calls per TRE size")
    tuning.add_argument(
        "--no-ipc-baseline",
        action="store_true",
        help="skip the extra baseline that uses the strict codec (ipc.encode/decode)",
    )
    tuning.add_argument(
        "--no-local-baseline",
        action="store_true",
        help="skip the extra baseline that uses the kernel's codec (ipc.LocalCodec)",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    s = QUICK if args.quick else FULL
    skipped = {IPC.name} if args.no_ipc_baseline else set()
    if args.no_local_baseline:
        skipped.add(LOCAL.name)
    changes: dict[str, Any] = {
        "profile": bool(args.profile),
        "baselines": tuple(name for name in s.baselines if name not in skipped),
    }
    changes |= _cli.overrides(args, ("calls", "rounds", "boot_repeats", "baseline_capacity"))
    if args.warmup is not None:
        changes["warmup_calls"] = max(0, args.warmup)
    if args.domains is not None:
        idle = tuple(c for c in args.domains if c > 0)
        changes["idle_counts"] = idle
        changes["memory_domains"] = max(idle, default=10)
    return dataclasses.replace(s, **changes)


def main(argv: Sequence[str], prog: str = "python -m benchmarks ipc") -> int:
    args = build_parser(prog).parse_args(list(argv))
    settings = settings_from_args(args)
    return _cli.run_scenario(args, lambda: run(settings), render, to_json, lambda o: o.profile)


SCENARIO: tuple[str, Callable[[Sequence[str], str], int]] = (
    "kernel-mediated IPC vs a bare trio baseline; scaling, boot time, memory per domain",
    main,
)
