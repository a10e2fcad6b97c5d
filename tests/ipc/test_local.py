"""The kernel's fast-path codec must accept and refuse exactly what ipc.encode does."""

from __future__ import annotations

import collections
import contextlib
import enum
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ipc
from tests.ipc.ipc_strategies import assert_same, bodies, deadlines, methods, msgids

codec = ipc.LocalCodec()
BIG = 1 << 20


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


def nest(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


@given(msgids, methods, deadlines, bodies)
@settings(max_examples=200)
def test_request_bytes_decode_strictly_to_the_same_envelope(msgid, method, deadline, body):
    data = codec.request(msgid, method, deadline, body, BIG)
    envelope = ipc.decode(data)
    assert isinstance(envelope, ipc.Request)
    assert envelope.msgid == msgid and envelope.method == method
    assert_same(envelope.body, body)
    assert_same(codec.unpack(data)[4], body)


@given(msgids, bodies)
@settings(max_examples=100)
def test_response_round_trip(msgid, body):
    items = codec.unpack(codec.response(msgid, body, BIG))
    assert items[:2] == [1, msgid]
    assert_same(items[2], body)


def test_error_and_notification_layout():
    assert codec.unpack(codec.error(7, "REMOTE_ERROR", "x")) == [3, 7, "REMOTE_ERROR", "x"]
    assert codec.unpack(codec.notification("tick", {"n": 1}, BIG)) == [2, "tick", {"n": 1}]


def test_unpack_gives_a_fresh_copy():
    body = {"list": [1, 2], "map": {"k": "v"}}
    items = codec.unpack(codec.response(1, body, BIG))
    items[2]["list"].append(3)
    assert body == {"list": [1, 2], "map": {"k": "v"}}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({1: "int key"}, "bad_key"),
        ({b"k": "bytes key"}, "bad_key"),
        ({None: 1}, "bad_key"),
        ([{"deep": {(1, 2): 3}}], "bad_key"),
        (nest(33), "too_deep"),
        ({"k": nest(32)}, "too_deep"),
        (msgpack.ExtType(5, b"x"), "ext_type"),
        ([msgpack.Timestamp(1, 0)], "ext_type"),
        ({1, 2}, "unencodable"),
        (object(), "unencodable"),
        (2**70, "unencodable"),
        ("x" * BIG, "too_large"),
    ],
)
def test_refusals_match_ipc_encode(body, reason):
    with pytest.raises(ipc.InvalidFrame) as local:
        codec.request(1, "m", None, body, BIG)
    with pytest.raises(ipc.InvalidFrame) as general:
        ipc.encode(ipc.Request(1, "m", body, None), ipc.Limits(max_frame_bytes=BIG))
    assert local.value.reason == general.value.reason == reason


def test_depth_limit_is_inclusive():
    assert codec.unpack(codec.request(1, "m", None, nest(32), BIG))[4] == nest(32)


@pytest.mark.parametrize(
    "body",
    [Colour.RED, Name("n"), {Name("k"): 1}, collections.OrderedDict(a=1), [True, 1.5, None]],
)
def test_subclasses_take_the_general_path(body):
    items = codec.unpack(codec.response(1, body, BIG))
    assert items[2] == ipc.decode(ipc.encode(ipc.Response(1, body))).body  # type: ignore[union-attr]


def test_size_limit_is_per_call():
    data = codec.response(1, "x" * 100, 200)
    assert len(data) <= 200
    with pytest.raises(ipc.InvalidFrame) as exc:
        codec.response(1, "x" * 300, 200)
    assert exc.value.reason == "too_large"


def test_packer_survives_an_error():
    with pytest.raises(ipc.InvalidFrame):
        codec.response(1, [1, 2**70], BIG)
    assert codec.unpack(codec.response(2, [1], BIG)) == [1, 2, [1]]


@given(st.binary(max_size=64))
def test_unpack_of_garbage_raises_invalid_frame_only(data):
    with contextlib.suppress(ipc.InvalidFrame):
        codec.unpack(data)
