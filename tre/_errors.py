"""The runtime's error tree.

Every error a caller can see is a :class:`TREError` with a stable ``code``. The call
outcomes of the kernel are the leaves of :class:`CallError`; each one's docstring says how
it differs from its neighbours. Configuration mistakes are :class:`ConfigError` and name the
file and the key. Bugs in the runtime itself are :class:`InternalError`, never a call outcome.
"""

from __future__ import annotations

from ipc import InvalidFrame, TREError

__all__ = [
    "Aborted",
    "Busy",
    "CallError",
    "CallTimeout",
    "ConfigError",
    "Denied",
    "DomainFailed",
    "InstallRefused",
    "InternalError",
    "InvalidFrame",
    "Locked",
    "NoSuchDomain",
    "NoSuchMethod",
    "ProvisioningError",
    "RemoteError",
    "RollbackDetected",
    "ServiceError",
    "StateBusy",
    "StorageError",
    "TREError",
    "Terminated",
    "TooLarge",
    "error_for_code",
]


class ConfigError(TREError):
    """A manifest or TRE config is invalid. ``path`` and ``key`` say where."""

    code = "CONFIG"

    def __init__(self, path: str, key: str, problem: str) -> None:
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


class CallError(TREError):
    """Base of every outcome of a call or notification other than a reply."""

    code = "CALL_ERROR"


class Denied(CallError):
    """Policy refused the call: no channel, an isolated domain, or a re-entrant call.

    Differs from :class:`NoSuchDomain`/:class:`NoSuchMethod` in that the target exists
    (or the caller did not declare it, so it learns nothing about whether it exists).
    """

    code = "DENIED"


class Busy(CallError):
    """A quota said no right now: the callee's inbox is full and the caller asked not to
    wait, the caller has too many calls outstanding, or the per-pair call rate is spent.
    Retrying later may succeed; :class:`Denied` never will."""

    code = "BUSY"


class CallTimeout(CallError):
    """The call's deadline passed before a reply came. The callee may still be working."""

    code = "TIMEOUT"


class Aborted(CallError):
    """The callee failed (crashed, was restarted or stopped) while the call was queued or
    in progress, or is stopped. Differs from :class:`RemoteError`: the callee did not
    answer at all."""

    code = "ABORTED"


class Locked(CallError):
    """The callee (or the whole TRE) is locked by tamper response: it does not run and
    its keys cannot be used. Final: a locked device goes back to the manufacturer."""

    code = "LOCKED"


class TooLarge(CallError):
    """The request (or the reply) is bigger than the receiver's ``max_frame_bytes``."""

    code = "TOO_LARGE"


class NoSuchDomain(CallError):
    """The caller declared a call to a domain that is not installed."""

    code = "NO_SUCH_DOMAIN"


class NoSuchMethod(CallError):
    """The domain exists but offers no service of that name."""

    code = "NO_SUCH_METHOD"


class RemoteError(CallError):
    """The callee's handler answered with an error. ``remote_code`` and the message are
    what the handler chose to say (a :class:`ServiceError`); nothing else of the callee's
    exception, least of all its traceback, crosses."""

    code = "REMOTE_ERROR"

    def __init__(self, remote_code: str, message: str = "") -> None:
        super().__init__(f"{remote_code}: {message}" if message else remote_code)
        self.remote_code = remote_code
        self.remote_message = message


class ServiceError(TREError):
    """Raised by a domain's handler to answer its caller with an error.

    ``code`` is a short upper-case identifier of the handler's choosing and ``message`` a
    safe explanation; the caller receives them as a :class:`RemoteError`. Any *other*
    exception escaping a handler is a fault of the domain (see the README, "Supervision").
    """

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message)
        self.code = code


class DomainFailed(TREError):
    """A domain whose abort action is ``propagate`` failed, so the TRE stopped."""

    code = "DOMAIN_FAILED"

    def __init__(self, domain: str, reason: str) -> None:
        super().__init__(f"domain {domain!r} failed: {reason}")
        self.domain = domain
        self.reason = reason


class ProvisioningError(TREError):
    """Factory or provisioning input is missing or unusable, or the state is already
    provisioned."""

    code = "PROVISIONING"


class Terminated(TREError):
    """The device has been terminated: its secret is erased and nothing boots."""

    code = "TERMINATED"


class StorageError(TREError):
    """The TRE's persistent state cannot be used: not a TRE database, corrupt, or rolled
    back. Subclasses say which."""

    code = "STORAGE"


class RollbackDetected(StorageError):
    """The database is older than the replay-protected counter: an old copy was put back."""

    code = "ROLLBACK"


class StateBusy(StorageError):
    """The state folder is in use: a TRE runs on it, or another install, removal or
    transfer is under way. Nothing was changed; stop the other user and retry."""

    code = "STATE_BUSY"


class InstallRefused(TREError):
    """A domain install, update, removal or transfer was refused on the device side (the
    package itself verified, but the device's state does not allow it: a locked domain, an
    owner change outside ``tre transfer``, a package that does not load). Nothing changed."""

    code = "INSTALL_REFUSED"


class InternalError(TREError):
    """A bug in the runtime itself (never caused by a domain or a caller)."""

    code = "INTERNAL"


_BY_CODE: dict[str, type[CallError]] = {
    cls.code: cls
    for cls in (Denied, Busy, CallTimeout, Aborted, Locked, TooLarge, NoSuchDomain, NoSuchMethod)
}


def error_for_code(code: str, message: str) -> TREError:
    """Rebuild a call outcome from an ERROR envelope's ``code`` and ``message``."""
    if code == InvalidFrame.code:
        return InvalidFrame("malformed", message)
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    if code == RemoteError.code:
        remote_code, _, text = message.partition(": ")
        return RemoteError(remote_code, text)
    return RemoteError(code, message)
