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
from collections.abc import Callable, Sequence
from typing import Any

from . import _cli
from ._keystore_loops import WRITE_BATCH
from ._keystore_measure import FULL, QUICK, Settings, run
from ._keystore_results import render, to_json

__all__ = ["SCENARIO", "build_parser", "main", "settings_from_args"]


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = _cli.scenario_parser(
        prog,
        "Keystore sign, seal, unseal and durable key writes through a domain keystore, "
        "against the raw cryptography primitives and a raw SQLite insert, in one run.",
        profile_help="afterwards, show where the keystore's time goes (cProfile and step "
        "timings, to stderr)",
    )
    _cli.add_dir(
        parser,
        "make the temporary device and raw database under DIR (default: the system "
        "temp folder); durable write rates depend on its filesystem",
    )
    tuning = _cli.tuning_group(parser)
    tuning.add_argument("--rounds", type=_cli.positive, help="interleaved rounds")
    tuning.add_argument("--sign-calls", type=_cli.positive, help="signs per round")
    tuning.add_argument("--seal-calls", type=_cli.positive, help="seals (and unseals) per round")
    tuning.add_argument("--write-calls", type=_cli.positive, help="durable writes per round")
    tuning.add_argument(
        "--write-batch",
        type=_cli.positive,
        help=f"writes between untimed clean-ups (default {WRITE_BATCH})",
    )
    _cli.add_warmup_fraction(tuning)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    s = QUICK if args.quick else FULL
    changes: dict[str, Any] = {"profile": bool(args.profile), "directory": args.dir}
    changes |= _cli.overrides(
        args, ("rounds", "sign_calls", "seal_calls", "write_calls", "write_batch")
    )
    changes |= _cli.warmup_fraction(args)
    return dataclasses.replace(s, **changes)


def main(argv: Sequence[str], prog: str = "python -m benchmarks keystore") -> int:
    args = build_parser(prog).parse_args(list(argv))
    settings = settings_from_args(args)
    return _cli.run_scenario(args, lambda: run(settings), render, to_json, lambda o: o.profile)


SCENARIO: tuple[str, Callable[[Sequence[str], str], int]] = (
    "keystore sign/seal/unseal and durable key writes vs raw cryptography and SQLite",
    main,
)
