"""The network operator's domain: a placeholder MID service."""

from __future__ import annotations

from typing import Any

import tre

__all__ = ["MnoDomain"]


class MnoDomain(tre.Domain):
    """Learns the platform identity from ``oem`` at set-up. Its manifest also asks for
    ``oem.timestamp``, which ``oem`` does not grant it: policy needs both sides to agree,
    and ``status`` reports what the kernel answered."""

    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        self.platform: dict[str, Any] = {}
        self.timestamp_probe = "not tried"

    async def setup(self) -> None:
        info = await self.ctx.call("oem", "info")
        self.platform = info["platform"]
        try:
            await self.ctx.call("oem", "timestamp", {"digest": bytes(32)})
            self.timestamp_probe = "allowed"
        except tre.CallError as exc:
            self.timestamp_probe = exc.code

    @tre.service
    async def status(self, caller: str, body: Any) -> dict[str, Any]:
        return {
            "platform": self.platform.get("model", "?"),
            "mids": [],
            "enabled_mid": None,
            "oem.timestamp": self.timestamp_probe,
        }
