"""The per-boot evidence template gives exactly the bytes tre_token would."""

from __future__ import annotations

import pytest
import trio

import attestation
import tre


async def test_template_matches_tre_token_byte_for_byte(autojump_clock: trio.abc.Clock) -> None:
    async with tre.open_tre() as t:
        kernel = t._kernel
        device = kernel.device
        maker = kernel.evidence
        for nonce in (bytes(8), bytes(range(64)), b"\x01" * 33):
            evidence = t.attest(nonce)
            claims = attestation.parse_claims(attestation.parse_sign1(evidence).payload)
            assert isinstance(claims, attestation.TreClaims)
            expected = attestation.tre_token(
                device.device_key,
                device.device_cert,
                nonce=nonce,
                ueid=device.ueid,
                bootcount=device.boot_count,
                tre_measurement=device.tre_measurement,
                policy_hash=maker.policy_hash,
                lifecycle=device.tre_state.value,
                submods=maker._domain_tokens(),
                iat=claims.iat,
            )
            assert evidence == expected


async def test_template_checks_the_nonce(autojump_clock: trio.abc.Clock) -> None:
    async with tre.open_tre() as t:
        for bad in (b"", bytes(7), bytes(65)):
            with pytest.raises(attestation.InvalidIdentity):
                t.attest(bad)


async def test_a_lock_changes_the_evidence(autojump_clock: trio.abc.Clock) -> None:
    async with tre.open_tre() as t:
        before = attestation.parse_claims(attestation.parse_sign1(t.attest(bytes(8))).payload)
        await t.tamper(None, "test")
        after = attestation.parse_claims(attestation.parse_sign1(t.attest(bytes(8))).payload)
        assert isinstance(before, attestation.TreClaims)
        assert isinstance(after, attestation.TreClaims)
        assert (before.lifecycle, after.lifecycle) == ("secured", "locked")
