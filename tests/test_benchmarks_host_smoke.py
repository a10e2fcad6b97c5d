"""Smoke test of ``python -m benchmarks host`` with tiny sizes.

Checks that the scenario runs end to end (a real provisioned device in a temporary folder,
the host server and the bare server in one trio run, the client process with both
connections, the interleaved rounds, logins with the default scrypt, the step timings,
``--profile``) and that its JSON has every key with sane values. It never asserts speed:
the figures of a run this small mean nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ipc._hostauth import SCRYPT_N, SCRYPT_P, SCRYPT_R
from tests.benchmark_helpers import (
    assert_listed_with_help,
    assert_ratio,
    assert_rounds,
    assert_summary,
    positive,
    run_scenario,
)

TINY = ["--rounds", "2", "--calls", "40", "--logins", "1", "--anatomy-calls", "20"]
TINY += ["--warmup", "0.5"]

STEPS = {"t_call", "session_call", "decode_request", "frame_response"}

REQUIRED = {
    "host_calls_per_s",
    "bare_calls_per_s",
    "ratio",
    "target_met",
    "samples",
    "ratio_per_round",
    "frames",
    "login_ms",
    "login_steps_ms",
    "scrypt",
    "anatomy_us",
    "targets",
    "sides",
    "python",
    "trio",
    "quick",
    "rounds",
    "calls_per_round",
    "timestamp",
}


def test_host_tiny_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "host.json"
    work = tmp_path / "w"  # short: the sockets are made under it
    work.mkdir()
    data, captured = run_scenario(
        capsys, out, ["host", *TINY, "--profile", "--dir", str(work)], REQUIRED
    )
    assert_ratio(data, "ratio", "host_calls_per_s", "bare_calls_per_s")
    assert data["target_met"] is (data["ratio"] >= 0.8)
    assert_ratio(data, "bare_call_ratio", "bare_call_calls_per_s", "bare_calls_per_s")
    assert set(data["samples"]) == {"host", "bare", "bare_call"}
    per_round = {k: data[k] for k in ("ratio_per_round", "bare_call_ratio_per_round")}
    assert_rounds({**data["samples"], **per_round}, 2)
    assert math.isclose(data["host_us_per_call"], 1e6 / data["host_calls_per_s"])
    assert data["calls_per_round"] == 40 and data["rounds"] == 2 and data["quick"] is False
    # the production scrypt parameters, measured in the client process
    assert data["scrypt"] == {"n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}
    login = data["login_steps_ms"]
    assert all(positive(login[k]) for k in ("whole", "hello", "answer", "finish", "check"))
    assert login["answer"] > login["hello"]  # scrypt outweighs a round trip
    assert data["login_ms"] == login["whole"]
    steps = data["anatomy_us"]
    assert all(positive(steps[k]) for k in (*STEPS, "host", "bare", "bare_call"))
    assert math.isclose(steps["extra"], steps["kernel_call"] + steps["server_code"])
    assert math.isclose(steps["kernel_call"], steps["bare_call"] - steps["bare"])
    assert all(positive(v) for v in data["frames"].values())
    targets = {t["target"]: t for t in data["targets"]}
    assert isinstance(
        targets["host calls/s / bare socket round trip of the same frames"]["met"], bool
    )
    assert "[host] host round 2/2:" in captured.err
    assert "[host] bare round 2/2:" in captured.err
    assert "[host] bare_call round 2/2:" in captured.err
    assert "host calls over the socket (server side)" in captured.err  # the cProfile report
    assert "quick profile: one host call" in captured.out
    assert "login (default scrypt)" in captured.out
    assert_summary(captured.out)
    assert list(work.iterdir()) == []


def test_host_is_listed_and_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert_listed_with_help(capsys, "host", "--quick", "--profile", "--json", "--calls", "--logins")
