"""A sample domain plugin loaded from its folder by tests/tre/test_loader.py."""

from __future__ import annotations

from typing import Any

import tre

#: Ids of the domains whose setup() ran, in order (read by the tests through the class).
SETUP_LOG: list[str] = []


class EchoDomain(tre.Domain):
    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        self.greeting = "unset"

    async def setup(self) -> None:
        self.greeting = str(self.ctx.settings.get("greeting", "hello"))
        SETUP_LOG.append(self.ctx.id)

    @tre.service
    async def echo(self, caller: str, body: Any) -> dict[str, Any]:
        return {"caller": caller, "body": body}

    @tre.service(name="whoami")
    async def identify(self, caller: str, body: Any) -> dict[str, Any]:
        return {"id": self.ctx.id, "generation": self.ctx.generation, "greeting": self.greeting}
