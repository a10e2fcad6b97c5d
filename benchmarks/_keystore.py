"""Scenario ``keystore``: what a domain keystore costs over the raw primitives it wraps.

One run, on one interpreter and within the same minutes, measures:

(a) **sign**: ``ctx.keystore.sign(label, 64-byte message)`` with an Ed25519 key held in the
    keystore, vs ``Ed25519PrivateKey.sign`` on a key held in a variable;
(b) **seal / unseal** of 64 B and 1 KiB payloads under the ``measurement`` and ``owner``
    policies: ``ctx.keystore.seal(data, policy)`` / ``unseal(blob)`` vs a prebuilt
    ``AESGCM`` (AES-256): ``encrypt(os.urandom(12), data, None)`` and ``decrypt(nonce, ct,
    None)``, no associated data, no framing;
(c) **durable key writes**: ``await ctx.keystore.generate(unique_label, "hmac")`` vs one
    ``INSERT`` of a row of the same size, each its own committed transaction, into a
    separate database file with the TRE's own settings and schema (WAL,
    ``synchronous=FULL``, one connection), from a trio worker thread as the keystore's
    ``AsyncStore`` does; the same insert inline (no thread hop) is an extra row. The
    keystore's write includes, by design, the replay-protected counter's write and fsync
    (rollback detection): two fsyncs per write to the raw insert's one.

The keystore is a real one: a factory and a device are made in a temporary folder
(``factory_init`` + ``provision``), with one domain, ``ksbench``, which the scenario boots
with ``tre.open_tre(state=...)``. Every keystore loop runs inside ``ksbench`` calling its
``ctx.keystore`` (synchronously for sign/seal/unseal): the host makes one kernel call per
round and the domain times its own loop, so the kernel call is in no figure. The raw loops
run in the host task. Every loop runs once per round, in an order that rotates each round,
so machine noise hits both sides alike; rates are medians of the rounds and ratios are
keystore / raw. Targets (reported, never asserted): sign >= 0.8x raw, seal >= 0.5x raw
(unseal is shown against the same goal), durable writes >= 0.5x the raw insert.

``--profile`` then opens the device directly and shows where the keystore's time goes
(:mod:`benchmarks._keystore_profile`): cProfile of each operation and an anatomy of seal,
unseal and the durable write, step by step.

The modules: :mod:`benchmarks._keystore_loops` (the domain, the raw loops, the device),
:mod:`benchmarks._keystore_measure` (settings, rounds), :mod:`benchmarks._keystore_results`
(targets, JSON, tables), :mod:`benchmarks._keystore_profile`, this one (the command line).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._keystore_loops import WRITE_BATCH
from ._keystore_measure import FULL, QUICK, Settings, run
from ._keystore_results import render, to_json
from ._report import write_json

__all__ = ["SCENARIO", "build_parser", "main", "settings_from_args"]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Keystore sign, seal, unseal and durable key writes through a domain keystore, "
            "against the raw cryptography primitives and a raw SQLite insert, in one run."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="short run (under a minute)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, show where the keystore's time goes (cProfile and step timings, "
        "to stderr)",
    )
    parser.add_argument(
        "--dir",
        metavar="DIR",
        help="make the temporary device and raw database under DIR (default: the system "
        "temp folder); durable write rates depend on its filesystem",
    )
    tuning = parser.add_argument_group(
        "overrides (for smoke tests; figures are not comparable with standard runs)"
    )
    tuning.add_argument("--rounds", type=_positive, help="interleaved rounds")
    tuning.add_argument("--sign-calls", type=_positive, help="signs per round")
    tuning.add_argument("--seal-calls", type=_positive, help="seals (and unseals) per round")
    tuning.add_argument("--write-calls", type=_positive, help="durable writes per round")
    tuning.add_argument(
        "--write-batch",
        type=_positive,
        help=f"writes between untimed clean-ups (default {WRITE_BATCH})",
    )
    tuning.add_argument(
        "--warmup",
        type=float,
        help="untimed warm-up of every loop, as a fraction of its calls (default 0.1)",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    s = QUICK if args.quick else FULL
    changes: dict[str, Any] = {"profile": bool(args.profile), "directory": args.dir}
    for name in ("rounds", "sign_calls", "seal_calls", "write_calls", "write_batch"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    if args.warmup is not None:
        changes["warmup"] = max(0.0, args.warmup)
    return dataclasses.replace(s, **changes)


def main(argv: Sequence[str], prog: str = "python -m benchmarks keystore") -> int:
    args = build_parser(prog).parse_args(list(argv))
    settings = settings_from_args(args)
    started = time.perf_counter()
    outcome = run(settings)
    if outcome.profile is not None:
        sys.stderr.write(outcome.profile)
        sys.stderr.flush()
    outcome.elapsed_s = time.perf_counter() - started
    print(render(outcome))
    if args.json:
        write_json(args.json, to_json(outcome))
        print(f"\nJSON written to {args.json}")
    print(f"\ntotal elapsed: {outcome.elapsed_s:.1f} s")
    return 0


SCENARIO: tuple[str, Callable[[Sequence[str], str], int]] = (
    "keystore sign/seal/unseal and durable key writes vs raw cryptography and SQLite",
    main,
)
