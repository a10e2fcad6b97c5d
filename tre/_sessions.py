"""Local attestation and attested sessions between domains (R16).

Reports follow SGX's EREPORT-with-target: the kernel makes a report *about* the domain that
asks (the subject: its measurement, owner, svn and lifecycle state, all from the kernel's
own records), *targeted* at another domain, and MACs it with the target's report key. Only
the target, through its own context, can check it, so a report made for A is useless to C.

An attested session runs over ordinary calls, three messages long::

    A (initiator)                                   B (responder, its service `session`)
    hello  {nonce nA, public xA}           ----->   accept_session: makes xB, nB and a
                                                    report about B for A: nonce nA, bound
                                                    to H(nA, xA, nB, xB)
           {nonce nB, public xB, report}   <-----
    checks B's report (subject B, nonce nA,
    transcript) and `expect`; makes a report
    about A for B: nonce nB, bound to H(nA, xA)
    finish {report}                        ----->   checks A's report (subject = the caller
                                                    the kernel stamped, nonce nB) and its
           {ok}                            <-----   `expect`; both sides derive the keys

The X25519 private keys live only in the two domains' handshake objects and the session
keys only in their :class:`ipc.SecureSession` objects: the kernel carries sealed bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

import attestation
import ipc

from ._errors import CallError, RemoteError

if TYPE_CHECKING:
    from ._kernel import Kernel
    from ._records import DomainRuntime

__all__ = ["Expect", "SessionRefused", "Sessions"]

NONCE_SIZE = 32


class SessionRefused(CallError):
    """An attested session could not be opened: the peer's report did not check out, or
    its measurement, owner or svn did not meet ``expect``. ``reason`` says which."""

    code = "SESSION_REFUSED"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _frozen(value: Iterable[bytes] | None) -> frozenset[bytes] | None:
    return None if value is None else frozenset(value)


@attrs.frozen
class Expect:
    """What a domain requires of its session peer. ``None`` means "any"."""

    #: allowed measurements (32-byte digests)
    measurements: frozenset[bytes] | None = attrs.field(default=None, converter=_frozen)
    #: the owner hash the peer must have (see ``tre status`` / alias certificates)
    owner_hash: bytes | None = None
    #: lowest acceptable svn
    min_svn: int = 0

    def check(self, report: attestation.Report) -> None:
        if self.measurements is not None and report.measurement not in self.measurements:
            raise SessionRefused("the peer's measurement is not an expected one")
        if self.owner_hash is not None and report.owner_hash != self.owner_hash:
            raise SessionRefused("the peer's owner is not the expected one")
        if report.svn < self.min_svn:
            raise SessionRefused(f"the peer's svn {report.svn} is below {self.min_svn}")
        if report.state == "locked":
            raise SessionRefused("the peer is locked")


def _reachable(rt: DomainRuntime, peer: DomainRuntime) -> bool:
    return peer.id in rt.routes or rt.id in peer.routes


class Sessions:
    """One domain generation's reports and sessions (kernel-side, behind its Context)."""

    def __init__(self, kernel: Kernel, rt: DomainRuntime) -> None:
        self._kernel = kernel
        self._rt = rt
        self._pending: dict[str, tuple[ipc.Handshake, bytes, bytes, Expect]] = {}
        self._open: dict[str, ipc.SecureSession] = {}

    # --- reports ----------------------------------------------------------------------

    def report(self, target: str, nonce: bytes, report_data: bytes) -> bytes:
        """A report about this domain for ``target`` (see the module docstring)."""
        kernel, rt = self._kernel, self._rt
        peer = kernel.domains.get(target)
        if peer is None or not _reachable(rt, peer) or peer.keys is None or rt.keys is None:
            raise SessionRefused(f"no report can be made for {target!r}")
        record = kernel.device.records.get(rt.id)
        report = attestation.Report(
            subject=rt.id,
            target=target,
            measurement=rt.keys.measurement,
            owner_hash=rt.keys.owner_hash,
            svn=rt.keys.svn,
            state=record.state.value if record is not None else "active",
            nonce=nonce,
            report_data=report_data,
        )
        return attestation.make_report(peer.keys.report_key(), report)

    def check_report(self, data: bytes) -> attestation.Report:
        """Check a report made for this domain; raises :class:`attestation.ReportInvalid`."""
        keys = self._rt.keys
        assert keys is not None
        return attestation.check_report(keys.report_key(), data, expected_target=self._rt.id)

    def _checked(
        self, data: Any, peer: str, nonce: bytes, report_data: bytes
    ) -> attestation.Report:
        if not isinstance(data, bytes):
            raise SessionRefused("the peer sent no report")
        try:
            report = self.check_report(data)
        except attestation.ReportInvalid:
            raise SessionRefused("the peer's report is not valid for this domain") from None
        if report.subject != peer:
            raise SessionRefused("the report is about another domain")
        if report.nonce != nonce or report.report_data != report_data:
            raise SessionRefused("the report is not bound to this handshake")
        return report

    # --- initiator --------------------------------------------------------------------

    async def open(self, peer: str, expect: Expect, method: str) -> ipc.SecureSession:
        try:
            return await self._open_session(peer, expect, method)
        except RemoteError as exc:
            if exc.remote_code == "SESSION_REFUSED":
                raise SessionRefused(f"the peer refused: {exc.remote_message}") from None
            raise

    async def _open_session(self, peer: str, expect: Expect, method: str) -> ipc.SecureSession:
        call = self._kernel.call
        rt = self._rt
        hs = ipc.Handshake.initiator()
        hello = {"step": "hello", "nonce": hs.nonce, "public": hs.public}
        reply = await call(rt, rt.live, peer, method, hello, None, True)
        if not isinstance(reply, dict):
            raise SessionRefused("the peer's reply is malformed")
        peer_nonce, peer_public = reply.get("nonce"), reply.get("public")
        if not isinstance(peer_nonce, bytes) or not isinstance(peer_public, bytes):
            raise SessionRefused("the peer's reply is malformed")
        try:
            transcript = hs.transcript_reply(peer_nonce, peer_public)
        except ipc.SessionError:
            raise SessionRefused("the peer's reply is malformed") from None
        report = self._checked(reply.get("report"), peer, hs.nonce, transcript)
        expect.check(report)
        mine = self.report(peer, peer_nonce, hs.transcript_hello())
        finish = {"step": "finish", "report": mine}
        done = await call(rt, rt.live, peer, method, finish, None, True)
        if done != {"ok": True}:
            raise SessionRefused("the peer did not confirm the session")
        try:
            session = hs.finish(peer_nonce, peer_public)
        except ipc.SessionError as exc:
            raise SessionRefused(f"the key agreement failed ({exc.reason})") from None
        self._open[peer] = session
        return session

    # --- responder --------------------------------------------------------------------

    def accept(self, caller: str, body: Any, expect: Expect) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise SessionRefused("malformed handshake message")
        step = body.get("step")
        if step == "hello":
            nonce, public = body.get("nonce"), body.get("public")
            if not isinstance(nonce, bytes) or not isinstance(public, bytes) or len(public) != 32:
                raise SessionRefused("malformed hello")
            hs = ipc.Handshake.responder()
            try:
                data = hs.transcript_reply(nonce, public)
            except ipc.SessionError:
                raise SessionRefused("malformed hello") from None
            self._pending[caller] = (hs, nonce, public, expect)
            return {
                "nonce": hs.nonce,
                "public": hs.public,
                "report": self.report(caller, nonce, data),
            }
        if step == "finish":
            pending = self._pending.pop(caller, None)
            if pending is None:
                raise SessionRefused("no handshake in progress with this caller")
            hs, peer_nonce, peer_public, expect = pending
            expected = hs.transcript_hello(peer_nonce, peer_public)
            report = self._checked(body.get("report"), caller, hs.nonce, expected)
            expect.check(report)
            try:
                self._open[caller] = hs.finish(peer_nonce, peer_public)
            except ipc.SessionError as exc:
                raise SessionRefused(f"the key agreement failed ({exc.reason})") from None
            return {"ok": True}
        raise SessionRefused("unknown handshake step")

    def get(self, peer: str) -> ipc.SecureSession:
        session = self._open.get(peer)
        if session is None or session.state != "open":
            raise SessionRefused(f"no open session with {peer!r}")
        return session

    def peers(self) -> Iterable[str]:
        return list(self._open)
