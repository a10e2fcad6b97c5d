"""Smoke test of ``python -m benchmarks attest`` with tiny sizes.

Checks that the scenario runs end to end (two TREs booted side by side, evidence made and
verified, an attested session between two domains, the raw loops, ``--profile``) and that
its JSON has every key with sane values. It never asserts speed: the figures of a run this
small mean nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.benchmark_helpers import (
    assert_listed_with_help,
    assert_ratio,
    assert_rounds,
    assert_summary,
    positive,
    run_scenario,
)

TINY = ["--rounds", "2", "--evidence-calls", "40", "--verify-calls", "4"]
TINY += ["--session-calls", "60", "--warmup", "0.5"]

REQUIRED = {
    "scenario",
    "evidence_per_s",
    "raw_sign_per_s",
    "evidence_ratio",
    "verify_per_s",
    "raw_verify_equiv_per_s",
    "verify_ratio",
    "signature_checks_per_verify",
    "signature_checks_observed",
    "signature_checks",
    "session_msgs_per_s",
    "bare_aead_msgs_per_s",
    "session_ratio",
    "session_breakdown",
    "evidence",
    "raw_sides",
    "tre_sides",
    "samples",
    "ratio_per_round",
    "targets",
    "python",
    "trio",
    "cryptography",
    "cbor2",
    "cores",
    "quick",
    "rounds",
    "calls_per_round",
    "timestamp",
    "elapsed_s",
}


def test_attest_tiny_run_writes_complete_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "attest.json"
    data, captured = run_scenario(capsys, out, ["attest", *TINY, "--profile"], REQUIRED)
    assert_ratio(data, "evidence_ratio", "evidence_per_s", "raw_sign_per_s")
    assert_ratio(data, "verify_ratio", "verify_per_s", "raw_verify_equiv_per_s")
    assert_ratio(data, "session_ratio", "session_msgs_per_s", "bare_aead_msgs_per_s")

    # the default TRE: the four reference domains, one nested token each
    evidence = data["evidence"]
    domains = evidence["domains"]
    assert set(domains) == {"oem", "meter", "mno", "vault"}
    assert evidence["sig_structure_bytes"] > evidence["payload_bytes"] > 0
    assert evidence["evidence_bytes"] > evidence["payload_bytes"]
    # 2 + 2 x domains required checks, counted from the evidence
    checks = data["signature_checks_per_verify"]
    assert checks == 2 + 2 * len(domains) == len(data["signature_checks"])
    assert all(positive(c["signed_bytes"]) for c in data["signature_checks"])
    assert data["signature_checks"][0]["signed_bytes"] == evidence["sig_structure_bytes"]
    # what verify_evidence really made, counted under cProfile (a cache may make it fewer)
    observed = data["signature_checks_observed"]
    assert all(type(v) is int and v >= 0 for v in observed.values())
    assert observed["total"] == observed["token_signatures"] + observed["certificate_signatures"]
    assert math.isclose(data["raw_verify_checks_per_s"], data["raw_verify_equiv_per_s"] * checks)

    breakdown = data["session_breakdown"]
    assert set(breakdown) == {"64", "1024"}
    for entry in breakdown.values():
        for key in ("session_msgs_per_s", "bare_aead_msgs_per_s", "bare_session_msgs_per_s"):
            assert positive(entry[key])
        assert positive(entry["plain_call_per_s"])
        assert math.isclose(
            entry["ratio"], entry["session_msgs_per_s"] / entry["bare_aead_msgs_per_s"]
        )
    assert breakdown["64"]["session_msgs_per_s"] == data["session_msgs_per_s"]

    loops = {"evidence", "raw_sign", "raw_sign_sig", "verify", "raw_verify"}
    for size in (64, 1024):
        loops |= {f"{k}_{size}" for k in ("session", "bare_aead", "bare_session", "plain_call")}
    assert set(data["samples"]) == loops
    assert_rounds(data["samples"], 2)
    per_round = data["ratio_per_round"]
    assert set(per_round) == {"evidence", "verify", "session_64", "session_1024"}
    assert_rounds(per_round, 2)

    targets = {t["target"]: t for t in data["targets"]}
    assert len(targets) == 4
    assert all(isinstance(t["met"], bool) for t in targets.values())
    assert isinstance(targets["evidence / raw Ed25519 sign"]["met"], bool)

    assert data["quick"] is False
    assert data["rounds"] == 2
    assert data["calls_per_round"] == {"evidence": 40, "verify": 4, "session": 60}
    assert isinstance(data["python"], str) and isinstance(data["cbor2"], str)
    assert positive(data["cores"])
    anatomy = data["profile_anatomy"]
    assert set(anatomy) == {"evidence_us", "verify_us", "session_us"}
    assert positive(anatomy["verify_us"]["verify_evidence (the whole)"])

    for loop in ("evidence", "raw_sign", "verify", "raw_verify", "session_64", "bare_aead_1024"):
        assert f"[attest] {loop} round 2/2:" in captured.err
    assert "verify_evidence (4 domains, reference values)" in captured.err  # the profile
    assert "evidence anatomy" in captured.err
    assert "session round trip, us (median)" in captured.out
    assert "signature checks one verification needs" in captured.out
    assert_summary(captured.out)


def test_attest_is_listed_and_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert_listed_with_help(capsys, "attest", "--quick", "--profile", "--json")
