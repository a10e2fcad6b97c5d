"""Smoke test of the benchmark harness: ``python -m benchmarks ipc`` with tiny sizes.

Checks that the scenario runs end to end and that its JSON has every key with sane values.
It never asserts speed: the figures of a run this small mean nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.__main__ import main

TINY = ["--calls", "200", "--rounds", "2", "--domains", "10", "--boot-repeats", "1"]
TINY += ["--warmup", "20"]

REQUIRED = {
    "baseline_rtt_per_s",
    "mediated_rtt_per_s",
    "ratio",
    "scale",
    "boot_s",
    "bytes_per_domain",
    "python",
    "trio",
    "cores",
    "quick",
    "rounds",
    "calls_per_round",
    "timestamp",
}


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_ipc_tiny_run_writes_complete_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert main(["ipc", *TINY, "--profile", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    data = json.loads(out.read_text(encoding="utf-8"))

    assert not REQUIRED - data.keys(), REQUIRED - data.keys()
    assert _positive(data["baseline_rtt_per_s"])
    assert _positive(data["mediated_rtt_per_s"])
    assert math.isclose(data["ratio"], data["mediated_rtt_per_s"] / data["baseline_rtt_per_s"])
    # keys are total domain counts: client + echo (+ 10 idle)
    assert set(data["scale"]) == {"2", "12"}
    assert data["idle_domains"] == {"2": 0, "12": 10}
    assert data["scale"]["2"] == data["mediated_rtt_per_s"]
    assert all(_positive(v) for v in data["scale"].values())
    assert set(data["boot_s"]) == {"2", "12"}
    assert all(_positive(v) for v in data["boot_s"].values())
    assert _positive(data["bytes_per_domain"])
    assert data["memory_domains"] == 10
    assert data["quick"] is False
    assert data["rounds"] == 2
    assert data["calls_per_round"] == 200
    assert isinstance(data["python"], str) and isinstance(data["trio"], str)
    assert _positive(data["cores"])
    loops = ("baseline", "baseline_ipc", "baseline_local", "mediated")
    for sizes in data["samples"].values():
        assert all(len(sizes[loop]) == 2 for loop in loops)
    # the extra baselines: the strict public codec and the kernel's own codec
    for extra in ("ipc", "local"):
        rate = data[f"baseline_{extra}_rtt_per_s"]
        assert _positive(rate)
        assert math.isclose(data[f"ratio_{extra}"], data["mediated_rtt_per_s"] / rate)
    assert set(data["baseline_codecs"]) == set(loops[:3])

    for loop in loops:
        assert f"[ipc] {loop} round 2/2:" in captured.err
    assert "top 25 functions by tottime" in captured.err
    assert "msgpack.packb/unpackb by hand" in captured.err  # the headline baseline profiled
    assert "mediated / baseline" in captured.out
    for label in ("baseline:", "baseline_ipc (extra):", "baseline_local (extra):"):
        assert label in captured.out
    assert "total elapsed:" in captured.out


def test_extra_baselines_can_be_skipped(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    skip = ["--no-ipc-baseline", "--no-local-baseline", "--domains", "0"]
    assert main(["ipc", *TINY, *skip, "--json", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert _positive(data["baseline_rtt_per_s"])
    assert data["baseline_ipc_rtt_per_s"] is data["ratio_ipc"] is None
    assert data["baseline_local_rtt_per_s"] is data["ratio_local"] is None
    assert set(data["samples"]["2"]) >= {"baseline", "mediated"}
    assert not {"baseline_ipc", "baseline_local"} & set(data["samples"]["2"])


def test_unknown_scenario_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unknown scenario 'nope'" in err


def test_help_lists_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "ipc" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["ipc", "--help"])
    assert exc.value.code == 0
    assert "--quick" in capsys.readouterr().out
