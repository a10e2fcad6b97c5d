"""SIGKILL in the middle of audit appends, at many random points (issue 5, section 3).

A child process (tests/hostile/audit_kill9_child.py) appends entries from several tasks
at once (so transactions carry batches) and prints each sequence number only after its
``append`` returned. The parent kills it with SIGKILL after a random number of
acknowledged entries plus a random delay of up to a few milliseconds, so the kill lands
anywhere: inside a batch's transaction, between a commit and its counter write, in a
checkpoint-only transaction, or between transactions. After every kill:

- ``tre audit verify`` passes (entries, MAC chain, subtree hashes, checkpoints);
- every acknowledged entry is there with the body the child gave it;
- every checkpoint covers only entries that are there (part of verify);
- the next round's child continues the same log (the sealed chain key is the one after
  the last committed entry).

The seed is fixed (and printed; set ``TRE_AUDIT_KILL9_SEED`` to try another). Run with
``-s`` to see the statistics.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.device_helpers import cli, make_factory, provision_device
from tests.hostile.test_crash_kill9 import Lines
from tre._audit_offline import open_audit_state, verify_state

CHILD = Path(__file__).with_name("audit_kill9_child.py")
ROUNDS = 20
SEED = int(os.environ.get("TRE_AUDIT_KILL9_SEED", "9162"))
#: most acknowledged entries the parent waits for before it kills (random, 0..this)
MAX_ACKS = 150
TASKS = 8
ROUND_TIMEOUT = 30.0


def run_round(state: Path, rng: random.Random, stderr: Path) -> dict[int, tuple[int, int]]:
    """Start the child, kill it at a random point: {seq: (task, n)} acknowledged."""
    wanted = rng.randint(0, MAX_ACKS)
    delay = rng.uniform(0.0, 0.004)
    acked: dict[int, tuple[int, int]] = {}
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(state), str(TASKS)], stdout=subprocess.PIPE, stderr=err
        )
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    deadline = time.monotonic() + ROUND_TIMEOUT

    def take(line: str) -> None:
        if line != "ready":
            seq, task, n = map(int, line.split())
            acked[seq] = (task, n)

    try:
        while True:
            line = lines.next(deadline)
            if line is None:
                raise AssertionError(f"the child exited early: {stderr.read_text()}")
            take(line)
            if (line == "ready" and wanted == 0) or len(acked) >= wanted > 0:
                break
        time.sleep(delay)
        proc.kill()  # SIGKILL
        proc.wait()
        while (line := lines.next(deadline)) is not None:  # said before the kill
            take(line)
    finally:
        lines.close()
        if proc.poll() is None:  # pragma: no cover - only when an assertion fired above
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -9, f"the child ended with {proc.returncode}: {stderr.read_text()}"
    return acked


def test_kill9_during_audit_appends(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(SEED)
    state = tmp_path / "state"
    provision_device(state, make_factory(tmp_path / "factory"))
    acknowledged: dict[int, tuple[int, int]] = {}
    stats = {"acked": 0, "beyond_ack": 0, "unsigned_tail": 0}
    counted: set[int] = set()
    started = time.monotonic()
    for _ in range(ROUNDS):
        acked = run_round(state, rng, tmp_path / "stderr")
        assert not acked.keys() & acknowledged.keys(), "a sequence number was reused"
        acknowledged.update(acked)
        stats["acked"] += len(acked)

        result = verify_state(state)
        assert result.ok, result.problems
        assert result.mac_checked
        with open_audit_state(state) as view:
            bodies = {e.seq: e.body for e in view.read("tre") if e.kind == "kill9"}
            latest = view.latest()
            size = view.size
        for seq, (task, n) in acknowledged.items():
            assert bodies.get(seq) == {"task": task, "n": n}, seq
        unacked = bodies.keys() - acknowledged.keys() - counted
        stats["beyond_ack"] += len(unacked)
        counted |= unacked
        stats["unsigned_tail"] += latest.size < size

    code, out, err = cli(capsys, "audit", "verify", "--state", state)
    assert code == 0, err
    print(f"\naudit kill -9 test: seed {SEED} (TRE_AUDIT_KILL9_SEED), {ROUNDS} rounds")
    print(
        f"  {stats['acked']} entries acknowledged, all present; "
        f"{stats['beyond_ack']} committed but killed before acknowledging; "
        f"{stats['unsigned_tail']} kills left entries after the last checkpoint; "
        f"{time.monotonic() - started:.1f} s; {out.strip()}"
    )
