"""The device maker's domain: platform information and trusted timestamps."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import trio

import tre

__all__ = ["OemDomain", "stamp_payload"]

PLATFORM = {
    "manufacturer": "Acme Devices",
    "model": "M2M-Gateway-7",
    "hardware": "rev C",
    "firmware": "7.4.1",
}
#: What oem requires of the meter domain before it archives readings: the utility's
#: domain at svn 3 or later.
METER_EXPECT = tre.Expect(min_svn=3)
#: The keystore label of the Ed25519 key that signs timestamps.
STAMP_KEY = "timestamp"


def stamp_payload(digest: bytes, seq: int, monotonic: float, caller: str) -> bytes:
    """The exact bytes a timestamp signature covers (a verifier rebuilds them)."""
    signed = ["tre-oem-stamp/v1", digest, seq, float(monotonic), caller]
    return msgpack.packb(signed, use_bin_type=True)  # type: ignore[no-any-return]


class OemDomain(tre.Domain):
    """Answers ``info``, ``time`` and ``timestamp``.

    A timestamp binds a 32-byte digest to a strictly increasing sequence number, the TRE's
    monotonic clock and the caller, signed by an Ed25519 key that lives in oem's own
    keystore (created on first boot, kept across restarts and reboots; oem never sees the
    private key). ``info`` publishes the public key so anyone can check a stamp.
    """

    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        self._seq = 0
        self._public = b""
        self.archived: list[bytes] = []

    async def setup(self) -> None:
        keystore = self.ctx.keystore
        if STAMP_KEY not in {k.label for k in keystore.list()}:
            await keystore.generate(STAMP_KEY, tre.KeyKind.ED25519)
        self._public = keystore.public_key(STAMP_KEY)

    @tre.service
    async def info(self, caller: str, body: Any) -> dict[str, Any]:
        platform = dict(PLATFORM)
        platform.update({k: v for k, v in self.ctx.settings.items() if isinstance(v, str)})
        return {
            "platform": platform,
            "generation": self.ctx.generation,
            "timestamp_key": self._public,
        }

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
        now = trio.current_time()
        signature = self.ctx.keystore.sign(STAMP_KEY, stamp_payload(digest, self._seq, now, caller))
        return {"seq": self._seq, "monotonic": now, "for": caller, "sig": signature}

    # --- an attested session with meter: readings archived end to end ---------------------

    @tre.service
    async def session(self, caller: str, body: Any) -> dict[str, Any]:
        """Where meter opens its attested session (see tre/_sessions.py)."""
        return self.ctx.accept_session(caller, body, expect=METER_EXPECT)

    @tre.service
    async def archive(self, caller: str, body: Any) -> bytes:
        """Store a batch of readings that meter sent sealed in its session; answer sealed."""
        session = self.ctx.session(caller)
        if not isinstance(body, bytes):
            raise tre.ServiceError("BAD_REQUEST", "expected a sealed session message")
        self.archived.append(session.open(body))
        return session.seal(len(self.archived).to_bytes(4, "big"))
