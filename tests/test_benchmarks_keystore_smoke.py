"""Smoke test of ``python -m benchmarks keystore`` with tiny sizes.

Checks that the scenario runs end to end (a real provisioned device in a temporary folder,
the loops inside the benchmark domain, the raw loops, ``--profile``) and that its JSON has
every key with sane values. It never asserts speed: the figures of a run this small mean
nothing.
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

TINY = ["--rounds", "2", "--sign-calls", "50", "--seal-calls", "200", "--write-calls", "6"]
TINY += ["--write-batch", "4", "--warmup", "0.5"]

HEADLINES = ("sign", "seal", "unseal")
REQUIRED = {
    *(f"{op}_per_s" for op in HEADLINES),
    *(f"raw_{op}_per_s" for op in HEADLINES),
    *(f"{op}_ratio" for op in HEADLINES),
    "writes_per_s",
    "raw_writes_per_s",
    "write_ratio",
    "raw_writes_inline_per_s",
    "write_ratio_inline",
    "seal_breakdown",
    "unseal_breakdown",
    "write_includes_counter_fsync",
    "raw_sides",
    "samples",
    "targets",
    "python",
    "trio",
    "cryptography",
    "sqlite",
    "cores",
    "quick",
    "rounds",
    "calls_per_round",
    "timestamp",
}


def test_keystore_tiny_run_writes_complete_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ks.json"
    work = tmp_path / "work"
    work.mkdir()
    args = ["keystore", *TINY, "--profile", "--dir", str(work)]
    data, captured = run_scenario(capsys, out, args, REQUIRED)
    for op in HEADLINES:
        assert_ratio(data, f"{op}_ratio", f"{op}_per_s", f"raw_{op}_per_s")
    assert_ratio(data, "write_ratio", "writes_per_s", "raw_writes_per_s")
    assert_ratio(data, "write_ratio_inline", "writes_per_s", "raw_writes_inline_per_s")
    assert data["write_includes_counter_fsync"] is True

    # per payload and per policy; the headline is 64 B under "measurement"
    assert data["headline_seal"] == {"payload_bytes": 64, "policy": "measurement"}
    for op in ("seal", "unseal"):
        breakdown = data[f"{op}_breakdown"]
        assert set(breakdown) == {"64", "1024"}
        for entry in breakdown.values():
            assert positive(entry["raw_per_s"])
            for policy in ("measurement", "owner"):
                rate = entry[policy]["per_s"]
                assert positive(rate)
                assert math.isclose(entry[policy]["ratio"], rate / entry["raw_per_s"])
        head = breakdown["64"]["measurement"]
        assert head["per_s"] == data[f"{op}_per_s"]

    loops = {"sign", "raw_sign", "write", "raw_write", "raw_write_inline"}
    for size in (64, 1024):
        loops |= {f"raw_seal_{size}", f"raw_unseal_{size}"}
        loops |= {f"{op}_{size}_{p}" for op in ("seal", "unseal") for p in ("measurement", "owner")}
    assert set(data["samples"]) == loops
    assert_rounds(data["samples"], 2)

    per_round = data["ratio_per_round"]
    assert set(per_round) == {"sign", "seal", "unseal", "write", "write_inline"}
    assert_rounds(per_round, 2)

    targets = {t["target"]: t for t in data["targets"]}
    assert isinstance(targets["sign / raw Ed25519 sign"]["met"], bool)
    assert isinstance(targets["durable writes / raw insert (both via thread)"]["met"], bool)
    assert sum(1 for t in data["targets"] if t["target"].startswith("seal /")) == 4
    assert all(t["met"] is None for t in data["targets"] if t["target"].startswith("unseal /"))

    assert data["quick"] is False
    assert data["rounds"] == 2
    assert data["calls_per_round"] == {"sign": 50, "seal": 200, "unseal": 200, "write": 6}
    assert data["write_batch"] == 4
    assert isinstance(data["python"], str) and isinstance(data["sqlite"], str)
    assert positive(data["cores"])
    # every written key was deleted again: the domain keeps only its signing key
    assert data["keys_left"] == 1
    assert data["raw_rows_left"] == 0
    anatomy = data["profile_anatomy"]
    assert positive(anatomy["seal_unseal"]["seal_us"])
    assert all(positive(us) for us in anatomy["write_us"].values())

    for loop in ("sign", "raw_sign", "seal_64_measurement", "write", "raw_write_inline"):
        assert f"[keystore] {loop} round 2/2:" in captured.err
    assert "Keystore.seal (64 B, measurement)" in captured.err  # the profile
    assert "durable write anatomy" in captured.err
    assert "replay-protected counter" in captured.out
    assert "durable key writes" in captured.out
    assert_summary(captured.out)
    # the temporary device is gone afterwards
    assert list(work.iterdir()) == []


def test_keystore_is_listed_and_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert_listed_with_help(capsys, "keystore", "--quick", "--profile", "--json")
