"""Scenario ``attest``: evidence, its verification and attested sessions, against raw crypto.

One run measures, on the same interpreter and within the same minutes, in interleaved
rounds (every loop once per round, in an order that rotates each round, so machine noise
hits both sides alike; rates are medians of the rounds, ratios TRE / raw of the medians):

(a) **evidence generation**: ``t.attest(nonce)`` on a TRE booted with ``tre.open_tre()``
    (the default reference domains on an ephemeral device) against the raw
    ``Ed25519PrivateKey.sign`` of a message exactly as long as the outer token's payload.
    Domain tokens are signed once per boot; each request signs only the outer token.
    Target: >= 0.8x.
(b) **verification**: ``attestation.verify_evidence(evidence, ca=..., nonce=..., now=...,
    reference=...)`` against the raw cost of the signature checks it must make, counted from
    the evidence: the outer token, the DeviceID certificate (by the CA), and per domain its
    nested token and its alias certificate (by the DeviceID): 2 + 2 x domains
    ``Ed25519PublicKey.verify`` calls over the very keys, signatures and signed bytes of the
    evidence. Target: a verification no slower than 1.5x that raw cost, i.e.
    ``verify_ratio`` (raw time / verify time) >= 1/1.5.
(c) **session messages**: a domain-to-domain round trip through the kernel over an
    attested session (client seals, calls the server's service, server opens and seals a
    reply, client opens), 64 B and 1 KiB, against a bare channel plus AEAD: two plain trio
    tasks over trio memory channels doing the same ChaCha20-Poly1305 encrypt/decrypt with
    counter nonces on each side. Target: >= 0.5x. Extra rows split the difference: the same
    two tasks with real ``ipc.SecureSession`` objects, and a plain kernel call with no
    session.

``--profile`` then shows where the time goes (:mod:`benchmarks._attest_profile`): cProfile
of every loop and the steps of each operation timed on their own.

The modules: :mod:`benchmarks._attest_loops` (the fixture, the domains, the loops),
:mod:`benchmarks._attest_measure` (settings, rounds), :mod:`benchmarks._attest_results`
(targets, JSON, tables), :mod:`benchmarks._attest_profile`, this one (the command line).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from . import _cli
from ._attest_measure import FULL, QUICK, Settings, run
from ._attest_results import render, to_json

__all__ = ["SCENARIO", "build_parser", "main", "settings_from_args"]


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = _cli.scenario_parser(
        prog,
        "Attestation evidence generation and verification against raw Ed25519 sign and "
        "verify, and attested-session messages against a bare channel plus AEAD, in one "
        "run.",
        profile_help="afterwards, show where the time goes (cProfile and step timings, to stderr)",
    )
    tuning = _cli.tuning_group(parser)
    tuning.add_argument("--rounds", type=_cli.positive, help="interleaved rounds")
    tuning.add_argument(
        "--evidence-calls", type=_cli.positive, help="evidence / raw signs per round"
    )
    tuning.add_argument(
        "--verify-calls", type=_cli.positive, help="verifications / raw check sets per round"
    )
    tuning.add_argument(
        "--session-calls", type=_cli.positive, help="session round trips per round (each loop)"
    )
    _cli.add_warmup_fraction(tuning)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    s = QUICK if args.quick else FULL
    changes: dict[str, Any] = {"profile": bool(args.profile)}
    changes |= _cli.overrides(args, ("rounds", "evidence_calls", "verify_calls", "session_calls"))
    changes |= _cli.warmup_fraction(args)
    return dataclasses.replace(s, **changes)


def main(argv: Sequence[str], prog: str = "python -m benchmarks attest") -> int:
    args = build_parser(prog).parse_args(list(argv))
    settings = settings_from_args(args)
    return _cli.run_scenario(args, lambda: run(settings), render, to_json, lambda o: o.profile)


SCENARIO: tuple[str, Callable[[Sequence[str], str], int]] = (
    "attestation evidence and verification vs raw Ed25519; attested sessions vs bare AEAD",
    main,
)
