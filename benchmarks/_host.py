"""Scenario ``host``: authenticated host calls over the Unix socket against a bare socket
round trip of the same frames, in one run; and the cost of a login.

On a provisioned temporary device (``factory_init`` + ``provision`` with one admin user,
default scrypt), booted with ``tre.open_tre(state=...)``, the benchmark process serves the
host interface (``t.serve_host``) and a bare server side by side in its trio run, and drives
a client process. Interleaved rounds of:

(1) **host calls per second**: one logged-in connection, ``n`` sequential
    ``HostClient.call("oem", "info")``: the client frames a REQUEST, the server reads and
    decodes it, checks it, calls oem through the kernel as the user (session expiry,
    grants, the user's outstanding-call budget), frames the RESPONSE; the client reads and
    decodes it.
(2) **bare round trips per second** (the baseline): the same client, the same REQUEST bytes
    out, the same RESPONSE bytes back, over the same kind of Unix socket to a trio task of
    the same run that only decodes each frame and sends a reply framed beforehand.
(3) **bare + kernel call** (explains the ratio, no target): the bare server awaiting
    ``HostSession.call("oem", "info")`` for each request before the same precomputed reply:
    the kernel call as the socket path pays it, without the host server's own code, so that
    (1) - (3) is the host server's own cost and (3) - (2) the kernel call's.

Target: (1) >= 0.8x (2). After the rounds: the login (``HostClient.login`` whole, then its
steps: two round trips and the client's scrypt), and step timings in process (``t.call``,
``HostSession.call``, decoding the request, framing the reply) to show where a host call's
time goes; ``--profile`` adds cProfile of this process during a host round.

**Why the client is a separate process.** The socket is there for software outside the
TRE, so its calls cross a process boundary; a client in the server's process would share
its GIL (a thread) or its event loop (a trio client): either would serialise the client's
work with the server's and measure a situation no real client is in, and the thread would
add GIL hand-offs the bare side does not pay in the same way. One client process, holding
both connections and running both loops with the same code (``HostClient``, the blocking
client of ``tre call``), puts the baseline and the host calls on exactly the same footing:
the same interpreter, the same syscalls and wake-ups across two processes, the same
encoding and decoding on the client side. The client times its loops itself (the control
pipe to it is outside every timer), and both servers run in the same trio run next to the
same booted TRE, so the only difference between the two loops is what the server does
between reading a request and sending its reply.

Modules: :mod:`benchmarks._host_measure` (device, servers, loops, rounds, step timings),
:mod:`benchmarks._host_client` (the client process), :mod:`benchmarks._host_results`
(tables, JSON), this one (the command line).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from . import _cli
from ._host_measure import FULL, QUICK, Settings, run
from ._host_results import render, to_json

__all__ = ["SCENARIO", "build_parser", "main", "settings_from_args"]


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = _cli.scenario_parser(
        prog,
        "Authenticated host calls over the Unix socket against a bare socket round trip of "
        "the same frames (client in its own process); login cost with default scrypt.",
        profile_help="afterwards, cProfile this process (server side) during a host round "
        "(to stderr)",
    )
    _cli.add_dir(
        parser,
        "make the temporary device and the sockets under DIR (default: the system temp "
        "folder); a socket path must stay under 108 bytes",
    )
    tuning = _cli.tuning_group(parser)
    tuning.add_argument("--rounds", type=_cli.positive, help="interleaved rounds")
    tuning.add_argument("--calls", type=_cli.positive, help="calls per round (each loop)")
    tuning.add_argument("--logins", type=_cli.positive, help="logins timed (whole, and by step)")
    tuning.add_argument(
        "--anatomy-calls", type=_cli.positive, help="calls per step of the quick profile"
    )
    _cli.add_warmup_fraction(tuning)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    s = QUICK if args.quick else FULL
    changes: dict[str, Any] = {"profile": bool(args.profile), "directory": args.dir}
    changes |= _cli.overrides(args, ("rounds", "calls", "logins", "anatomy_calls"))
    changes |= _cli.warmup_fraction(args)
    return dataclasses.replace(s, **changes)


def main(argv: Sequence[str], prog: str = "python -m benchmarks host") -> int:
    args = build_parser(prog).parse_args(list(argv))
    settings = settings_from_args(args)
    return _cli.run_scenario(args, lambda: run(settings), render, to_json, lambda o: o.profile)


SCENARIO: tuple[str, Callable[[Sequence[str], str], int]] = (
    "authenticated host calls over the socket vs a bare socket round trip; login cost",
    main,
)
