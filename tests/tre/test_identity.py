"""Domain identities at run time: alias certificates chain to the manufacturer CA."""

from __future__ import annotations

import datetime as dt

import pytest
import trio

import attestation
import tre


async def test_alias_certificates_chain_to_the_device_and_name_the_measurement(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with tre.open_tre() as t:
        now = dt.datetime.now(dt.UTC)
        device = t.device_certificate
        for d in t.domains():
            cert = t.alias_certificate(d.id)
            ca = t._kernel.device.ca_cert
            attestation.verify_chain(cert, [device], ca, now)
            info = attestation.read_tcb_info(cert)
            assert info["domain_id"] == d.id
            assert info["svn"] == d.svn
            assert info["measurement"] == t.measurement(d.id)


async def test_same_inputs_give_the_same_alias_key(autojump_clock: trio.abc.Clock) -> None:
    async with tre.open_tre() as t:
        first = t.alias_certificate("oem").public_key()
        second = t.alias_certificate("oem").public_key()
        assert first == second
        assert first != t.alias_certificate("meter").public_key()


async def test_kernel_events_reach_the_event_hook(autojump_clock: trio.abc.Clock) -> None:
    seen: list[tre.TREEvent] = []
    async with tre.open_tre(on_event=seen.append) as t:
        with pytest.raises(tre.Denied):
            await t.call("vault", "anything")
    kinds = [(e.kind, e.subject) for e in seen]
    assert ("boot", "tre") in kinds
    assert ("denied", "host") in kinds
