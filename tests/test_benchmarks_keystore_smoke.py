"""Smoke test of ``python -m benchmarks keystore`` with tiny sizes.

Checks that the scenario runs end to end (a real provisioned device in a temporary folder,
the loops inside the benchmark domain, the raw loops, ``--profile``) and that its JSON has
every key with sane values. It never asserts speed: the figures of a run this small mean
nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.__main__ import main

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


def _positive(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def test_keystore_tiny_run_writes_complete_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ks.json"
    work = tmp_path / "work"
    work.mkdir()
    args = ["keystore", *TINY, "--profile", "--dir", str(work), "--json", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    data = json.loads(out.read_text(encoding="utf-8"))

    assert not REQUIRED - data.keys(), REQUIRED - data.keys()
    assert data["scenario"] == "keystore"
    for op in HEADLINES:
        ks, raw = data[f"{op}_per_s"], data[f"raw_{op}_per_s"]
        assert _positive(ks) and _positive(raw)
        assert math.isclose(data[f"{op}_ratio"], ks / raw)
    assert _positive(data["writes_per_s"]) and _positive(data["raw_writes_per_s"])
    assert math.isclose(data["write_ratio"], data["writes_per_s"] / data["raw_writes_per_s"])
    inline = data["raw_writes_inline_per_s"]
    assert _positive(inline)
    assert math.isclose(data["write_ratio_inline"], data["writes_per_s"] / inline)
    assert data["write_includes_counter_fsync"] is True

    # per payload and per policy; the headline is 64 B under "measurement"
    assert data["headline_seal"] == {"payload_bytes": 64, "policy": "measurement"}
    for op in ("seal", "unseal"):
        breakdown = data[f"{op}_breakdown"]
        assert set(breakdown) == {"64", "1024"}
        for entry in breakdown.values():
            assert _positive(entry["raw_per_s"])
            for policy in ("measurement", "owner"):
                rate = entry[policy]["per_s"]
                assert _positive(rate)
                assert math.isclose(entry[policy]["ratio"], rate / entry["raw_per_s"])
        head = breakdown["64"]["measurement"]
        assert head["per_s"] == data[f"{op}_per_s"]

    loops = {"sign", "raw_sign", "write", "raw_write", "raw_write_inline"}
    for size in (64, 1024):
        loops |= {f"raw_seal_{size}", f"raw_unseal_{size}"}
        loops |= {f"{op}_{size}_{p}" for op in ("seal", "unseal") for p in ("measurement", "owner")}
    assert set(data["samples"]) == loops
    assert all(len(rates) == 2 and all(map(_positive, rates)) for rates in data["samples"].values())

    per_round = data["ratio_per_round"]
    assert set(per_round) == {"sign", "seal", "unseal", "write", "write_inline"}
    assert all(len(r) == 2 and all(map(_positive, r)) for r in per_round.values())

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
    assert _positive(data["cores"])
    # every written key was deleted again: the domain keeps only its signing key
    assert data["keys_left"] == 1
    assert data["raw_rows_left"] == 0
    anatomy = data["profile_anatomy"]
    assert _positive(anatomy["seal_unseal"]["seal_us"])
    assert all(_positive(us) for us in anatomy["write_us"].values())

    for loop in ("sign", "raw_sign", "seal_64_measurement", "write", "raw_write_inline"):
        assert f"[keystore] {loop} round 2/2:" in captured.err
    assert "Keystore.seal (64 B, measurement)" in captured.err  # the profile
    assert "durable write anatomy" in captured.err
    assert "replay-protected counter" in captured.out
    assert "durable key writes" in captured.out
    assert "MISSED" in captured.out or "met" in captured.out
    assert "total elapsed:" in captured.out
    # the temporary device is gone afterwards
    assert list(work.iterdir()) == []


def test_keystore_is_listed_and_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "keystore" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["keystore", "--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    assert "--quick" in help_text and "--profile" in help_text and "--json" in help_text
