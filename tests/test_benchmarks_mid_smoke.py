"""Smoke test of ``python -m benchmarks mid`` with tiny sizes.

Checks that the scenario runs end to end (a real provisioned device in a temporary folder,
MID packages installed through the host, AKA runs with fresh AUTNs, the raw loops, the
quick profile, ``--profile``) and that its JSON has every key with sane values. It never
asserts speed: the figures of a run this small mean nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.benchmark_helpers import (
    assert_listed_with_help,
    assert_rounds,
    assert_summary,
    positive,
    run_scenario,
)

TINY = ["--rounds", "2", "--aka-calls", "8", "--install-calls", "5", "--install-batch", "3"]
TINY += ["--verify-calls", "50", "--anatomy-calls", "4", "--warmup", "0.5"]

REQUIRED = {
    "aka_per_s",
    "raw_aka_per_s",
    "aka_ratio",
    "install_s",
    "raw_verify_hash_s",
    "install_ratio",
    "aka_target_met",
    "samples",
    "targets",
    "anatomy_us",
    "python",
    "sqlite",
    "cryptography",
    "quick",
    "rounds",
    "calls_per_round",
    "timestamp",
}


def test_mid_tiny_run_writes_complete_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mid.json"
    work = tmp_path / "work"
    work.mkdir()
    data, captured = run_scenario(
        capsys, out, ["mid", *TINY, "--profile", "--dir", str(work)], REQUIRED
    )
    for key in ("aka_per_s", "raw_aka_per_s", "install_s", "raw_verify_hash_s"):
        assert positive(data[key])
    assert math.isclose(data["aka_ratio"], data["aka_per_s"] / data["raw_aka_per_s"])
    assert math.isclose(data["install_ratio"], data["install_s"] / data["raw_verify_hash_s"])
    assert data["aka_target_met"] is (data["aka_ratio"] >= 0.5)
    assert set(data["samples"]) == {"aka", "raw_aka", "install", "raw_verify_hash"}
    assert_rounds(data["samples"], 2)
    assert data["calls_per_round"] == {"aka": 8, "install": 5, "verify": 50}
    assert data["quick"] is False and data["rounds"] == 2
    # warm-up 4 + 2 rounds x 8 + 3 x 4 in the step timings + 4 profiled: every SQN was taken
    assert data["final_sqn"] == 4 + 16 + 12 + 4
    # every benchmark install was deleted again; only the authenticated MID is left
    assert data["mids_left"] == [["001019900000001", "enabled"]]
    assert all(positive(data["anatomy_us"][k]) for k in ("authenticate", "raw_write", "fsync"))
    targets = {t["target"]: t for t in data["targets"]}
    assert isinstance(targets["AKA runs/s / raw MILENAGE + durable write"]["met"], bool)
    assert "[mid] aka round 2/2:" in captured.err
    assert "[mid] install round 2/2:" in captured.err
    assert "mno.authenticate through the host" in captured.err  # the cProfile report
    assert "quick profile: one AKA run" in captured.out
    assert_summary(captured.out)
    assert list(work.iterdir()) == []


def test_mid_is_listed_and_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert_listed_with_help(capsys, "mid", "--quick", "--profile", "--json")
