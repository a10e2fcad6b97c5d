"""Hostile cases found in review: ``advance_counter`` (tre/_keystore.py) used to read a
domain's counters before it awaited the durable write and update them after it, with no
lock, so two concurrent calls of one domain could lower a counter or pass the quota
together; changes are now serialised per domain."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

import tre
from tests.install_helpers import Site
from tre._keystore import MAX_COUNTERS, Keystore


def _ks(t: tre.TRE, domain: str) -> Keystore:
    return Keystore(t._kernel.domains[domain].keys)  # type: ignore[arg-type]


async def test_concurrent_advances_can_lower_the_counter(tmp_path: Path) -> None:
    """tre/_keystore.py:687-698: ``current`` is read before the write is awaited, and the
    value kept afterwards is ``max(current, value)`` of that stale ``current``. With the
    counter at 5, advance(10) and advance(7) both start (both read 5) and the store's worker
    runs 10's write first: 10 returns 10, then the advance to 7 sets the in-memory value to
    max(5, 7) = 7 -- below the 10 already returned ("can never be seen below value again")
    and below the record on disk. A domain checking freshness against ``counter()``
    accepts 8..10 again until the next boot. (The store's limiter is held only to make the
    two calls queue in a fixed order; the window is the same without it.)"""
    site = Site(tmp_path)
    async with site.boot() as t:
        ks = _ks(t, "oem")
        await ks.advance_counter("c", 5)
        store = t._kernel.domains["oem"].keys.store  # type: ignore[union-attr]
        results: dict[int, int] = {}

        async def advance(value: int) -> None:
            results[value] = await ks.advance_counter("c", value)

        async with trio.open_nursery() as nursery:
            await store._limiter.acquire()
            nursery.start_soon(advance, 10)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(advance, 7)
            await trio.testing.wait_all_tasks_blocked()
            store._limiter.release()
        assert results[10] == 10
        assert ks.counter("c") >= 10, f"counter went back to {ks.counter('c')} after returning 10"


async def test_concurrent_new_counters_exceed_max_counters() -> None:
    """tre/_keystore.py:687-689: the MAX_COUNTERS check is made before the write is
    awaited, so new labels advanced concurrently all pass it: a domain holds more than
    MAX_COUNTERS counters (each a file under STATE/counters/<domain>/, all loaded at boot)."""
    async with tre.open_tre() as t:
        ks = _ks(t, "oem")
        for i in range(MAX_COUNTERS - 1):
            await ks.advance_counter(f"n{i}", 1)
        refused = 0

        async def new(label: str) -> None:
            nonlocal refused
            try:
                await ks.advance_counter(label, 1)
            except tre.KeyQuotaExceeded:
                refused += 1

        async with trio.open_nursery() as nursery:
            for j in range(8):
                nursery.start_soon(new, f"extra{j}")
        assert len(ks.counters()) <= MAX_COUNTERS, (
            f"{len(ks.counters())} counters held, quota {MAX_COUNTERS} ({refused} refused)"
        )
