"""A domain's handle on the TRE: the only object a domain gets from the kernel.

Everything a domain does to the outside goes through its context: calls, notifications,
watching peers, background tasks, device ports. The kernel learns who is calling from the
context the call came through, never from anything the domain writes. A context belongs to
one generation of its domain; after a restart the old one refuses to act.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.serialization import Encoding

import attestation
import ipc

from ._errors import Aborted
from ._keystore import Keystore
from ._sessions import Expect, Sessions

if TYPE_CHECKING:
    from ._kernel import Kernel
    from ._ports import Port
    from ._records import DomainRuntime

__all__ = ["ENDORSE_CONTEXT", "Context", "endorsed_bytes"]

#: The domain separation of :meth:`Context.endorse` signatures.
ENDORSE_CONTEXT = b"tre/v1/endorse/"


def endorsed_bytes(domain_id: str, data: bytes) -> bytes:
    """What :meth:`Context.endorse` signs for ``domain_id``."""
    return ENDORSE_CONTEXT + domain_id.encode() + b"|" + data


_NO_KEYSTORE: Any = None

_LOG = logging.getLogger("tre.domain")


class _DomainLog(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['domain'] if self.extra else '?'}] {msg}", kwargs


class Context:
    __slots__ = (
        "__kernel",
        "__rt",
        "__sessions",
        "_generation",
        "id",
        "keystore",
        "log",
        "settings",
    )

    def __init__(self, kernel: Kernel, rt: DomainRuntime) -> None:
        self.__kernel = kernel
        self.__rt = rt
        self._generation = rt.generation
        #: this domain's id
        self.id: str = rt.id
        #: this domain's settings from the TRE config (read-only)
        self.settings: Mapping[str, Any] = MappingProxyType(dict(rt.settings))
        #: the ``tre.domain`` logger, with this domain's id in front of each message (an
        #: adapter rather than a logger per domain, which Python would keep forever)
        self.log = _DomainLog(_LOG, {"domain": rt.id})
        #: this domain's own keystore (and no other): handles, never key bytes
        self.keystore: Keystore = Keystore(rt.keys) if rt.keys is not None else _NO_KEYSTORE
        self.__sessions: Sessions | None = None

    def __repr__(self) -> str:
        return f"<Context domain={self.id!r} generation={self._generation}>"

    @property
    def owner_key(self) -> bytes:
        """This domain's owner's raw Ed25519 public key as installed (b"" when the domain is
        unsigned): public information about the domain itself, e.g. to check packages its
        owner signed."""
        keys = self.__rt.keys
        return b"" if keys is None else keys.owner_key

    @property
    def ueid(self) -> bytes:
        """The UEID of the device this TRE runs on (public: it is in every attestation)."""
        keys = self.__rt.keys
        return b"" if keys is None else keys.ueid

    @property
    def generation(self) -> int:
        """1 on first boot, +1 on each restart."""
        return self._generation

    def call(
        self,
        domain: str,
        method: str,
        body: Any = None,
        *,
        timeout: float | None = None,
        wait: bool = True,
    ) -> Coroutine[Any, Any, Any]:
        """Call ``domain.method`` with ``body`` and return the reply body.

        ``timeout`` (seconds) defaults to the callee's ``default_deadline``. With
        ``wait=False`` a full inbox gives :class:`~tre.Busy` at once instead of waiting.
        Raises one of the :class:`~tre.CallError` outcomes or :class:`ipc.InvalidFrame`
        when ``body`` cannot be put on the wire.
        """
        # Returns the kernel's coroutine rather than awaiting it: one frame less on the
        # hottest path. ``await ctx.call(...)`` reads the same.
        return self.__kernel.call(self.__rt, self._generation, domain, method, body, timeout, wait)

    def notify(self, domain: str, method: str, body: Any = None) -> None:
        """Send a one-way notification (same policy as a call; no reply, never waits)."""
        self.__kernel.notify(self.__rt, self._generation, domain, method, body)

    def watch(self, peer: str) -> None:
        """Ask to be told (``on_domain_down``/``on_domain_up``) when ``peer`` fails or comes
        back. Only peers this domain may call can be watched."""
        self.__kernel.watch(self.__rt, self._generation, peer)

    # --- local attestation and sessions (see tre/_sessions.py) ---------------------------------

    def _sessions(self) -> Sessions:
        if self._generation != self.__rt.live:
            raise Aborted("this context is no longer live")
        if self.__sessions is None:
            self.__sessions = Sessions(self.__kernel, self.__rt)
        return self.__sessions

    def report(self, target: str, nonce: bytes, report_data: bytes) -> bytes:
        """A report about this domain (measurement, owner, svn, state, as the kernel knows
        them) that only ``target`` can check, bound to ``target``'s ``nonce`` and to
        ``report_data`` (e.g. the hash of a key-exchange public key)."""
        return self._sessions().report(target, nonce, report_data)

    def check_report(self, report: bytes) -> attestation.Report:
        """Check a report made for this domain and return what it says about its subject;
        raises :class:`attestation.ReportInvalid` for anything else."""
        return self._sessions().check_report(report)

    async def open_session(
        self, peer: str, *, expect: Expect, method: str = "session"
    ) -> ipc.SecureSession:
        """Open a mutually attested session with ``peer`` through its service ``method``
        (which calls :meth:`accept_session`). Raises :class:`~tre.SessionRefused` if the
        peer's report does not check out or does not meet ``expect``."""
        return await self._sessions().open(peer, expect, method)

    def accept_session(self, caller: str, body: Any, *, expect: Expect) -> dict[str, Any]:
        """The responder's half: call it from the service a peer opens sessions through and
        return what it returns. Once the handshake is done, :meth:`session` gives the
        session with ``caller``."""
        return self._sessions().accept(caller, body, expect)

    def session(self, peer: str) -> ipc.SecureSession:
        """The open session with ``peer`` (either side)."""
        return self._sessions().get(peer)

    def endorse(self, data: bytes) -> dict[str, bytes]:
        """Have the kernel sign ``data`` with this domain's DICE alias key: ``{"signature",
        "certificate"}`` (the alias certificate, DER, issued by the DeviceID key, carrying
        this domain's measurement). Whoever checks the chain to the manufacturer CA knows
        the data came from this domain, with this code, on this device. The signed bytes
        are ``ENDORSE_CONTEXT + domain id + b"|" + data`` (see :func:`endorsed_bytes`)."""
        if self._generation != self.__rt.live:
            raise Aborted("this context is no longer live")
        keys = self.__rt.keys
        assert keys is not None
        alias, _, _ = keys.identity()
        cert = self.__kernel.device.alias_certificate(keys)
        return {
            "signature": alias.sign(endorsed_bytes(self.id, data)),
            "certificate": cert.public_bytes(Encoding.DER),
        }

    def open_port(self, name: str) -> Port:
        """Open the device port ``name`` (see tre/_ports.py). This domain's manifest must
        claim it (``ports = [...]``) and the TRE config declare it and grant it to this
        domain: else :class:`~tre.PortDenied` (not claimed or not granted) or
        :class:`~tre.NoSuchPort` (claimed, not declared). An exclusive port held by another
        claim (one of this domain's own too) gives :class:`~tre.PortBusy`. The claim ends
        with :meth:`Port.close <tre.Port.close>` or with this generation (a fault, a stop,
        a lock, the TRE's shutdown); the handle then raises :class:`~tre.PortClosed`."""
        return self.__kernel.ports.open(self.__rt, self._generation, name)

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` as a task of this domain's task group. If it raises, the domain
        has failed, exactly as if a handler had."""
        self.__kernel.start_domain_task(self.__rt, self._generation, fn, *args)
