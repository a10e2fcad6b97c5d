"""Envelopes: the four message kinds and their msgpack-rpc style wire layout.

Each envelope is a frozen attrs value with ``to_wire()`` (a list ready for msgpack) and a
``from_wire()`` classmethod that checks the EXACT type of every header field. There are no
attrs validators: construction is on the hot path, and a locally built envelope is checked
by :func:`ipc.encode` instead (with the same rules), so whatever ``encode`` accepts the peer's
``decode`` accepts too.

``from_wire`` checks the header fields only; the body (any msgpack value) is checked for
depth, key types and extension types by the codec, which is the entry point for bytes.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Any, ClassVar, Self, TypeAlias

import attrs

from ._errors import InvalidFrame
from ._limits import DEFAULT_LIMITS, MAX_MSGID, Limits

__all__ = [
    "WIRE_CHECKS",
    "Envelope",
    "Error",
    "Kind",
    "Notification",
    "Request",
    "Response",
    "from_wire",
]


class Kind(enum.IntEnum):
    """The first element of every envelope array (msgpack-rpc numbering, plus ERROR)."""

    REQUEST = 0
    RESPONSE = 1
    NOTIFICATION = 2
    ERROR = 3


# Plain ints for the hot path: msgpack packs an exact int faster than an IntEnum member.
_REQUEST = int(Kind.REQUEST)
_RESPONSE = int(Kind.RESPONSE)
_NOTIFICATION = int(Kind.NOTIFICATION)
_ERROR = int(Kind.ERROR)

#: Error codes are stable upper-case constants such as ``NO_SUCH_METHOD``.
_CODE_RE = re.compile(r"[A-Z0-9_]+")


# -- field checks (shared by from_wire and encode) ------------------------------------------


def _bad(reason: str, message: str) -> InvalidFrame:
    return InvalidFrame(reason, message)


def _check_msgid(msgid: object) -> None:
    # type() not isinstance(): bool is an int subclass and must not pass as a msgid.
    if type(msgid) is not int:
        raise _bad("bad_type", f"msgid must be an int, not {type(msgid).__name__}")
    if not 0 <= msgid <= MAX_MSGID:
        raise _bad("bad_type", "msgid out of range 0..2**32-1")


def _check_method(method: object, limits: Limits) -> None:
    if type(method) is not str:
        raise _bad("bad_type", f"method must be a str, not {type(method).__name__}")
    if not 0 < len(method) <= limits.max_method_len:
        raise _bad("bad_type", f"method length must be 1..{limits.max_method_len}")


def _check_deadline(deadline: object) -> None:
    if deadline is None:
        return
    if type(deadline) is not float:
        raise _bad("bad_type", f"deadline must be a float or nil, not {type(deadline).__name__}")
    # NaN fails both comparisons; +inf fails the second.
    if not 0.0 <= deadline < float("inf"):
        raise _bad("bad_type", "deadline must be finite and >= 0")


def _check_code(code: object, limits: Limits) -> None:
    if type(code) is not str:
        raise _bad("bad_type", f"error code must be a str, not {type(code).__name__}")
    if not 0 < len(code) <= limits.max_code_len or _CODE_RE.fullmatch(code) is None:
        raise _bad("bad_type", f"error code must be 1..{limits.max_code_len} of [A-Z0-9_]")


def _check_message(message: object, limits: Limits) -> None:
    if type(message) is not str:
        raise _bad("bad_type", f"error message must be a str, not {type(message).__name__}")
    if len(message) > limits.max_message_len:
        raise _bad("bad_type", f"error message longer than {limits.max_message_len}")


def _check_shape(items: list[Any], size: int, name: str) -> None:
    if len(items) != size:
        raise _bad("bad_shape", f"{name} has {len(items)} fields, expected {size}")


def _check_request(items: list[Any], limits: Limits) -> None:
    _check_shape(items, 5, "REQUEST")
    _check_msgid(items[1])
    _check_method(items[2], limits)
    _check_deadline(items[3])


def _check_response(items: list[Any], limits: Limits) -> None:
    _check_shape(items, 3, "RESPONSE")
    _check_msgid(items[1])


def _check_notification(items: list[Any], limits: Limits) -> None:
    _check_shape(items, 3, "NOTIFICATION")
    _check_method(items[1], limits)


def _check_error(items: list[Any], limits: Limits) -> None:
    _check_shape(items, 4, "ERROR")
    _check_msgid(items[1])
    _check_code(items[2], limits)
    _check_message(items[3], limits)


def _check_kind(items: object, expected: int | None = None) -> int:
    """Check that ``items`` is a non-empty list with a known kind; return the kind."""
    if type(items) is not list:
        raise _bad("bad_type", f"envelope must be an array, not {type(items).__name__}")
    if not items:
        raise _bad("bad_shape", "envelope is an empty array")
    kind = items[0]
    if type(kind) is not int:
        raise _bad("bad_type", f"envelope kind must be an int, not {type(kind).__name__}")
    if kind not in _CHECKS:
        raise _bad("bad_kind", "unknown envelope kind")
    if expected is not None and kind != expected:
        raise _bad("bad_kind", f"expected kind {Kind(expected).name}, got {Kind(kind).name}")
    return kind


# -- the envelopes --------------------------------------------------------------------------


@attrs.frozen(slots=True)
class Request:
    """A call that expects exactly one RESPONSE or ERROR with the same ``msgid``.

    Wire: ``[0, msgid, method, deadline, body]``. ``deadline`` is a RELATIVE budget in
    seconds (as gRPC sends it: the two ends need not share a clock), or ``None`` for the
    receiver's default. An int deadline given locally is sent as a float.
    """

    KIND: ClassVar[Kind] = Kind.REQUEST

    msgid: int
    method: str
    body: Any = None
    deadline: float | None = None

    def to_wire(self) -> list[Any]:
        deadline: Any = self.deadline
        if type(deadline) is int:
            deadline = float(deadline)
        return [_REQUEST, self.msgid, self.method, deadline, self.body]

    @classmethod
    def from_wire(cls, items: list[Any], limits: Limits = DEFAULT_LIMITS) -> Self:
        _check_kind(items, _REQUEST)
        _check_request(items, limits)
        return cls(items[1], items[2], items[4], items[3])


@attrs.frozen(slots=True)
class Response:
    """The successful reply to the REQUEST with the same ``msgid``. Wire: ``[1, msgid, body]``."""

    KIND: ClassVar[Kind] = Kind.RESPONSE

    msgid: int
    body: Any = None

    def to_wire(self) -> list[Any]:
        return [_RESPONSE, self.msgid, self.body]

    @classmethod
    def from_wire(cls, items: list[Any], limits: Limits = DEFAULT_LIMITS) -> Self:
        _check_kind(items, _RESPONSE)
        _check_response(items, limits)
        return cls(items[1], items[2])


@attrs.frozen(slots=True)
class Notification:
    """A one-way message: no reply, no msgid. Wire: ``[2, method, body]``."""

    KIND: ClassVar[Kind] = Kind.NOTIFICATION

    method: str
    body: Any = None

    def to_wire(self) -> list[Any]:
        return [_NOTIFICATION, self.method, self.body]

    @classmethod
    def from_wire(cls, items: list[Any], limits: Limits = DEFAULT_LIMITS) -> Self:
        _check_kind(items, _NOTIFICATION)
        _check_notification(items, limits)
        return cls(items[1], items[2])


@attrs.frozen(slots=True)
class Error:
    """The failed reply to the REQUEST with the same ``msgid``.

    Wire: ``[3, msgid, code, message]``. ``code`` is a stable ``[A-Z0-9_]+`` constant (what
    callers branch on); ``message`` is a short, safe summary for people.
    """

    KIND: ClassVar[Kind] = Kind.ERROR

    msgid: int
    code: str
    message: str = ""

    def to_wire(self) -> list[Any]:
        return [_ERROR, self.msgid, self.code, self.message]

    @classmethod
    def from_wire(cls, items: list[Any], limits: Limits = DEFAULT_LIMITS) -> Self:
        _check_kind(items, _ERROR)
        _check_error(items, limits)
        return cls(items[1], items[2], items[3])


Envelope: TypeAlias = Request | Response | Notification | Error

_CHECKS = {
    _REQUEST: _check_request,
    _RESPONSE: _check_response,
    _NOTIFICATION: _check_notification,
    _ERROR: _check_error,
}


#: Envelope class -> check of its ``to_wire()`` header fields (used by the encoder, so that
#: whatever ``encode`` accepts, ``decode`` accepts).
WIRE_CHECKS: dict[type[Envelope], Callable[[list[Any], Limits], None]] = {
    Request: _check_request,
    Response: _check_response,
    Notification: _check_notification,
    Error: _check_error,
}


def from_wire(items: Any, limits: Limits = DEFAULT_LIMITS) -> Envelope:
    """Build the envelope a wire list describes, dispatching on its kind.

    Raises :class:`InvalidFrame`: ``bad_type`` (not an array, or a field of the wrong type
    or range), ``bad_shape`` (wrong number of fields), ``bad_kind`` (unknown kind). The body
    is returned as is; :func:`ipc.decode` checks it.
    """
    kind = _check_kind(items)
    if kind == _REQUEST:
        _check_request(items, limits)
        return Request(items[1], items[2], items[4], items[3])
    if kind == _RESPONSE:
        _check_response(items, limits)
        return Response(items[1], items[2])
    if kind == _NOTIFICATION:
        _check_notification(items, limits)
        return Notification(items[1], items[2])
    _check_error(items, limits)
    return Error(items[1], items[2], items[3])
