"""A minimal domain plugin (see README, "Writing a domain")."""

from __future__ import annotations

from typing import Any

import tre


class Hello(tre.Domain):
    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        self.greeted = 0

    @tre.service
    async def greet(self, caller: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, str) or not 0 < len(body) <= 64:
            raise tre.ServiceError("BAD_NAME", "send a name of 1 to 64 characters")
        self.greeted += 1
        return {"greeting": f"hello {body}, from {self.ctx.id}", "count": self.greeted}
