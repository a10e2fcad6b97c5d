"""MID packages made in-process, as the mno domain's owner makes them (``tre mid package``,
tre/_demo.py ``_mid_story``): HPKE-sealed to the device's ``mid-hpke`` key (``mno.mid_key``)
and signed with the owner's Ed25519 key, then installed with ``mno.install_package``.

The device must be provisioned from a factory (``factory_init`` + ``provision``): an
unprovisioned ``open_tre`` has no owner keys, so every package is ``WRONG_ISSUER`` there.
Such a TRE keeps its SQLite I/O in worker threads: real clock, bounded with
``trio.fail_after``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

import attestation
import tre
from tre._midpackage import TXID_LEN, hpke_seal, mid_info, pack_header, signed_bytes

__all__ = ["DEFAULT_AMF", "MidIssuer"]

#: The AMF ``tre mid package`` uses when none is given.
DEFAULT_AMF = bytes.fromhex("8000")


class MidIssuer:
    """The mno owner: makes bound, signed packages, each with a fresh txid and the next
    counter (so a device takes every one of them once)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        self._counter = itertools.count(1)

    @classmethod
    def from_factory(cls, factory: Path) -> MidIssuer:
        """The factory's mno owner key (``owners/mno.key``)."""
        key = attestation.load_private_key_pem((factory / "owners" / "mno.key").read_bytes())
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError("the mno owner key is not Ed25519")
        return cls(key)

    def package(
        self,
        mid_key: Mapping[str, Any],
        imsi: str,
        k: bytes,
        opc: bytes,
        *,
        sqn: int = 0,
        amf: bytes = DEFAULT_AMF,
        header: Mapping[str, Any] | None = None,
        sealed: Mapping[str, Any] | None = None,
    ) -> bytes:
        """A package for the device whose ``mno.mid_key`` answer is ``mid_key``.
        ``header`` and ``sealed`` replace fields of the signed header and of the sealed
        MID map (to make packages the device must refuse); the result is signed anyway."""
        ueid = mid_key["ueid"]
        head: dict[str, Any] = {"imsi": imsi, "txid": os.urandom(TXID_LEN), "ueid": ueid}
        head |= {"counter": next(self._counter), **(header or {})}
        header_raw = pack_header(head["imsi"], head["txid"], head["counter"], head["ueid"])
        secret = {"imsi": imsi, "k": k, "opc": opc, "sqn": sqn, "amf": amf, **(sealed or {})}
        enc, ct = hpke_seal(
            X25519PublicKey.from_public_bytes(mid_key["public"]),
            msgpack.packb(secret, use_bin_type=True),
            mid_info(ueid),
            header_raw,
        )
        sig = self.key.sign(signed_bytes(header_raw, enc, ct))
        fields = {"header": header_raw, "enc": enc, "ct": ct, "sig": sig}
        return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]

    async def install(
        self,
        t: tre.TRE,
        imsi: str,
        k: bytes,
        opc: bytes,
        *,
        sqn: int = 0,
        amf: bytes = DEFAULT_AMF,
    ) -> Any:
        """Ask ``t``'s mno domain for its MID key, make a package for it, install it: the
        answer of ``mno.install_package`` (the MID starts ``installed``)."""
        mid_key = await t.call("mno", "mid_key")
        package = self.package(mid_key, imsi, k, opc, sqn=sqn, amf=amf)
        return await t.call("mno", "install_package", {"package": package})
