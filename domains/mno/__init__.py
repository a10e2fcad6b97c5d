"""The network operator's domain: MIDs (machine identities) stored and run inside the TRE.

What a UICC does for a subscription, done in a TRE domain (3GPP TR 33.812's "storage and
execution of MIDs"):

- **Storage.** Each MID's K and OPc are one ``milenage`` key of mno's keystore, labelled
  ``mid.<IMSI>``: sealed like every key row, and never given back by any call (the keystore
  only *runs* it, :meth:`tre.Keystore.aka`). The MID records -- IMSI, lifecycle state,
  AMF -- are one sealed keystore record, ``mno.mids``, which the key index protects
  against an older copy being put back. Each MID's highest accepted SQN is a
  replay-protected counter of the keystore, ``sqn.<IMSI>`` (:meth:`tre.Keystore.
  advance_counter`, the RPMB stand-in): it never goes back, so a replayed challenge is
  never fresh again, and raising it is one durable write, as on a USIM.
- **Execution.** ``authenticate`` runs MILENAGE and the card side of UMTS AKA in the
  keystore; on success the SQN counter is raised durably *before* RES, CK and IK are
  returned. A stale SQN answers AUTS; a wrong MAC is the error ``MAC_FAILURE``.
- **Lifecycle** (:data:`MID_LIFECYCLE`, GSMA eUICC profile states): installed -> enabled
  <-> disabled -> deleted (an installed MID may also be deleted straight away). At most
  ``max_enabled`` MIDs are enabled at once (the ``[settings.mno]`` value, default 1).
  ``delete`` crypto-erases: the milenage key row is deleted (SQLite secure_delete); the
  record keeps a ``deleted`` tombstone.

- **Delivery** (``install_package``): an HPKE-bound MID package (tre/_midpackage.py) made by
  the domain's owner with ``tre mid package`` for this device's ``mid-hpke`` key (an x25519
  key made at set-up; ``mid_key`` gives its public half). Checks, in order: the owner's
  Ed25519 signature against ``ctx.owner_key`` (``WRONG_ISSUER``); the header names this
  device (``BAD_PACKAGE``); its txid was never seen and its counter is above the last one
  (``REPLAYED``) -- both are written durably *before* the package is opened, so a package
  is used at most once; then the keystore opens it kernel-side and imports K || OPc
  (:meth:`tre.Keystore.open_mid_package`): K and OPc never enter this domain's memory. A
  package that does not open is ``BAD_PACKAGE`` (its txid stays used).

Services (host only): ``status``, ``mid_key``, ``install_package``, ``mids``, ``enable``,
``disable``, ``delete``, ``authenticate``. A MID arrives only as a package: no service takes
K or OPc in the clear.

Crash safety: install writes the key, then the SQN counter, then the record (a package's
txid and counter are written before any); delete writes the record, then erases the key
and the counter. At set-up a ``mid.*`` key or ``sqn.*`` counter that no live record names
is erased, so a crash between the writes leaves either a whole MID or none.
"""

from __future__ import annotations

import contextlib
import enum
import re
from typing import Any

import msgpack
import trio

import tre
from tre._aka import MacFailure, Resync, Success
from tre._keystore import verify_ed25519
from tre._midpackage import TXID_LEN, mid_info, signed_bytes, unpack

__all__ = ["MID_LIFECYCLE", "RECORD_LABEL", "MidState", "MnoDomain"]

RECORD_LABEL = "mno.mids"
#: the device's MID key: packages are HPKE-sealed to its public half
HPKE_LABEL = "mid-hpke"
#: how many package txids the record remembers (older ones are below the counter anyway)
TXID_MEMORY = 32
KEY_PREFIX = "mid."
#: the layout of the ``mno.mids`` record: {"v", "mids": {IMSI: [state, AMF]}, "txids",
#: "counter"} (version 1 kept each SQN in the record; SQNs are keystore counters since 2)
RECORD_VERSION = 2
#: each MID's highest accepted SQN: a replay-protected keystore counter
SQN_PREFIX = "sqn."
IMSI_RE = re.compile(r"[0-9]{6,15}")


class MidState(enum.Enum):
    INSTALLED = "installed"  # credential stored, never enabled
    ENABLED = "enabled"  # may authenticate
    DISABLED = "disabled"  # kept, may not authenticate
    DELETED = "deleted"  # key erased; only the tombstone remains


#: Every legal move of a MID, and nothing else (see tre/_lifecycle.py for the style).
MID_LIFECYCLE: dict[MidState, frozenset[MidState]] = {
    MidState.INSTALLED: frozenset({MidState.ENABLED, MidState.DELETED}),
    MidState.ENABLED: frozenset({MidState.DISABLED}),
    MidState.DISABLED: frozenset({MidState.ENABLED, MidState.DELETED}),
    MidState.DELETED: frozenset(),
}
LIVE = frozenset({MidState.INSTALLED, MidState.ENABLED, MidState.DISABLED})


def _label(imsi: str) -> str:
    return KEY_PREFIX + imsi


def _sqn_label(imsi: str) -> str:
    return SQN_PREFIX + imsi


def _bytes(body: dict[str, Any], name: str, size: int) -> bytes:
    """A field given as bytes or as a hex string, of exactly ``size`` bytes."""
    value = body.get(name)
    try:
        if isinstance(value, str):
            value = bytes.fromhex(value)
    except ValueError:
        raise tre.ServiceError("BAD_REQUEST", f"{name} is not hex") from None
    if not isinstance(value, bytes) or len(value) != size:
        raise tre.ServiceError("BAD_REQUEST", f"{name} must be {size} bytes")
    return value


def _imsi(body: Any) -> str:
    imsi = body.get("imsi") if isinstance(body, dict) else None
    if not isinstance(imsi, str) or not IMSI_RE.fullmatch(imsi):
        raise tre.ServiceError("BAD_REQUEST", "imsi must be 6 to 15 digits")
    return imsi


class MnoDomain(tre.Domain):
    """Learns the platform identity from ``oem`` at set-up. Its manifest also asks for
    ``oem.timestamp``, which ``oem`` does not grant it: policy needs both sides to agree,
    and ``status`` reports what the kernel answered."""

    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        self.platform: dict[str, Any] = {}
        self.timestamp_probe = "not tried"
        #: IMSI -> {"state": MidState, "amf": bytes}; mirrors ``mno.mids``
        self.records: dict[str, dict[str, Any]] = {}
        #: package replay protection: the last txids accepted and the highest counter
        self.txids: list[bytes] = []
        self.counter = -1
        # one change at a time: an SQN is checked and persisted under this lock, so two
        # concurrent calls with the same AUTN cannot both be fresh
        self.lock = trio.Lock()
        #: why the MID records cannot be trusted (then every MID service refuses)
        self.broken: str | None = None
        max_enabled = ctx.settings.get("max_enabled", 1)
        if isinstance(max_enabled, bool) or not isinstance(max_enabled, int) or max_enabled < 1:
            raise ValueError("the mno setting max_enabled must be an int >= 1")
        self.max_enabled = max_enabled

    async def setup(self) -> None:
        info = await self.ctx.call("oem", "info")
        self.platform = info["platform"]
        try:
            await self.ctx.call("oem", "timestamp", {"digest": bytes(32)})
            self.timestamp_probe = "allowed"
        except tre.CallError as exc:
            self.timestamp_probe = exc.code
        if HPKE_LABEL not in {info.label for info in self.ctx.keystore.list()}:
            await self.ctx.keystore.generate(HPKE_LABEL, tre.KeyKind.X25519)
        await self._load()

    # --- records ---------------------------------------------------------------------------

    def _refuse(self, why: str) -> None:
        """The MID records cannot be trusted: no MID is used, and nothing is erased, until
        the operator sorts it out (every MID service answers ``MIDS_UNAVAILABLE``)."""
        self.broken = why
        self.ctx.log.error("%s", why)

    async def _load(self) -> None:
        ks = self.ctx.keystore
        labels = {info.label for info in ks.list()}
        if RECORD_LABEL not in labels:
            # The record is written before any MID key exists (install_package saves the
            # txid first): MID keys without it mean the record was removed, not a crash.
            if any(label.startswith(KEY_PREFIX) for label in labels):
                self._refuse("MID keys exist but their records are gone")
                return
        else:
            try:
                raw = msgpack.unpackb(ks.record(RECORD_LABEL), raw=False)
            except tre.KeystoreError as exc:
                # altered or rolled back (an older SQN would re-open replayed challenges)
                self._refuse(f"the MID records cannot be opened ({exc.code})")
                return
            if not isinstance(raw, dict) or raw.get("v") != RECORD_VERSION:
                self._refuse("the MID records are of an unknown version")
                return
            self.records = {
                imsi: {"state": MidState(state), "amf": amf}
                for imsi, (state, amf) in raw["mids"].items()
            }
            self.txids = list(raw.get("txids", []))
            self.counter = raw.get("counter", -1)
        live = {i for i, r in self.records.items() if r["state"] in LIVE}
        counters = ks.counters()
        # Each live MID's counter is made before its record names it: one that is missing
        # was removed (its SQN would read as 0 and re-open every answered challenge).
        lost = sorted(i for i in live if _sqn_label(i) not in counters)
        if lost:
            self._refuse(f"the SQN counters of MID(s) {', '.join(lost)} are missing")
            return
        for label in sorted(labels):
            if label.startswith(KEY_PREFIX) and label[len(KEY_PREFIX) :] not in live:
                self.ctx.log.warning("erasing %s: no live MID names it", label)  # a crash
                await ks.delete(label)
        for label in sorted(ks.counters()):
            if label.startswith(SQN_PREFIX) and label[len(SQN_PREFIX) :] not in live:
                self.ctx.log.warning("erasing counter %s: no live MID names it", label)
                await ks.delete_counter(label)

    async def _save(
        self,
        records: dict[str, dict[str, Any]],
        txids: list[bytes] | None = None,
        counter: int | None = None,
    ) -> None:
        """Write ``records`` (and the package txids and counter, if given) durably, then
        adopt them (a failed write changes nothing)."""
        txids = self.txids if txids is None else txids
        counter = self.counter if counter is None else counter
        records = dict(records)
        while True:
            raw = {i: [r["state"].value, r["amf"]] for i, r in records.items()}
            data = msgpack.packb(
                {"v": RECORD_VERSION, "mids": raw, "txids": txids, "counter": counter},
                use_bin_type=True,
            )
            if len(data) <= tre.MAX_RECORD:
                break
            # Full: forget the oldest tombstone (a deleted MID's SQN counter is gone with
            # it, and its package cannot come back: txids and the counter remember).
            oldest = next((i for i, r in records.items() if r["state"] is MidState.DELETED), None)
            if oldest is None:
                raise tre.ServiceError("MID_LIMIT", "no room for another MID record")
            del records[oldest]
        try:
            await self.ctx.keystore.put_record(RECORD_LABEL, data)
        except tre.KeystoreError as exc:
            raise tre.ServiceError(exc.code, exc.message) from None
        self.records, self.txids, self.counter = records, txids, counter

    def _copy(self) -> dict[str, dict[str, Any]]:
        return {i: dict(r) for i, r in self.records.items()}

    def _check(self) -> None:
        if self.broken is not None:
            raise tre.ServiceError("MIDS_UNAVAILABLE", self.broken)

    def _live(self, imsi: str) -> dict[str, Any]:
        self._check()
        record = self.records.get(imsi)
        if record is None or record["state"] is MidState.DELETED:
            raise tre.ServiceError("NO_SUCH_MID", f"no MID {imsi}")
        return record

    async def _move(self, imsi: str, to: MidState) -> dict[str, Any]:
        state = self._live(imsi)["state"]
        if to not in MID_LIFECYCLE[state]:
            raise tre.ServiceError(
                "BAD_STATE", f"MID {imsi} is {state.value}: cannot be {to.value}"
            )
        if to is MidState.ENABLED:
            enabled = sum(r["state"] is MidState.ENABLED for r in self.records.values())
            if enabled >= self.max_enabled:
                raise tre.ServiceError(
                    "ENABLED_LIMIT", f"at most {self.max_enabled} MID(s) may be enabled"
                )
        records = self._copy()
        records[imsi]["state"] = to
        await self._save(records)
        return self._describe(imsi)

    def _describe(self, imsi: str) -> dict[str, Any]:
        r = self.records[imsi]
        sqn: int | None = 0
        if r["state"] in LIVE:
            try:
                sqn = self.ctx.keystore.counter(_sqn_label(imsi))
            except tre.KeystoreError:  # its counter does not verify: authenticate refuses
                sqn = None
        return {"label": _label(imsi), "imsi": imsi, "state": r["state"].value, "sqn": sqn}

    def _list(self) -> list[dict[str, Any]]:
        return [self._describe(imsi) for imsi in sorted(self.records)]

    # --- services ---------------------------------------------------------------------------

    @tre.service
    async def status(self, caller: str, body: Any) -> dict[str, Any]:
        enabled = [i for i, r in sorted(self.records.items()) if r["state"] is MidState.ENABLED]
        return {
            "platform": self.platform.get("model", "?"),
            "mids": self._list(),
            "enabled_mid": enabled[0] if enabled else None,
            "oem.timestamp": self.timestamp_probe,
        }

    @tre.service
    async def mids(self, caller: str, body: Any) -> list[dict[str, Any]]:
        """Every MID (deleted ones as tombstones): label, imsi, state, highest SQN."""
        self._check()
        return self._list()

    @tre.service
    async def mid_key(self, caller: str, body: Any) -> dict[str, bytes]:
        """The public half of this device's MID key (HPKE, DHKEM(X25519)) and its UEID."""
        try:
            public = self.ctx.keystore.public_key(HPKE_LABEL)
        except tre.KeystoreError as exc:
            raise tre.ServiceError(exc.code, exc.message) from None
        # The kernel signs (key || UEID) with mno's alias key: an issuer can check that
        # this key belongs to the mno domain of this device (tre mid package --ca).
        endorsement = self.ctx.endorse(public + self.ctx.ueid)
        return {"public": public, "ueid": self.ctx.ueid, **endorsement}

    @tre.service
    async def install_package(self, caller: str, body: Any) -> dict[str, Any]:
        """``{"package": bytes}`` from ``tre mid package``: see the module docstring. The
        MID starts ``installed``."""
        raw = body.get("package") if isinstance(body, dict) else None
        if not isinstance(raw, bytes):
            raise tre.ServiceError("BAD_REQUEST", "package must be bytes")
        try:
            package = unpack(raw, "package")
            header_raw, enc, ct, sig = (package[f] for f in ("header", "enc", "ct", "sig"))
            if not all(isinstance(v, bytes) for v in (header_raw, enc, ct, sig)):
                raise ValueError("fields")
        except (ValueError, KeyError):
            raise tre.ServiceError("BAD_PACKAGE", "not a MID package") from None
        owner = self.ctx.owner_key
        if not owner or not verify_ed25519(owner, signed_bytes(header_raw, enc, ct), sig):
            raise tre.ServiceError("WRONG_ISSUER", "not signed by mno's owner, or altered")
        try:
            header = unpack(header_raw, "header")
            imsi, txid, counter, ueid = (header[f] for f in ("imsi", "txid", "counter", "ueid"))
        except (ValueError, KeyError):
            raise tre.ServiceError("BAD_PACKAGE", "the package header is malformed") from None
        imsi = _imsi({"imsi": imsi})
        if not isinstance(txid, bytes) or len(txid) != TXID_LEN or type(counter) is not int:
            raise tre.ServiceError("BAD_PACKAGE", "the package header is malformed")
        if ueid != self.ctx.ueid:
            raise tre.ServiceError("BAD_PACKAGE", "the package was made for another device")
        async with self.lock:
            self._check()
            if txid in self.txids or counter <= self.counter:
                raise tre.ServiceError("REPLAYED", "this package (or a newer one) was used")
            old = self.records.get(imsi)
            if old is not None and old["state"] is not MidState.DELETED:
                raise tre.ServiceError("MID_EXISTS", f"MID {imsi} is already installed")
            # used from now on, whatever happens next (durable before anything is opened)
            await self._save(self.records, [*self.txids, txid][-TXID_MEMORY:], counter)
            try:
                inner, sqn, amf = await self.ctx.keystore.open_mid_package(
                    HPKE_LABEL, enc, ct, mid_info(self.ctx.ueid), header_raw
                )
            except tre.KeystoreError as exc:
                raise tre.ServiceError(exc.code, exc.message) from None
            if inner != imsi:  # signed by the owner, but inconsistent: do not keep it
                await self.ctx.keystore.delete(_label(inner))
                raise tre.ServiceError("BAD_PACKAGE", "the package's IMSIs differ")
            try:
                await self.ctx.keystore.advance_counter(_sqn_label(imsi), sqn)
            except tre.KeystoreError as exc:
                await self.ctx.keystore.delete(_label(imsi))
                raise tre.ServiceError(exc.code, exc.message) from None
            records = self._copy()
            records[imsi] = {"state": MidState.INSTALLED, "amf": amf}
            await self._save(records)
            return self._describe(imsi)

    @tre.service
    async def enable(self, caller: str, body: Any) -> dict[str, Any]:
        async with self.lock:
            return await self._move(_imsi(body), MidState.ENABLED)

    @tre.service
    async def disable(self, caller: str, body: Any) -> dict[str, Any]:
        async with self.lock:
            return await self._move(_imsi(body), MidState.DISABLED)

    @tre.service
    async def delete(self, caller: str, body: Any) -> dict[str, Any]:
        """Crypto-erase: the record says ``deleted`` first, then the key row is deleted
        (a crash in between is finished at the next set-up)."""
        imsi = _imsi(body)
        async with self.lock:
            described = await self._move(imsi, MidState.DELETED)
            with contextlib.suppress(tre.NoSuchKey):  # already erased
                await self.ctx.keystore.delete(_label(imsi))
            with contextlib.suppress(tre.NoSuchKey):
                await self.ctx.keystore.delete_counter(_sqn_label(imsi))
            return described

    @tre.service
    async def authenticate(self, caller: str, body: Any) -> dict[str, bytes]:
        """``{"imsi", "rand", "autn"}`` -> ``{"res", "ck", "ik"}``, or ``{"auts"}`` when the
        SQN is stale. A wrong MAC is the error ``MAC_FAILURE`` (nothing changes)."""
        imsi = _imsi(body)
        rand, autn = _bytes(body, "rand", 16), _bytes(body, "autn", 16)
        async with self.lock:
            record = self._live(imsi)
            if record["state"] is not MidState.ENABLED:
                raise tre.ServiceError("MID_NOT_ENABLED", f"MID {imsi} is {record['state'].value}")
            ks = self.ctx.keystore
            try:
                result = ks.aka(_label(imsi), rand, autn, ks.counter(_sqn_label(imsi)))
            except MacFailure:
                raise tre.ServiceError("MAC_FAILURE", "AUTN MAC verification failed") from None
            except tre.KeystoreError as exc:
                raise tre.ServiceError(exc.code, exc.message) from None
            if isinstance(result, Resync):
                return {"auts": result.auts}
            assert isinstance(result, Success)
            # durable before RES, CK and IK leave the domain
            try:
                await ks.advance_counter(_sqn_label(imsi), result.sqn)
            except tre.KeystoreError as exc:
                raise tre.ServiceError(exc.code, exc.message) from None
            return {"res": result.res, "ck": result.ck, "ik": result.ik}
