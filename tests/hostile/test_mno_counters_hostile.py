# ruff: noqa: F811  (pytest fixtures imported from tests.domains.test_mno_mid)
"""Hostile cases found in review: the mno domain's MIDs with their SQNs in replay-protected
keystore counters (domains/mno/__init__.py, tre/_keystore.py, tre/_counters.py): removed
counters or records never make an answered challenge fresh again, a full record or an
unreadable key is a typed refusal, never a fault of the domain."""

from __future__ import annotations

import os
from pathlib import Path

import msgpack
import pytest
import trio

import tre
from tests.domains.test_mno_mid import (  # noqa: F401  (fixtures)
    IMSI,
    OPC,
    SQN,
    K,
    auth,
    factory,
    install,
    issuer,
    mid,
    provisioned,
)
from tests.mid_helpers import MidIssuer
from tre._keystore import Keystore


def _ks(t: tre.TRE, domain: str = "mno") -> Keystore:
    return Keystore(t._kernel.domains[domain].keys)  # type: ignore[arg-type]


async def test_deleting_a_live_mids_counter_record_rolls_the_sqn_back(
    tmp_path: Path,
    factory: Path,
    issuer: MidIssuer,
) -> None:
    """domains/mno/__init__.py:172-180 and :360 (with tre/_keystore.py:666): a live MID
    whose ``sqn.<IMSI>`` record is missing reads SQN 0 (``counter`` defaults to 0), so an
    AUTN already answered is fresh again after a reboot and RES/CK/IK are released a second
    time. install_package always creates the counter *before* the record names the MID, so
    a live MID without a counter can only mean the record was removed: it must be refused
    (like a counter that does not verify), not read as 0."""
    state = provisioned(tmp_path, factory)
    with trio.fail_after(60):
        async with tre.open_tre(state=state) as t:
            await install(t, issuer)
            first = await auth(t, SQN)
            assert "res" in first
        (state / "counters" / "mno" / f"sqn.{IMSI}.ctr").unlink()
        async with tre.open_tre(state=state) as t:
            with pytest.raises(tre.RemoteError) as refused:  # never an answer
                await auth(t, SQN)  # the very same RAND/AUTN as before
            assert refused.value.remote_code == "MIDS_UNAVAILABLE"


async def test_a_counter_record_altered_while_running_faults_authenticate(
    tmp_path: Path,
    factory: Path,
    issuer: MidIssuer,
) -> None:
    """domains/mno/__init__.py:369: ``ks.advance_counter`` is not inside the try, and
    tre/_keystore.py:693 lets tre/_counters.py/_counter.py's ``CounterTampered`` (a
    StorageError, not a KeystoreError) through. A counter record altered in place while
    the TRE runs makes the next authenticate an untyped exception: a fault of mno
    (ABORTED, restart), not a typed refusal."""
    state = provisioned(tmp_path, factory)
    with trio.fail_after(60):
        async with tre.open_tre(state=state) as t:
            await install(t, issuer)
            assert "res" in await auth(t, SQN)  # the record's fd is now held open
            path = state / "counters" / "mno" / f"sqn.{IMSI}.ctr"
            fd = os.open(path, os.O_RDWR)  # altered in place (same inode)
            os.pwrite(fd, b"\x00" * 48, 0)
            os.close(fd)
            generation = t.domain("mno").generation
            try:
                await auth(t, SQN + 1)
            except tre.RemoteError:
                pass  # a typed refusal is what a service should give
            except tre.Aborted:
                pytest.fail("authenticate faulted the mno domain (CounterTampered escaped)")
            assert t.domain("mno").generation == generation


async def test_many_deleted_mids_make_every_install_fault_the_domain(
    tmp_path: Path,
    factory: Path,
    issuer: MidIssuer,
) -> None:
    """domains/mno/__init__.py:182-197 and :302-305/:322: every IMSI ever installed stays
    in ``mno.mids`` as a tombstone, and the record is capped at MAX_RECORD (4096 bytes,
    tre/_keystore.py:718). After ~120 distinct IMSIs installed and deleted (ordinary eSIM
    profile churn), ``put_record`` raises KeystoreError inside ``_save``, which no handler
    catches: every later install of a new IMSI is a fault of mno (ABORTED, restart budget
    spent -> mno stopped, taking authenticate down with it), not a typed refusal."""
    state = provisioned(tmp_path, factory)
    with trio.fail_after(240):
        async with tre.open_tre(state=state) as t:
            key = await t.call("mno", "mid_key")
            for i in range(140):
                imsi = f"00101{i:010d}"
                package = issuer.package(key, imsi, K, OPC)
                try:
                    await t.call("mno", "install_package", {"package": package})
                except tre.RemoteError:
                    break  # a typed refusal (e.g. a tombstone limit) is acceptable
                except tre.Aborted:
                    pytest.fail(f"install #{i} faulted the mno domain (record over 4096 bytes)")
                await t.call("mno", "delete", {"imsi": imsi})


async def test_a_record_written_by_the_previous_mno_version_faults_setup(
    tmp_path: Path,
    factory: Path,
    issuer: MidIssuer,
) -> None:
    """domains/mno/__init__.py:166-169: commit 65f8c70 moved the SQN out of ``mno.mids``
    (v1: ``[state, sqn, amf]`` per MID) into counters (v2: ``[state, amf]``) with no
    migration and no version bump of mno. On a device that has MIDs from the previous
    version, ``_load`` unpacks three values into two: ValueError escapes setup, so mno
    faults at every boot and its MIDs are unusable. (A tolerant unpack without carrying the
    v1 SQN into the counter would instead roll every SQN back to 0.)"""
    state = provisioned(tmp_path, factory)
    with trio.fail_after(60):
        async with tre.open_tre(state=state) as t:
            await install(t, issuer)
            # what mno 0.10.0 before 65f8c70 wrote after one AKA run at SQN
            v1 = {"v": 1, "mids": {IMSI: ["enabled", SQN, b"\xb9\xb9"]}, "txids": [], "counter": 1}
            await _ks(t).put_record("mno.mids", msgpack.packb(v1, use_bin_type=True))
        async with tre.open_tre(state=state) as t:
            assert t.domain("mno").state == "running", "mno's setup faulted on a v1 record"
            with pytest.raises(tre.RemoteError) as refused:  # refused, never a fresh replay
                await auth(t, SQN)
            assert refused.value.remote_code == "MIDS_UNAVAILABLE"


async def test_a_deleted_record_row_erases_the_mids_and_reopens_old_packages(
    tmp_path: Path,
    factory: Path,
    issuer: MidIssuer,
) -> None:
    """tre/_keystore.py:391-409 (load_keys) with domains/mno/__init__.py:157-180: a key row
    deleted from ``keys`` while its digest stays in ``key_digests`` is not noticed (only
    rows present are checked against the index), so mno sees no ``mno.mids`` at all, takes
    it for a fresh device and erases every MID key and SQN counter -- and forgets the
    package txids and counter. The original package of the MID (which the host has) then
    installs again with its original SQN, and the AUTN already answered is fresh again:
    RES/CK/IK released twice. (An *altered* row is caught: MIDS_UNAVAILABLE, nothing
    erased; a *missing* indexed row must be treated the same way.)"""
    import sqlite3

    from tests.domains.test_mno_mid import AMF
    from tre._device import DB_FILE

    state = provisioned(tmp_path, factory)
    with trio.fail_after(60):
        async with tre.open_tre(state=state) as t:
            package = issuer.package(await t.call("mno", "mid_key"), IMSI, K, OPC, amf=AMF)
            await t.call("mno", "install_package", {"package": package})
            await t.call("mno", "enable", {"imsi": IMSI})
            assert "res" in await auth(t, SQN)
        with sqlite3.connect(state / DB_FILE) as conn:
            conn.execute("DELETE FROM keys WHERE domain = 'mno' AND label = 'mno.mids'")
        async with tre.open_tre(state=state) as t:
            try:
                await t.call("mno", "install_package", {"package": package})  # the old one
                await t.call("mno", "enable", {"imsi": IMSI})
                replay = await auth(t, SQN)
            except tre.RemoteError:
                return  # refused: what should happen
            assert "res" not in replay, "an old package re-installed; a replayed AUTN is fresh"


async def test_an_unavailable_mid_key_is_a_typed_refusal(
    tmp_path: Path,
    factory: Path,
) -> None:
    """domains/mno/__init__.py:264-267: ``mid_key`` calls ``ks.public_key("mid-hpke")``
    unguarded; with that row altered (one bit) the keystore raises KeyUnavailable, which
    escapes the handler: a fault of mno (ABORTED, restart; repeated calls spend the restart
    budget and stop mno, authenticate included)."""
    import sqlite3

    from tre._device import DB_FILE

    state = provisioned(tmp_path, factory)
    with trio.fail_after(60):
        async with tre.open_tre(state=state) as t:
            await t.call("mno", "mid_key")
        with sqlite3.connect(state / DB_FILE) as conn:
            where = "WHERE domain = 'mno' AND label = 'mid-hpke'"
            (sealed,) = conn.execute(f"SELECT sealed FROM keys {where}").fetchone()
            flipped = bytes([sealed[0] ^ 1]) + bytes(sealed[1:])
            conn.execute(f"UPDATE keys SET sealed = ? {where}", (flipped,))
        async with tre.open_tre(state=state) as t:
            try:
                await t.call("mno", "mid_key")
            except tre.RemoteError:
                return
            except tre.Aborted:
                pytest.fail("mno.mid_key faulted the domain (KeyUnavailable escaped)")
