"""ipc/_envelope.py: wire layout, from_wire field checks, kinds, limits."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import given

import ipc
from ipc import Error, InvalidFrame, Kind, Notification, Request, Response
from tests.ipc.ipc_strategies import envelopes


def test_kind_codes_are_msgpack_rpc() -> None:
    assert [int(k) for k in Kind] == [0, 1, 2, 3]
    assert [k.name for k in Kind] == ["REQUEST", "RESPONSE", "NOTIFICATION", "ERROR"]
    assert Request.KIND is Kind.REQUEST and Error.KIND is Kind.ERROR


@pytest.mark.parametrize(
    ("envelope", "wire"),
    [
        (Request(1, "m"), [0, 1, "m", None, None]),
        (Request(1, "m", {"a": 1}, 2.5), [0, 1, "m", 2.5, {"a": 1}]),
        (Request(1, "m", deadline=3), [0, 1, "m", 3.0, None]),  # a local int is sent as float
        (Response(7, [1, 2]), [1, 7, [1, 2]]),
        (Notification("tick", "x"), [2, "tick", "x"]),
        (Error(9, "NO_SUCH_METHOD", "nope"), [3, 9, "NO_SUCH_METHOD", "nope"]),
        (Error(9, "DENIED"), [3, 9, "DENIED", ""]),
    ],
)
def test_to_wire_layout(envelope: ipc.Envelope, wire: list[Any]) -> None:
    got = envelope.to_wire()
    assert got == wire
    assert [type(x) for x in got] == [type(x) for x in wire]
    assert type(got[0]) is int  # plain int, not the IntEnum member


@given(envelopes)
def test_from_wire_inverts_to_wire(envelope: ipc.Envelope) -> None:
    items = envelope.to_wire()
    for rebuilt in (ipc.from_wire(items), type(envelope).from_wire(items)):
        assert type(rebuilt) is type(envelope)
        # Same field objects back (the body is passed through unchanged, NaN or not).
        assert all(a is b for a, b in zip(rebuilt.to_wire(), items, strict=True))


def test_envelopes_are_frozen_values() -> None:
    r = Request(1, "m", [1])
    assert r == Request(1, "m", [1])
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        r.msgid = 2  # type: ignore[misc]
    assert not hasattr(r, "__dict__")  # slots


BIG = "x" * 129

# Each row: a wire list and the reason from_wire must give.
FROM_WIRE_REJECTS: list[tuple[str, Any, str]] = [
    ("not a list: dict", {"a": 1}, "bad_type"),
    ("not a list: int", 5, "bad_type"),
    ("not a list: str", "abc", "bad_type"),
    ("not a list: tuple", (1, 1, None), "bad_type"),
    ("empty", [], "bad_shape"),
    ("kind str", ["0", 1, "m", None, None], "bad_type"),
    ("kind bool", [True, 1, None], "bad_type"),
    ("kind float", [1.0, 1, None], "bad_type"),
    ("kind None", [None, 1, None], "bad_type"),
    ("kind 4", [4, 1, None], "bad_kind"),
    ("kind -1", [-1, 1, None], "bad_kind"),
    ("kind huge", [2**64 - 1, 1, None], "bad_kind"),
    ("request 4 fields", [0, 1, "m", None], "bad_shape"),
    ("request 6 fields", [0, 1, "m", None, None, None], "bad_shape"),
    ("response 2 fields", [1, 1], "bad_shape"),
    ("response 4 fields", [1, 1, None, None], "bad_shape"),
    ("notification 2 fields", [2, "m"], "bad_shape"),
    ("notification 4 fields", [2, "m", None, None], "bad_shape"),
    ("error 3 fields", [3, 1, "E"], "bad_shape"),
    ("error 5 fields", [3, 1, "E", "", None], "bad_shape"),
    ("msgid bool", [1, True, None], "bad_type"),
    ("msgid False", [0, False, "m", None, None], "bad_type"),
    ("msgid negative", [1, -1, None], "bad_type"),
    ("msgid 2**32", [1, 2**32, None], "bad_type"),
    ("msgid huge", [3, 2**64 - 1, "E", ""], "bad_type"),
    ("msgid float", [1, 1.0, None], "bad_type"),
    ("msgid str", [1, "1", None], "bad_type"),
    ("msgid None", [1, None, None], "bad_type"),
    ("method empty", [0, 1, "", None, None], "bad_type"),
    ("method bytes", [0, 1, b"m", None, None], "bad_type"),
    ("method None", [2, None, None], "bad_type"),
    ("method too long", [0, 1, BIG, None, None], "bad_type"),
    ("notification method too long", [2, BIG, None], "bad_type"),
    ("deadline int", [0, 1, "m", 5, None], "bad_type"),
    ("deadline zero int", [0, 1, "m", 0, None], "bad_type"),
    ("deadline bool", [0, 1, "m", True, None], "bad_type"),
    ("deadline str", [0, 1, "m", "1.0", None], "bad_type"),
    ("deadline negative", [0, 1, "m", -0.5, None], "bad_type"),
    ("deadline nan", [0, 1, "m", math.nan, None], "bad_type"),
    ("deadline inf", [0, 1, "m", math.inf, None], "bad_type"),
    ("deadline -inf", [0, 1, "m", -math.inf, None], "bad_type"),
    ("code empty", [3, 1, "", ""], "bad_type"),
    ("code lower case", [3, 1, "denied", ""], "bad_type"),
    ("code with space", [3, 1, "NO SUCH", ""], "bad_type"),
    ("code with newline", [3, 1, "DENIED\n", ""], "bad_type"),
    ("code non-ascii", [3, 1, "DENİED", ""], "bad_type"),
    ("code too long", [3, 1, "E" * 65, ""], "bad_type"),
    ("code int", [3, 1, 5, ""], "bad_type"),
    ("code bytes", [3, 1, b"DENIED", ""], "bad_type"),
    ("message None", [3, 1, "E", None], "bad_type"),
    ("message bytes", [3, 1, "E", b""], "bad_type"),
    ("message too long", [3, 1, "E", "m" * 1025], "bad_type"),
]


@pytest.mark.parametrize(
    ("items", "reason"),
    [pytest.param(items, reason, id=name) for name, items, reason in FROM_WIRE_REJECTS],
)
def test_from_wire_rejects(items: Any, reason: str) -> None:
    with pytest.raises(InvalidFrame) as info:
        ipc.from_wire(items)
    assert info.value.reason == reason
    assert info.value.code == "INVALID_FRAME"


@pytest.mark.parametrize(
    "items",
    [
        [0, 0, "m", None, None],
        [0, 2**32 - 1, "m" * 128, 0.0, None],
        [0, 1, "m", -0.0, None],
        [0, 1, "m", 1e308, None],
        [3, 1, "E" * 64, "m" * 1024],
        [3, 1, "A_1", ""],
        [2, "é", None],
    ],
)
def test_from_wire_accepts_edges(items: list[Any]) -> None:
    assert ipc.from_wire(items).to_wire() == items


@pytest.mark.parametrize(
    ("cls", "items"),
    [
        (Request, [1, 1, None]),
        (Response, [0, 1, "m", None, None]),
        (Notification, [3, 1, "E", ""]),
        (Error, [2, "m", None]),
    ],
)
def test_class_from_wire_checks_its_kind(cls: Any, items: list[Any]) -> None:
    with pytest.raises(InvalidFrame) as info:
        cls.from_wire(items)
    assert info.value.reason == "bad_kind"


def test_class_from_wire_builds_its_class() -> None:
    assert Request.from_wire([0, 1, "m", 1.5, [1]]) == Request(1, "m", [1], 1.5)
    assert Response.from_wire([1, 1, "b"]) == Response(1, "b")
    assert Notification.from_wire([2, "m", None]) == Notification("m")
    assert Error.from_wire([3, 1, "E", "x"]) == Error(1, "E", "x")


def test_from_wire_uses_the_given_limits() -> None:
    small = ipc.Limits(max_method_len=3, max_code_len=2, max_message_len=1)
    assert ipc.from_wire([2, "abc", None], small) == Notification("abc")
    for items in ([2, "abcd", None], [3, 1, "ABC", ""], [3, 1, "AB", "xy"]):
        with pytest.raises(InvalidFrame) as info:
            ipc.from_wire(items, small)
        assert info.value.reason == "bad_type"


def test_limits_defaults_and_validation() -> None:
    limits = ipc.DEFAULT_LIMITS
    assert limits == ipc.Limits()
    assert limits.max_frame_bytes == 1 << 20
    assert limits.max_depth == 32
    assert (limits.max_method_len, limits.max_message_len, limits.max_code_len) == (128, 1024, 64)
    for bad in ({"max_depth": 0}, {"max_frame_bytes": -1}, {"max_frame_bytes": 2**32}):
        with pytest.raises(ValueError):
            ipc.Limits(**bad)
    with pytest.raises(ValueError):
        ipc.Limits(max_depth=True)
