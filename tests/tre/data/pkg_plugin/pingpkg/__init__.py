"""A sample domain plugin that is a package (entry ``pingpkg:PingDomain``)."""

from __future__ import annotations

from typing import Any

import tre

from ._reply import PREFIX


class PingDomain(tre.Domain):
    @tre.service
    async def ping(self, caller: str, body: Any) -> str:
        return f"{PREFIX}{body}"
