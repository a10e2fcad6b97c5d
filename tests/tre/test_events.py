"""Lifecycle events: what ``open_tre(..., on_event=hook)`` hands the hook, and the rows the
device writes to the ``events`` table of tre.db for the same transitions.

Real clock (worker threads do the SQLite I/O), each test bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import attestation
import tre
from tests.device_helpers import (
    HOLDER,
    IMEI,
    acli,
    db_rows,
    make_factory,
    provision_device,
    write_config,
)
from tre._device import Device
from tre._endoflife import terminate

LIMIT = 10
DOMAINS = ["oem", "mno", "holder"]  # boot order


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_factory(tmp_path_factory.mktemp("factory") / "factory")


@pytest.fixture(autouse=True)
def _holder() -> Iterator[None]:
    HOLDER.reset()
    yield
    HOLDER.reset()


@pytest.fixture
def state(tmp_path: Path, factory: Path) -> Path:
    folder = tmp_path / "dev"
    provision_device(folder, factory, imei=IMEI, config=write_config(tmp_path / "cfg"))
    return folder


def rows(state: Path, after: int = 0) -> list[tuple[Any, ...]]:
    """(time, kind, domain, detail) of every event row after ``seq``, in order."""
    return db_rows(
        state, "SELECT time, kind, domain, detail FROM events WHERE seq > ? ORDER BY seq", after
    )


def last_seq(state: Path) -> int:
    return int(db_rows(state, "SELECT max(seq) FROM events")[0][0])


def as_row(e: tre.TREEvent) -> tuple[Any, ...]:
    return (e.time, e.kind, e.subject, e.detail)


#: The device's lifecycle events. The hook also receives the kernel's events (denials,
#: faults, restarts, locks of running domains), which live in memory only.
LIFECYCLE = frozenset({"provisioned", "boot", "tre_state", "domain_state", "tamper", "terminated"})


def lifecycle(events: list[tre.TREEvent]) -> list[tre.TREEvent]:
    return [e for e in events if e.kind in LIFECYCLE]


def brief(events: list[tre.TREEvent]) -> list[tuple[str, str, str]]:
    return [(e.kind, e.subject, e.detail) for e in lifecycle(events)]


def test_provisioning_writes_the_first_row(state):
    (row,) = rows(state)
    ueid = attestation.ueid_from_imei(IMEI).hex()
    assert row[1:] == ("provisioned", "tre", f"ueid {ueid}, 3 domains")


async def test_first_boot_events_reach_the_hook_and_the_table(state):
    seen: list[tre.TREEvent] = []
    start = last_seq(state)
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state, on_event=seen.append):
            pass
    assert all(isinstance(e, tre.TREEvent) for e in seen)
    assert brief(seen) == [
        ("boot", "tre", "boot 1"),
        *[("domain_state", d, "installed -> active: first boot") for d in DOMAINS],
    ]
    # Same events, same order, same times in the table.
    assert rows(state, start) == [as_row(e) for e in lifecycle(seen)]
    # Times are wall-clock seconds, in order.
    assert [e.time for e in seen] == sorted(e.time for e in seen)

    # The second boot only counts the boot: the domains are active already.
    seen.clear()
    start = last_seq(state)
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state, on_event=seen.append):
            pass
    assert brief(seen) == [("boot", "tre", "boot 2")]
    assert rows(state, start) == [as_row(e) for e in lifecycle(seen)]


async def test_tamper_events(state):
    seen: list[tre.TREEvent] = []
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state, on_event=seen.append) as t:
            start = last_seq(state)
            seen.clear()
            await t.tamper("holder", "case opened")
            await t.tamper(None, "mesh broken")
    events = brief(seen)
    assert events[:4] == [
        ("tamper", "holder", "case opened"),
        ("domain_state", "holder", "active -> locked: case opened"),
        ("tamper", "tre", "mesh broken"),
        ("tre_state", "tre", "secured -> locked: mesh broken"),
    ]
    # Then each other domain (in no particular order); holder is locked already, so it
    # makes no second move.
    assert sorted(events[4:]) == [
        ("domain_state", "mno", "active -> locked: mesh broken"),
        ("domain_state", "oem", "active -> locked: mesh broken"),
    ]
    transitions = [as_row(e) for e in lifecycle(seen)]
    # The kernel tells the hook too, as each running domain stops.
    assert {(e.kind, e.subject) for e in seen if e.kind == "locked"} == {
        ("locked", d) for d in DOMAINS
    }
    assert rows(state, start) == transitions


async def test_cli_tamper_and_terminate_write_rows(capsys, state):
    start = last_seq(state)
    code, _, err = await acli(capsys, "tamper", "--state", state, "--domain", "mno")
    assert code == 0, err
    code, _, err = await acli(capsys, "terminate", "--state", state, "--yes")
    assert code == 0, err
    assert [r[1:] for r in rows(state, start)] == [
        ("tamper", "mno", "tamper reported"),
        ("domain_state", "mno", "installed -> locked: tamper reported"),
        ("tre_state", "tre", "secured -> terminated: terminated by the operator"),
        ("terminated", "tre", "device secret erased"),
    ]


async def test_terminate_events(state):
    seen: list[tre.TREEvent] = []
    with trio.fail_after(LIMIT):
        device = await Device.open(state)
        device.hooks.append(seen.append)
        start = last_seq(state)
        try:
            await terminate(device)
        finally:
            await device.close()
    assert brief(seen) == [
        ("tre_state", "tre", "secured -> terminated: terminated by the operator"),
        ("terminated", "tre", "device secret erased"),
    ]
    assert rows(state, start)[0] == as_row(seen[0])
    assert not (state / "uds.bin").exists()


async def test_every_hook_event_has_a_row(state):
    seen: list[tre.TREEvent] = []
    start = last_seq(state)
    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state, on_event=seen.append) as t:
            await t.tamper("holder", "case opened")
            await t.tamper("holder", "case opened again")
        device = await Device.open(state)
        device.hooks.append(seen.append)
        try:
            await terminate(device)
        finally:
            await device.close()
    assert {e.kind for e in seen} >= {"tamper", "terminated"}
    table = rows(state, start)
    for event in lifecycle(seen):
        assert any(r[1:] == as_row(event)[1:] for r in table), event


async def test_a_failing_hook_does_not_stop_the_tamper_response(state):
    def hook(event: tre.TREEvent) -> None:
        if event.kind == "tamper":
            raise OSError("audit log: no space left on device")

    with trio.fail_after(LIMIT):
        async with tre.open_tre(state=state, on_event=hook) as t:
            keystore = HOLDER.keystores["holder"]
            # Reporting the hook's failure is fine; skipping the lock is not.
            with contextlib.suppress(OSError):
                await t.tamper("holder", "case opened")
            assert t.domain("holder").state == "locked"
            with pytest.raises(tre.KeystoreLocked):
                keystore.list()
    assert {d: s for (d, s) in db_rows(state, "SELECT id, state FROM domains")}["holder"] == (
        "locked"
    )
