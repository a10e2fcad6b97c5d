"""A completely isolated domain: it works on its own and has no channels at all."""

from __future__ import annotations

import hashlib
import os

import trio

import tre

__all__ = ["VaultDomain"]


class VaultDomain(tre.Domain):
    """Keeps a hash chain over private material on a schedule (setting ``interval``), and
    keeps the chain's head sealed to its own exact code (``MEASUREMENT`` policy) between
    steps, checking each time that it unseals to what it sealed. With no services and no
    calls, policy gives it no channel in either direction."""

    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        self.head = hashlib.sha256(os.urandom(32)).digest()
        self.links = 0
        self.sealed = ctx.keystore.seal(self.head, tre.SealPolicy.MEASUREMENT)

    async def run(self) -> None:
        interval = float(self.ctx.settings.get("interval", 5.0))
        while True:
            await trio.sleep(interval)
            if self.ctx.keystore.unseal(self.sealed) != self.head:
                raise RuntimeError("the sealed chain head does not match")
            self.head = hashlib.sha256(self.head + self.links.to_bytes(8, "big")).digest()
            self.links += 1
            self.sealed = self.ctx.keystore.seal(self.head, tre.SealPolicy.MEASUREMENT)
