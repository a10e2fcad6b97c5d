"""``tre demo``: the reference domains doing real work, told as a short story."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

import attrs
import trio

from ._config import default_config
from ._errors import CallError
from ._runtime import TRE, open_tre

__all__ = ["run_demo"]


class _Story:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.counts = {"ok": 0, "denied": 0, "aborted": 0, "other": 0}
        self.step = 0

    def title(self, text: str) -> None:
        self.step += 1
        print(f"\n{self.step}. {text}", file=self.out)

    def line(self, text: str) -> None:
        print(f"   {text}", file=self.out)

    async def call(self, t: TRE, domain: str, method: str, body: Any = None) -> Any:
        try:
            result = await t.call(domain, method, body)
        except CallError as exc:
            key = {"DENIED": "denied", "ABORTED": "aborted"}.get(exc.code, "other")
            self.counts[key] += 1
            self.line(f"host -> {domain}.{method}: {exc.code} ({exc.message})")
            return exc
        self.counts["ok"] += 1
        return result


def _short(value: Any) -> str:
    if isinstance(value, bytes):
        return value[:6].hex() + "..."
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return repr(value)


async def _demo(out: TextIO, interval: float) -> int:
    story = _Story(out)
    config = attrs.evolve(default_config(), settings={"meter": {"interval": interval}})
    async with open_tre(config) as t:
        story.title(
            f"Booted a TRE with {len(t.domains())} stakeholder domains "
            f"in {t.boot_seconds * 1000:.1f} ms (policy {t.policy.digest()[:16]}...)"
        )
        for d in t.domains():
            kind = "isolated" if d.isolated else "services"
            story.line(f"{d.id:<6} {d.owner:<32} v{d.version:<6} svn {d.svn}  {kind}  {d.state}")

        story.title("Calls that policy allows")
        info = await story.call(t, "oem", "info")
        story.line(f"host -> oem.info: {_short(info['platform'])}")
        await trio.sleep(interval * 3.5)
        latest = await story.call(t, "meter", "latest")
        if isinstance(latest, dict):
            stamp = latest["stamp"]
            story.line(
                f"host -> meter.latest: {latest['kwh']} kWh, reading #{latest['sample']}, "
                f"timestamped by oem (seq {stamp['seq']}, tag {stamp['tag'][:6].hex()}...)"
            )
        status = await story.call(t, "mno", "status")
        story.line(f"host -> mno.status: {_short(status)}")

        story.title("Calls that policy refuses (default deny; both manifests must agree)")
        await story.call(t, "vault", "status")
        await story.call(t, "oem", "timestamp", {"digest": bytes(32)})
        story.line(
            f"mno -> oem.timestamp (mno asks, oem does not allow): {status['oem.timestamp']}"
        )
        story.counts["denied"] += 1

        story.title("A domain fails mid-call: its callers get ABORTED, the supervisor restarts it")
        before = t.domain("meter")

        async def queued() -> None:
            await story.call(t, "meter", "history")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(story.call, t, "meter", "selftest", {"inject_fault": True})
            await trio.sleep(0.01)
            nursery.start_soon(queued)
        with trio.fail_after(5):
            after = await t.wait_for("meter", "running", generation=before.generation + 1)
        story.line(
            f"meter: generation {before.generation} -> {after.generation}, "
            f"faults {after.faults}, state {after.state}"
        )
        check = await story.call(t, "meter", "selftest")
        story.line(f"host -> meter.selftest (after restart): {_short(check)}")
        oem_info = await story.call(t, "oem", "time")
        story.line(f"host -> oem.time (unaffected): monotonic {oem_info['monotonic']:.3f}")

        story.title("Summary")
        c = story.counts
        story.line(
            f"{c['ok']} calls answered, {c['denied']} denied by policy, "
            f"{c['aborted']} aborted by a failing domain, {c['other']} other errors"
        )
        for d in t.domains():
            story.line(
                f"{d.id:<6} state {d.state:<8} generation {d.generation}  "
                f"served {d.served:<4} faults {d.faults}"
            )
        story.line("kernel events:")
        for e in t.events:
            story.line(f"  {e.kind:<8} {e.domain:<6} {e.detail}")
    ok = c["ok"] >= 5 and c["aborted"] >= 1 and c["denied"] >= 2 and c["other"] == 0
    print("\ndemo " + ("completed" if ok else "did NOT go as expected"), file=out)
    return 0 if ok else 1


def run_demo(
    interval: float = 0.1, out: TextIO = sys.stdout, runner: Callable[..., Any] = trio.run
) -> int:
    return int(runner(_demo, out, interval))
