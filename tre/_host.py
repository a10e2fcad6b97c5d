"""The host interface (R2, R8, R10): users of the device software reach the TRE only after
authenticating, and only for what they are granted.

A :class:`HostGateway` belongs to a running TRE on a provisioned device. It logs users in
with the challenge-response of :mod:`ipc._hostauth` (the password never crosses: the
client proves it knows the scrypt-derived key, the server proves it holds the verifier),
applying the lockout and back-off of :mod:`._users` (failures are durable, so a restart
does not reset them), and hands out :class:`HostSession` objects. A session calls domains
through the kernel like any caller: as ``"host"`` (the manifests' and the config's
``[host]`` grants still apply), with the user's own outstanding-call budget, within the
user's role and grants (:func:`._users.may_call`), and with the user named in the
kernel's records (denials, and every call when ``[audit] calls = true``).

The same gateway serves the Unix socket (:mod:`._hostserver`) and the embedding API
(``await t.host(user=..., password=...)``), so both have exactly the same checks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import trio

import ipc

from ._bucket import TokenBucket
from ._errors import Denied, NoSuchMethod
from ._manifest import HOST, ID_RE, METHOD_RE
from ._records import Caller
from ._users import User, UserLocked, Users, may_call

if TYPE_CHECKING:
    from ._kernel import Kernel

__all__ = [
    "LOGIN_BURST",
    "LOGIN_RATE",
    "SESSION_LIFETIME",
    "HostGateway",
    "HostSession",
    "SessionExpired",
]

#: How long a login lasts (seconds of trio time); then the client logs in again.
SESSION_LIFETIME = 900.0
#: Login attempts the whole gateway takes per second (sustained, and in a burst): each
#: costs a durable write, shared with the domains' keystores, so a flood of logins (with
#: made-up names, which no per-user lockout stops) must not starve them.
LOGIN_RATE = 50.0
LOGIN_BURST = 200


class SessionExpired(ipc.TREError):
    """The host session's login is older than its lifetime: log in again."""

    code = "SESSION_EXPIRED"


class HostSession:
    """A logged-in user's handle: :meth:`call` within the user's role and grants."""

    def __init__(self, gateway: HostGateway, user: User, caller: Caller, expires: float):
        self._gateway = gateway
        self.user = user
        self._caller = caller
        #: trio time when the login ends
        self.expires = expires

    def __repr__(self) -> str:
        return f"<HostSession {self.user.name} ({self.user.role})>"

    @property
    def expired(self) -> bool:
        return trio.current_time() >= self.expires

    async def call(
        self, domain: str, method: str, body: Any = None, *, timeout: float | None = None
    ) -> Any:
        """Call ``domain.method`` as this user: :class:`SessionExpired` after the
        lifetime, :class:`~tre.Denied` beyond the user's grants, else the outcomes of
        :meth:`TRE.call`."""
        if self.expired:
            raise SessionExpired(f"the session of {self.user.name!r} has expired: log in again")
        kernel = self._gateway.kernel
        if not (
            isinstance(domain, str)
            and isinstance(method, str)
            and ID_RE.fullmatch(domain)
            and METHOD_RE.fullmatch(method)
        ):
            # Nothing of such a name is recorded: a client cannot fill the kernel's history
            # with huge strings.
            raise NoSuchMethod(f"user {self.user.name!r}: not a domain and method name")
        if not may_call(self.user, domain, method, kernel.config):
            detail = f"{domain}.{method}: not granted to user {self.user.name!r}"
            kernel.record("denied", HOST, f"{detail} ({self.user.role})")
            raise Denied(f"user {self.user.name!r} may not call {domain}.{method}")
        return await kernel.call(self._caller, 0, domain, method, body, timeout, True)


class HostGateway:
    """Kernel-side: logins and sessions of one running TRE (see the module docstring)."""

    def __init__(self, kernel: Kernel, users: Users, *, lifetime: float = SESSION_LIFETIME):
        self.kernel = kernel
        self.users = users
        self.lifetime = lifetime
        self.logins = TokenBucket(LOGIN_RATE, LOGIN_BURST, trio.current_time())
        self._refusing = False
        #: answers challenges for unknown user names with decoys that stay the same across
        #: boots, like a real user's salt (no enumeration by comparing before and after)
        self._decoy_key = kernel.device.derive_key("host-decoy")
        #: per-user callers: each user has its own outstanding-call budget
        self._callers: dict[str, Caller] = {}

    async def _store(self, fn: Any, *args: Any) -> Any:
        return await self.kernel.device.store.call(fn, *args)

    async def begin(self, hello: Mapping[str, Any]) -> ipc.ServerAuth:
        """First step of a login: check the hello and the user's lockout, make the
        challenge. Raises :class:`ipc.AuthFailed` (or its :class:`UserLocked`)."""
        if not self.logins.take(trio.current_time()):
            if not self._refusing:  # one record per flood, not one per attempt
                self._refusing = True
                self.kernel.record("login_refused", HOST, "too many login attempts")
            raise UserLocked(1.0 / LOGIN_RATE)
        self._refusing = False
        name = hello.get("user") if isinstance(hello, Mapping) else None
        verifier = None
        if isinstance(name, str) and ipc.USER_RE.fullmatch(name):
            await self._store(self.users.begin, name)  # UserLocked while backing off
            try:
                verifier = await self._store(self.users.verifier, name)
            except ipc.TREError:  # a user row that does not open: like an unknown user
                verifier = None
        return ipc.ServerAuth(hello, verifier, decoy_key=self._decoy_key)

    async def finish(
        self, auth: ipc.ServerAuth, answer: Mapping[str, Any]
    ) -> tuple[HostSession, dict[str, Any]]:
        """Second step: check the proof. A failure is counted (durably) before
        :class:`ipc.AuthFailed` is raised; a success resets the count."""
        try:
            outcome = auth.verify(answer)
        except ipc.AuthFailed:
            await self._store(self.users.failed, auth.user)
            self.kernel.record("login_failed", HOST, f"user {auth.user!r}")
            raise
        user = await self._store(self.users.get, auth.user)
        if user is None or user.locked:  # removed or locked in between: no session
            raise ipc.AuthFailed("authentication failed")
        await self._store(self.users.succeeded, auth.user)
        self.kernel.record("login", HOST, f"user {user.name!r} ({user.role})")
        return self._session(user), outcome

    def _session(self, user: User) -> HostSession:
        caller = self._callers.get(user.name)
        if caller is None:
            host = self.kernel.host
            caller = Caller(HOST, host.max_outstanding, host.max_frame)
            caller.user = user.name  # named in the kernel's records
            caller.routes = host.routes  # the host's routes: policy is the same for all
            self._callers[user.name] = caller
        expires = trio.current_time() + self.lifetime if self.lifetime < math.inf else math.inf
        return HostSession(self, user, caller, expires)

    async def login(self, user: str, password: str) -> HostSession:
        """Log in in-process (the embedding API): the same exchange as over the socket,
        the client side's scrypt in a worker thread."""
        client = ipc.ClientAuth(user, password)
        auth = await self.begin(client.hello())
        answer = await trio.to_thread.run_sync(client.answer, auth.challenge())
        session, outcome = await self.finish(auth, answer)
        client.check(outcome)
        return session
