"""The utility's domain: periodic meter readings, timestamped by ``oem``."""

from __future__ import annotations

import collections
import hashlib
import random
from typing import Any

import msgpack
import trio

import ipc
import tre
from domains.oem import stamp_payload

__all__ = ["MeterDomain", "SensorFault"]

#: Readings kept in memory (the newest last).
HISTORY = 32


#: What meter requires of oem before sending it readings.
OEM_EXPECT = tre.Expect(min_svn=1)


class SensorFault(Exception):
    """The simulated sensor failed its self-test: a fault of the domain, not of a call."""


class MeterDomain(tre.Domain):
    """Samples a simulated meter every ``interval`` seconds (setting, default 1.0) and asks
    ``oem`` to timestamp each reading. ``selftest`` with ``{"inject_fault": true}``
    simulates a sensor fault, which fails the domain (used by the demo and the tests)."""

    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        self.interval = float(ctx.settings.get("interval", 1.0))
        self._rng = random.Random(int(ctx.settings.get("seed", 7)))
        self.kwh = 0.0
        self.readings: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self.missed = 0
        self.session: ipc.SecureSession | None = None

    async def setup(self) -> None:
        info = await self.ctx.call("oem", "info")
        self.oem_key: bytes = info["timestamp_key"]

    async def run(self) -> None:
        self.ctx.watch("oem")
        while True:
            await trio.sleep(self.interval)
            self.kwh = round(self.kwh + self._rng.uniform(0.01, 0.05), 4)
            reading = {"kwh": self.kwh, "sample": len(self.readings) + self.missed + 1}
            digest = hashlib.sha256(msgpack.packb(reading)).digest()
            try:
                stamp = await self.ctx.call("oem", "timestamp", {"digest": digest})
            except tre.CallError as exc:
                self.missed += 1
                self.ctx.log.info("reading not timestamped: %s", exc.code)
                continue
            payload = stamp_payload(digest, stamp["seq"], stamp["monotonic"], stamp["for"])
            verified = tre.verify_ed25519(self.oem_key, payload, stamp["sig"])
            self.readings.append(
                {**reading, "digest": digest, "stamp": stamp, "verified": verified}
            )

    async def on_domain_down(self, peer: str) -> None:
        self.ctx.log.warning("%s is down; readings will wait for it", peer)

    @tre.service
    async def latest(self, caller: str, body: Any) -> dict[str, Any] | None:
        return self.readings[-1] if self.readings else None

    @tre.service
    async def history(self, caller: str, body: Any) -> dict[str, Any]:
        return {"readings": list(self.readings), "missed": self.missed}

    @tre.service
    async def backup(self, caller: str, body: Any) -> dict[str, Any]:
        """Archive the readings with oem through an attested session: meter checks oem's
        report (a genuine oem domain of this TRE, svn >= 1) and oem checks meter's, then the
        readings travel sealed end to end; the kernel carries only ciphertext."""
        if self.session is None or self.session.state != "open":
            self.session = await self.ctx.open_session("oem", expect=OEM_EXPECT)
        batch = msgpack.packb(list(self.readings), use_bin_type=True)
        ack = self.session.open(await self.ctx.call("oem", "archive", self.session.seal(batch)))
        return {"archived": len(self.readings), "batches_at_oem": int.from_bytes(ack, "big")}

    @tre.service
    async def selftest(self, caller: str, body: Any) -> dict[str, Any]:
        await trio.sleep(0.05)  # the sensor takes a moment to answer
        if isinstance(body, dict) and body.get("inject_fault") is True:
            raise SensorFault("sensor self-test failed")
        return {"ok": True, "kwh": self.kwh}
