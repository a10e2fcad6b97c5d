"""Replay-protected counters of the keystore (tre/_counters.py, ``ks.advance_counter``):
they only go up, survive reboots as one authenticated record each, a record moved to
another label or domain does not verify (that counter only), and removal deletes them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import tre
from tests.install_helpers import LEDGER, Site
from tre._keystore import MAX_COUNTERS, Keystore


def _keystore(t: tre.TRE, domain: str) -> Keystore:
    return Keystore(t._kernel.domains[domain].keys)  # type: ignore[arg-type]


async def test_counters_only_go_up_and_are_bounded():
    async with tre.open_tre() as t:
        ks = _keystore(t, "oem")
        assert ks.counter("c") == 0
        assert await ks.advance_counter("c", 5) == 5
        assert await ks.advance_counter("c", 3) == 5  # never lowered
        assert await ks.advance_counter("c", 5) == 5
        assert ks.counter("c") == 5 and ks.counters()["c"] == 5
        for bad_label in ("", "UPPER", "a/b", "x" * 65, 7):
            with pytest.raises(tre.KeystoreError):
                await ks.advance_counter(bad_label, 1)  # type: ignore[arg-type]
        for bad_value in (-1, 1 << 63, True, 1.5, "3"):
            with pytest.raises(tre.KeystoreError):
                await ks.advance_counter("c", bad_value)  # type: ignore[arg-type]
        for i in range(MAX_COUNTERS - len(ks.counters())):
            await ks.advance_counter(f"n{i}", i)
        with pytest.raises(tre.KeyQuotaExceeded):
            await ks.advance_counter("one-too-many", 1)
        await ks.delete_counter("c")
        assert ks.counter("c") == 0
        with pytest.raises(tre.NoSuchKey):
            await ks.delete_counter("c")
        # Another domain has its own counters.
        assert _keystore(t, "meter").counter("c") == 0


async def test_counters_survive_reboots_and_a_moved_record_does_not_verify(tmp_path: Path):
    site = Site(tmp_path)
    async with site.boot() as t:
        ks = _keystore(t, "oem")
        await ks.advance_counter("a", 10)
        await ks.advance_counter("b", 20)
    folder = site.state / "counters" / "oem"
    assert sorted(p.name for p in folder.iterdir()) == ["a.ctr", "b.ctr"]
    async with site.boot() as t:
        ks = _keystore(t, "oem")
        assert (ks.counter("a"), ks.counter("b")) == (10, 20)
    # b's record put in a's place: a no longer verifies, b still does, the TRE boots.
    shutil.copy(folder / "b.ctr", folder / "a.ctr")
    async with site.boot() as t:
        ks = _keystore(t, "oem")
        with pytest.raises(tre.KeyUnavailable):
            ks.counter("a")
        with pytest.raises(tre.KeyUnavailable):
            await ks.advance_counter("a", 99)
        assert ks.counter("b") == 20
        assert t.domain("oem").state == "running"
        await ks.delete_counter("a")  # the domain may start it again
        assert await ks.advance_counter("a", 1) == 1


async def test_removal_and_transfer_delete_a_domains_counters(tmp_path: Path):
    site = Site(tmp_path)
    site.install(1)
    async with site.boot() as t:
        await _keystore(t, LEDGER).advance_counter("c", 7)
    site.install(2)  # an update by the same owner keeps them
    async with site.boot() as t:
        assert _keystore(t, LEDGER).counter("c") == 7
    site.remove()
    assert not (site.state / "counters" / LEDGER).exists()
    site.install(3)
    async with site.boot() as t:
        assert _keystore(t, LEDGER).counters() == {}
