"""Shared scaffolding of the benchmark smoke tests (``python -m benchmarks <scenario>`` with
tiny sizes): run a scenario and read its JSON, and the checks every scenario's output and
help share. None of it asserts speed."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from _pytest.capture import CaptureResult

from benchmarks.__main__ import main


def positive(value: Any) -> bool:
    """A finite number above zero (a bool is not a number here)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def run_scenario(
    capsys: pytest.CaptureFixture[str], out: Path, args: Sequence[str], required: Iterable[str]
) -> tuple[dict[str, Any], CaptureResult[str]]:
    """``main([*args, "--json", out])`` must succeed; its JSON (which has every key of
    ``required``, and ``scenario`` naming ``args[0]``) and what it printed."""
    assert main([*args, "--json", str(out)]) == 0
    captured = capsys.readouterr()
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    missing = set(required) - data.keys()
    assert not missing, missing
    assert data["scenario"] == args[0]
    return data, captured


def assert_ratio(data: dict[str, Any], ratio: str, ours: str, raw: str) -> None:
    """``data[ours]`` and ``data[raw]`` are positive and ``data[ratio]`` is ours / raw."""
    assert positive(data[ours]) and positive(data[raw])
    assert math.isclose(data[ratio], data[ours] / data[raw])


def assert_rounds(per_loop: dict[str, Any], rounds: int) -> None:
    """One positive figure a round for every loop (or ratio)."""
    assert all(len(v) == rounds and all(map(positive, v)) for v in per_loop.values())


def assert_summary(out: str) -> None:
    """The end of every scenario's report: the targets, met or not, and the elapsed time."""
    assert "MISSED" in out or "met" in out
    assert "total elapsed:" in out


def assert_listed_with_help(
    capsys: pytest.CaptureFixture[str], scenario: str, *options: str
) -> None:
    """``--help`` lists ``scenario``; ``<scenario> --help`` exits 0 naming ``options``."""
    assert main(["--help"]) == 0
    assert scenario in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main([scenario, "--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    for option in options:
        assert option in help_text
