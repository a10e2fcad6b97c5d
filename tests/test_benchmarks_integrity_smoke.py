"""Smoke test of ``python -m benchmarks integrity`` with tiny sizes.

Checks that the scenario runs end to end (a temporary device provisioned with the reference
domains, the full check and the raw loops in interleaved rounds) and that its JSON has
every key with sane values. It never asserts speed: the figures of a run this small mean
nothing.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from tests.benchmark_helpers import (
    assert_listed_with_help,
    assert_rounds,
    assert_summary,
    positive,
    run_scenario,
)

TINY = ["--rounds", "2", "--reps", "1"]
LOOPS = {"check", "raw_hash", "raw_read_hash", "walk", "manifests"}
REQUIRED = {
    "scenario",
    "check_s",
    "raw_hash_s",
    "raw_read_hash_s",
    "walk_s",
    "manifests_s",
    "ratio",
    "ratio_read_hash",
    "files",
    "bytes",
    "check_mb_per_s",
    "raw_hash_mb_per_s",
    "files_per_scope",
    "domains",
    "mismatches",
    "target",
    "loops",
    "samples",
    "ratio_per_round",
    "quick",
    "rounds",
    "reps",
    "python",
    "cores",
    "timestamp",
    "elapsed_s",
}


def test_integrity_tiny_run_writes_complete_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "integrity.json"
    started = time.perf_counter()
    data, captured = run_scenario(capsys, out, ["integrity", *TINY], REQUIRED)
    assert time.perf_counter() - started < 10
    for key in ("check_s", "raw_hash_s", "raw_read_hash_s", "walk_s", "manifests_s"):
        assert positive(data[key]), key
    assert math.isclose(data["ratio"], data["raw_hash_s"] / data["check_s"])
    assert math.isclose(data["ratio_read_hash"], data["raw_read_hash_s"] / data["check_s"])
    assert math.isclose(data["check_mb_per_s"], data["bytes"] / data["check_s"] / 1e6)

    # what was covered: the TRE's three packages and the four reference domains
    assert data["domains"] == ["oem", "meter", "mno", "vault"]
    scopes = data["files_per_scope"]
    assert set(scopes) == {"tre", "oem", "meter", "mno", "vault"}
    assert all(type(n) is int and n > 0 for n in scopes.values())
    assert data["files"] == sum(scopes.values())
    assert scopes["tre"] > 30  # tre, ipc and attestation: dozens of modules
    assert type(data["bytes"]) is int and data["bytes"] > 100_000
    assert isinstance(data["mismatches"], list)

    assert set(data["samples"]) == LOOPS == set(data["loops"])
    assert_rounds(data["samples"], 2)
    assert len(data["ratio_per_round"]) == 2 and all(map(positive, data["ratio_per_round"]))
    assert {loop["side"] for loop in data["loops"].values()} == {"tre", "raw", "extra"}
    target = data["target"]
    assert target["min_ratio"] == 0.5 and target["ratio"] == data["ratio"]
    assert target["met"] is (data["ratio"] >= 0.5)
    assert (data["quick"], data["rounds"], data["reps"]) == (False, 2, 1)
    assert positive(data["cores"]) and positive(data["elapsed_s"])

    assert "[integrity] round 2/2:" in captured.err
    assert "full check vs raw SHA-256 of the same bytes: ratio" in captured.out
    assert_summary(captured.out)


def test_integrity_is_listed_and_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert_listed_with_help(capsys, "integrity", "--quick", "--json", "--rounds")
