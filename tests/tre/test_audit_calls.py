"""[audit] calls = true records every inter-domain call; attestation requests are recorded."""

from __future__ import annotations

import attrs
import trio

import tre


async def test_calls_are_recorded_when_the_config_asks(autojump_clock: trio.abc.Clock) -> None:
    seen: list[tre.TREEvent] = []
    config = attrs.evolve(tre.default_config(), audit_calls=True)
    async with tre.open_tre(config, on_event=seen.append) as t:
        await t.call("oem", "info")
    assert ("call", "host", "oem.info") in [(e.kind, e.subject, e.detail) for e in seen]


async def test_calls_are_not_recorded_by_default(autojump_clock: trio.abc.Clock) -> None:
    seen: list[tre.TREEvent] = []
    async with tre.open_tre(on_event=seen.append) as t:
        await t.call("oem", "info")
    assert "call" not in {e.kind for e in seen}


def test_the_audit_table_is_validated() -> None:
    assert tre.parse_config({"audit": {"calls": True}}).audit_calls is True
    for bad in ({"calls": "yes"}, {"everything": True}):
        try:
            tre.parse_config({"audit": bad})
        except tre.ConfigError as exc:
            assert exc.key.startswith("audit.")
        else:  # pragma: no cover
            raise AssertionError("accepted")


async def test_attestation_requests_are_recorded(autojump_clock: trio.abc.Clock) -> None:
    seen: list[tre.TREEvent] = []
    async with tre.open_tre(on_event=seen.append) as t:
        t.attest(bytes(16))
    assert any(e.kind == "attest" for e in seen)
