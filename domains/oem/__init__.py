"""The device maker's domain: platform information and trusted timestamps."""

from __future__ import annotations

import os
import time
from typing import Any

import trio
from cryptography.hazmat.primitives import hashes, hmac

import tre

__all__ = ["OemDomain"]

PLATFORM = {
    "manufacturer": "Acme Devices",
    "model": "M2M-Gateway-7",
    "hardware": "rev C",
    "firmware": "7.4.1",
}


class OemDomain(tre.Domain):
    """Answers ``info``, ``time`` and ``timestamp``.

    A timestamp binds a 32-byte digest to a strictly increasing sequence number and the
    TRE's monotonic clock with an HMAC-SHA256 tag. The tag key lives in memory for this
    generation only (the root-of-trust work moves it into the domain's keystore).
    """

    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        self._key = os.urandom(32)
        self._seq = 0

    @tre.service
    async def info(self, caller: str, body: Any) -> dict[str, Any]:
        platform = dict(PLATFORM)
        platform.update({k: v for k, v in self.ctx.settings.items() if isinstance(v, str)})
        return {"platform": platform, "generation": self.ctx.generation}

    @tre.service
    async def time(self, caller: str, body: Any) -> dict[str, Any]:
        return {"monotonic": trio.current_time(), "utc": time.time()}

    @tre.service
    async def timestamp(self, caller: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("digest"), bytes):
            raise tre.ServiceError("BAD_REQUEST", "expected {'digest': <32 bytes>}")
        digest = body["digest"]
        if len(digest) != 32:
            raise tre.ServiceError("BAD_REQUEST", "digest must be 32 bytes")
        self._seq += 1
        stamp = {"seq": self._seq, "monotonic": trio.current_time(), "for": caller}
        mac = hmac.HMAC(self._key, hashes.SHA256())
        mac.update(digest + self._seq.to_bytes(8, "big") + caller.encode())
        stamp["tag"] = mac.finalize()
        return stamp
