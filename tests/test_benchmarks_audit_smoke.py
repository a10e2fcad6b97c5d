"""Smoke test of ``python -m benchmarks audit`` with tiny sizes.

Checks that the scenario runs end to end (a temporary device's audit log with 1 and 16
appenders against raw SQLite inserts, proofs over a small tree, the integrity check vs raw
hashing) and that its JSON has every key with sane values. It never asserts speed: the
figures of a run this small mean nothing.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from benchmarks.__main__ import main

TINY = [
    "--quick",
    "--rounds",
    "1",
    "--appends",
    "16",
    "--max-size",
    "10000",
    "--proof-samples",
    "20",
    "--integrity-rounds",
    "1",
    "--integrity-reps",
    "1",
]
REQUIRED = {
    "scenario",
    "appends_per_s",
    "raw_inserts_per_s",
    "append_ratio",
    "append_target",
    "proof_us",
    "proof_growth",
    "proof_logarithmic",
    "integrity_check_s",
    "integrity_raw_hash_s",
    "integrity_raw_read_hash_s",
    "integrity_ratio",
    "integrity_target",
    "quick",
    "rounds",
    "sizes",
    "python",
    "cores",
    "timestamp",
    "elapsed_s",
}


def _positive(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def test_audit_scenario_tiny(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "audit.json"
    started = time.perf_counter()
    assert main(["audit", *TINY, "--dir", str(tmp_path), "--json", str(out)]) == 0
    assert time.perf_counter() - started < 60
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data.keys() >= REQUIRED, REQUIRED - data.keys()
    assert data["scenario"] == "audit"
    assert set(data["appends_per_s"]) == {"1", "16"}
    assert set(data["append_ratio"]) == {"1", "16"}
    assert all(_positive(v) for v in data["appends_per_s"].values())
    assert all(_positive(v) for v in data["append_ratio"].values())
    assert _positive(data["raw_inserts_per_s"])
    assert set(data["append_target"]["met"]) == {"1", "16"}
    assert list(data["proof_us"]) == ["1000", "10000"]
    for figures in data["proof_us"].values():
        for kind in ("inclusion", "consistency"):
            assert set(figures[kind]) == {"generate", "verify"}
            assert all(_positive(v) for v in figures[kind].values())
    assert len(data["proof_growth"]) == 1
    assert isinstance(data["proof_logarithmic"], bool)
    for key in (
        "integrity_check_s",
        "integrity_raw_hash_s",
        "integrity_raw_read_hash_s",
        "integrity_ratio",
    ):
        assert _positive(data[key]), key
    assert isinstance(data["integrity_target"]["met"], bool)
    text = capsys.readouterr().out
    assert "audit appends" in text and "proofs as the log grows" in text
