"""Smoke test of ``python -m benchmarks mid`` with tiny sizes.

Checks that the scenario runs end to end (a real provisioned device in a temporary folder,
MID packages installed through the host, AKA runs with fresh AUTNs, domain packages
installed offline on a second device, the raw loops, the quick profiles, ``--profile``) and
that its JSON has every key with sane values. It never asserts speed: the figures of a run
this small mean nothing.
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

TINY = ["--rounds", "2", "--aka-calls", "8", "--install-calls", "5", "--install-batch", "3"]
TINY += ["--verify-calls", "50", "--anatomy-calls", "4", "--warmup", "0.5"]
TINY += ["--domain-install-calls", "3", "--domain-verify-calls", "20", "--large-kib", "4"]
TINY += ["--domain-anatomy-calls", "2"]

DOMAIN_LOOPS = {
    f"{loop}{end}"
    for loop in ("domain_install", "raw_domain_verify_hash", "domain_verify_package")
    for end in ("", "_large")
}
DOMAIN_FIGURES = {
    f"{figure}{end}_s"
    for figure in ("domain_install", "raw_domain_verify_hash", "domain_verify_package")
    for end in ("", "_large")
}
DOMAIN_RATIOS = {
    f"domain_install{end}{kind}_ratio" for end in ("", "_large") for kind in ("", "_verify_package")
}
DOMAIN_STEPS = {"install", "open", "tre_code_hash", "verify", "stage", "write_fsync", "load"}
DOMAIN_STEPS |= {"commit", "rest"}

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
    "domain_anatomy_us",
    "domain_payloads",
    "domain_counter",
    *DOMAIN_FIGURES,
    *DOMAIN_RATIOS,
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
    assert set(data["samples"]) == {"aka", "raw_aka", "install", "raw_verify_hash"} | DOMAIN_LOOPS
    assert_rounds(data["samples"], 2)
    assert data["calls_per_round"] == {
        "aka": 8,
        "install": 5,
        "verify": 50,
        "domain_install": 3,
        "domain_verify": 20,
    }
    assert data["quick"] is False and data["rounds"] == 2
    # warm-up 4 + 2 rounds x 8 + 3 x 4 in the step timings + 4 profiled: every SQN was taken
    assert data["final_sqn"] == 4 + 16 + 12 + 4
    # every benchmark install was deleted again; only the authenticated MID is left
    assert data["mids_left"] == [["001019900000001", "enabled"]]
    assert all(positive(data["anatomy_us"][k]) for k in ("authenticate", "raw_write", "fsync"))
    # domain installs: rates as the AKA figure (ours/s over baseline/s, so ratio = raw s /
    # install s), every step timed, every install an update with the next counter
    for end in ("", "_large"):
        assert_ratio(
            data,
            f"domain_install{end}_ratio",
            f"raw_domain_verify_hash{end}_s",
            f"domain_install{end}_s",
        )
        assert_ratio(
            data,
            f"domain_install{end}_verify_package_ratio",
            f"domain_verify_package{end}_s",
            f"domain_install{end}_s",
        )
    assert_rounds(
        {k: data["ratio_per_round"][k] for k in ("domain_install", "domain_install_large")}, 2
    )
    for payload in ("small", "large"):
        steps = data["domain_anatomy_us"][payload]
        assert set(steps) == DOMAIN_STEPS
        assert all(positive(steps[k]) for k in DOMAIN_STEPS - {"rest"})
    small, large = data["domain_payloads"]["small"], data["domain_payloads"]["large"]
    assert large["files"] == small["files"] + 1 and large["bytes"] == small["bytes"] + 4096
    assert all(positive(v) for v in (*small.values(), *large.values()))
    # warm-up 1 + 2 rounds x 3 per payload, then 3 x 2 in the step timings per payload
    assert data["domain_counter"] == 2 * (1 + 6 + 6)
    targets = {t["target"]: t for t in data["targets"]}
    assert targets["meter install (small) / raw verify + hash (no target)"]["met"] is None
    assert isinstance(targets["AKA runs/s / raw MILENAGE + durable write"]["met"], bool)
    assert "[mid] aka round 2/2:" in captured.err
    assert "[mid] install round 2/2:" in captured.err
    assert "mno.authenticate through the host" in captured.err  # the cProfile report
    assert "quick profile: one AKA run" in captured.out
    assert "quick profile: one meter install" in captured.out
    assert "[mid] domain_install_large round 2/2:" in captured.err
    assert_summary(captured.out)
    assert list(work.iterdir()) == []


def test_mid_is_listed_and_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert_listed_with_help(
        capsys, "mid", "--quick", "--profile", "--json", "--domain-install-calls", "--large-kib"
    )
