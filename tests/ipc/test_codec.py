"""ipc/_codec.py: strict encode/decode of envelopes and bare values."""

from __future__ import annotations

import collections
import contextlib
import datetime
import enum
import math
import struct
import time
from typing import Any

import msgpack
import pytest
from hypothesis import assume, given, settings

import ipc
from ipc import Error, InvalidFrame, Limits, Notification, Request, Response
from tests.ipc.ipc_strategies import (
    assert_same,
    assert_same_envelope,
    bodies,
    depth,
    envelope_depth,
    envelopes,
)

LIMIT = ipc.DEFAULT_LIMITS.max_frame_bytes


def reason_of(fn: Any, *args: Any) -> str:
    with pytest.raises(InvalidFrame) as info:
        fn(*args)
    assert info.value.code == "INVALID_FRAME"
    return info.value.reason


def nest_list(n: int, leaf: Any = None) -> Any:
    value = leaf
    for _ in range(n):
        value = [value]
    return value


def nest_map(n: int, leaf: Any = None) -> Any:
    value = leaf
    for _ in range(n):
        value = {"k": value}
    return value


# -- round trips ---------------------------------------------------------------------------


@settings(max_examples=300)
@given(envelopes)
def test_envelope_round_trip(envelope: ipc.Envelope) -> None:
    assume(envelope_depth(envelope) <= ipc.DEFAULT_LIMITS.max_depth)
    body = ipc.encode(envelope)
    assert isinstance(body, bytes)
    assert_same_envelope(ipc.decode(body), envelope)
    # Canonical: re-encoding the decoded envelope gives the same bytes (NaN payloads too).
    assert ipc.encode(ipc.decode(body)) == body


@settings(max_examples=200)
@given(bodies)
def test_value_round_trip(value: Any) -> None:
    assume(depth(value) <= ipc.DEFAULT_LIMITS.max_depth)
    data = ipc.encode_value(value)
    assert_same(ipc.decode_value(data), value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -1,
        2**63 - 1,
        -(2**63),
        2**64 - 1,
        0.0,
        -0.0,
        1.5,
        math.inf,
        -math.inf,
        math.nan,
        "",
        "é€𝄞",
        b"",
        b"\x00\xff",
        [],
        {},
        {"": None},
        [1, [2, [3]]],
        {"a": {"b": [1.5, "x", b"y", None, True]}},
    ],
)
def test_every_kind_round_trips(value: Any) -> None:
    for envelope in (Request(1, "m", value, 0.25), Response(2, value), Notification("n", value)):
        assert_same_envelope(ipc.decode(ipc.encode(envelope)), envelope)
    assert_same(ipc.decode_value(ipc.encode_value(value)), value)


def test_error_round_trip() -> None:
    for envelope in (Error(0, "DENIED"), Error(2**32 - 1, "E" * 64, "m" * 1024)):
        assert ipc.decode(ipc.encode(envelope)) == envelope


def test_floats_stay_float64() -> None:
    body = ipc.encode(Response(1, 0.1))
    assert body.endswith(b"\xcb" + struct.pack(">d", 0.1))
    # A float32 on the wire is still a float (a peer may send one); it decodes as a float.
    got = ipc.decode(b"\x93\x01\x01\xca" + struct.pack(">f", 1.5))
    assert got == Response(1, 1.5)
    req = ipc.decode(b"\x95\x00\x01\xa1m\xca" + struct.pack(">f", 2.0) + b"\xc0")
    assert isinstance(req, Request) and req.deadline == 2.0


def test_local_types_normalise_on_the_wire() -> None:
    class Colour(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    body = (
        1,
        [bytearray(b"ab"), memoryview(b"cd")],
        collections.OrderedDict(a=Colour.RED),
        {Name("k"): Name("v")},
    )
    got = ipc.decode(ipc.encode(Response(1, body)))
    assert isinstance(got, Response)
    assert got.body == [1, [b"ab", b"cd"], {"a": 1}, {"k": "v"}]
    assert type(got.body[2]) is dict and type(got.body[2]["a"]) is int
    assert type(got.body[3]["k"]) is str


def test_int_deadline_is_sent_as_float() -> None:
    got = ipc.decode(ipc.encode(Request(1, "m", deadline=3)))
    assert isinstance(got, Request)
    assert type(got.deadline) is float and got.deadline == 3.0


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_decode_accepts_bytes_like(kind: Any) -> None:
    data = ipc.encode(Response(1, "x"))
    assert ipc.decode(kind(data)) == Response(1, "x")
    assert ipc.decode_value(kind(ipc.encode_value([1]))) == [1]


def test_decode_returns_fresh_mutable_lists() -> None:
    got = ipc.decode(ipc.encode(Response(1, ([1], {"a": (2,)}))))
    assert isinstance(got, Response)
    assert got.body == [[1], {"a": [2]}]


# -- decode rejections -----------------------------------------------------------------------


def pk(obj: Any) -> bytes:
    return bytes(msgpack.packb(obj, use_bin_type=True))


RESP = b"\x93\x01\x01"  # [1, 1, <body follows>]: a RESPONSE whose body is the next value
U32 = b"\xff\xff\xff\xff"

# Each row: a frame body and the reason decode must give.
DECODE_REJECTS: list[tuple[str, bytes, str]] = [
    # msgpack syntax
    ("empty", b"", "malformed"),
    ("trailing byte", pk([1, 1, None]) + b"\xc0", "malformed"),
    ("two values", pk([1, 1, None]) + pk([1, 1, None]), "malformed"),
    ("reserved 0xc1", RESP + b"\xc1", "malformed"),
    ("cut inside body", pk([1, 1, "abcdef"])[:-2], "malformed"),
    ("cut inside header", b"\x95\x00", "malformed"),
    ("huge array count", RESP + b"\xdd" + U32, "malformed"),
    ("huge map count", RESP + b"\xdf" + U32, "malformed"),
    ("huge str length", RESP + b"\xdb" + U32, "malformed"),
    ("huge bin length", RESP + b"\xc6" + U32, "malformed"),
    ("huge ext length", RESP + b"\xc9" + U32 + b"\x05", "malformed"),
    ("huge envelope count", b"\xdd" + U32 + b"\x01", "malformed"),
    ("bad utf-8 in body", RESP + b"\xa2\xc3\x28", "malformed"),
    ("bad utf-8 in method", b"\x93\x02\xa1\xff\xc0", "malformed"),
    ("bad utf-8 in key", RESP + b"\x81\xa1\xff\x01", "malformed"),
    ("utf-8 surrogate", RESP + b"\xa3\xed\xa0\x80", "malformed"),
    ("overlong utf-8", RESP + b"\xa2\xc0\xaf", "malformed"),
    # extension types, timestamps included
    ("timestamp32", RESP + b"\xd6\xff" + b"\x00\x00\x00\x01", "ext_type"),
    ("timestamp64", RESP + b"\xd7\xff" + b"\x00" * 8, "ext_type"),
    ("timestamp96", RESP + b"\xc7\x0c\xff" + b"\x00" * 12, "ext_type"),
    ("timestamp bad length", RESP + b"\xc7\x05\xff" + b"\x00" * 5, "ext_type"),
    ("timestamp in list", RESP + b"\x92\x01\xd6\xff\x00\x00\x00\x01", "ext_type"),
    ("timestamp deep in map", RESP + b"\x81\xa1a\x91\xd6\xff\x00\x00\x00\x01", "ext_type"),
    ("timestamp as msgid", b"\x93\x01\xd6\xff\x00\x00\x00\x01\xc0", "bad_type"),
    ("ext 5", RESP + b"\xd4\x05\x00", "ext_type"),
    ("ext 0", RESP + b"\xd5\x00\x00\x00", "ext_type"),
    ("ext 127", RESP + b"\xc7\x00\x7f", "ext_type"),
    ("ext -128", RESP + b"\xd8\x80" + b"\x00" * 16, "ext_type"),
    ("ext in map value", RESP + b"\x81\xa1a\xd4\x05\x00", "ext_type"),
    ("ext as map key", RESP + b"\x81\xd4\x05\x00\x01", "ext_type"),
    ("ext as envelope", b"\xd4\x05\x00", "ext_type"),
    # map keys
    ("int key", RESP + b"\x81\x01\x02", "bad_key"),
    ("negative int key", RESP + b"\x81\xff\x02", "bad_key"),
    ("bytes key", RESP + b"\x81\xc4\x01a\x02", "bad_key"),
    ("nil key", RESP + b"\x81\xc0\x02", "bad_key"),
    ("bool key", RESP + b"\x81\xc3\x02", "bad_key"),
    ("float key", RESP + b"\x81\xcb" + struct.pack(">d", 1.5) + b"\x02", "bad_key"),
    ("array key", RESP + b"\x81\x91\x01\x02", "bad_key"),
    ("map key", RESP + b"\x81\x80\x02", "bad_key"),
    ("timestamp key", RESP + b"\x81\xd6\xff\x00\x00\x00\x01\x02", "bad_key"),
    ("bytes key deep", RESP + b"\x91\x91\x81\xa1a\x81\xc4\x01b\x02", "bad_key"),
    # depth
    ("array depth 33", RESP + b"\x91" * 33 + b"\xc0", "too_deep"),
    ("map depth 33", RESP + b"\x81\xa1k" * 33 + b"\xc0", "too_deep"),
    ("mixed depth 33", RESP + b"\x91\x81\xa1k" * 16 + b"\x90", "too_deep"),
    ("array depth 100000", RESP + b"\x91" * 100_000 + b"\xc0", "too_deep"),
    ("map depth 100000", RESP + b"\x81\xa0" * 100_000 + b"\xc0", "too_deep"),
    # envelope shape and kind
    ("envelope map", pk({"kind": 0}), "bad_type"),
    ("envelope int", pk(1), "bad_type"),
    ("envelope str", pk("hello"), "bad_type"),
    ("envelope nil", pk(None), "bad_type"),
    ("envelope bin", pk(b"\x93\x01\x01\xc0"), "bad_type"),
    ("envelope empty", pk([]), "bad_shape"),
    ("kind 4", pk([4, 1, None]), "bad_kind"),
    ("kind -1", pk([-1, 1, None]), "bad_kind"),
    ("kind 255", pk([255, 1, None]), "bad_kind"),
    ("kind true", pk([True, 1, None]), "bad_type"),
    ("kind str", pk(["1", 1, None]), "bad_type"),
    ("request 4 fields", pk([0, 1, "m", None]), "bad_shape"),
    ("request 6 fields", pk([0, 1, "m", None, None, None]), "bad_shape"),
    ("response 2 fields", pk([1, 1]), "bad_shape"),
    ("notification 4 fields", pk([2, "m", None, None]), "bad_shape"),
    ("error 3 fields", pk([3, 1, "E"]), "bad_shape"),
    ("error 5 fields", pk([3, 1, "E", "", None]), "bad_shape"),
    # header fields
    ("msgid true", pk([1, True, None]), "bad_type"),
    ("msgid false", pk([0, False, "m", None, None]), "bad_type"),
    ("msgid negative", pk([1, -1, None]), "bad_type"),
    ("msgid 2**32", pk([1, 2**32, None]), "bad_type"),
    ("msgid 2**64-1", pk([1, 2**64 - 1, None]), "bad_type"),
    ("msgid float", pk([1, 1.0, None]), "bad_type"),
    ("msgid str", pk([3, "1", "E", ""]), "bad_type"),
    ("deadline int", pk([0, 1, "m", 5, None]), "bad_type"),
    ("deadline bool", pk([0, 1, "m", False, None]), "bad_type"),
    ("deadline negative", pk([0, 1, "m", -1.0, None]), "bad_type"),
    ("deadline nan", pk([0, 1, "m", math.nan, None]), "bad_type"),
    ("deadline inf", pk([0, 1, "m", math.inf, None]), "bad_type"),
    ("deadline str", pk([0, 1, "m", "1", None]), "bad_type"),
    ("method empty", pk([0, 1, "", None, None]), "bad_type"),
    ("method overlong", pk([0, 1, "m" * 129, None, None]), "bad_type"),
    ("method bin", pk([2, b"m", None]), "bad_type"),
    ("method int", pk([2, 7, None]), "bad_type"),
    ("code lower", pk([3, 1, "denied", ""]), "bad_type"),
    ("code empty", pk([3, 1, "", ""]), "bad_type"),
    ("code dash", pk([3, 1, "NO-SUCH", ""]), "bad_type"),
    ("code overlong", pk([3, 1, "E" * 65, ""]), "bad_type"),
    ("message overlong", pk([3, 1, "E", "m" * 1025]), "bad_type"),
    ("message nil", pk([3, 1, "E", None]), "bad_type"),
    # size
    ("over max_frame_bytes", pk([1, 1, b"x" * LIMIT]), "too_large"),
    ("garbage over max_frame_bytes", b"\xc1" * (LIMIT + 1), "too_large"),
]


@pytest.mark.parametrize(
    ("body", "reason"),
    [pytest.param(body, reason, id=name) for name, body, reason in DECODE_REJECTS],
)
def test_decode_rejects(body: bytes, reason: str) -> None:
    assert reason_of(ipc.decode, body) == reason
    assert reason_of(ipc.decode, bytearray(body)) == reason


@pytest.mark.parametrize("data", ["\x93\x01\x01\xc0", None, 7, [1, 1, None], object()])
def test_decode_rejects_non_bytes(data: Any) -> None:
    assert reason_of(ipc.decode, data) == "bad_type"
    assert reason_of(ipc.decode_value, data) == "bad_type"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "malformed"),
        (b"\xc0\xc0", "malformed"),
        (b"\xd6\xff\x00\x00\x00\x00", "ext_type"),
        (b"\xd4\x01\x00", "ext_type"),
        (b"\x81\x01\x01", "bad_key"),
        (b"\x91" * 33 + b"\xc0", "too_deep"),
        (b"\xa1\xff", "malformed"),
    ],
)
def test_decode_value_rejects(data: bytes, reason: str) -> None:
    assert reason_of(ipc.decode_value, data) == reason


def test_depth_limit_is_exact() -> None:
    ok = Response(1, nest_list(32))
    assert ipc.decode(ipc.encode(ok)) == ok
    ok_map = Response(1, nest_map(32))
    assert ipc.decode(ipc.encode(ok_map)) == ok_map
    assert ipc.decode_value(ipc.encode_value(nest_list(32))) == nest_list(32)
    assert reason_of(ipc.decode_value, pk(nest_list(33))) == "too_deep"
    # Scalars are depth 0; an empty container is depth 1.
    one = Limits(max_depth=1)
    assert ipc.decode(pk([1, 1, [1, "a", None]]), one) == Response(1, [1, "a", None])
    assert reason_of(ipc.decode, pk([1, 1, [[]]]), one) == "too_deep"
    assert reason_of(ipc.decode, pk([1, 1, {"a": {}}]), one) == "too_deep"


def test_size_limit_is_exact() -> None:
    small = Limits(max_frame_bytes=16)
    exact = pk([1, 1, b"x" * 11])
    assert len(exact) == 16
    assert ipc.decode(exact, small) == Response(1, b"x" * 11)
    assert ipc.encode(Response(1, b"x" * 11), small) == exact
    over = pk([1, 1, b"x" * 12])
    assert reason_of(ipc.decode, over, small) == "too_large"
    assert reason_of(ipc.encode, Response(1, b"x" * 12), small) == "too_large"
    assert reason_of(ipc.decode_value, b"\xc0" * 17, small) == "too_large"


def test_largest_default_frame_decodes() -> None:
    payload = b"x" * (LIMIT - 8)  # 3 bytes of envelope, 5 of bin32 header
    frame_body = pk([1, 1, payload])
    assert len(frame_body) == LIMIT
    assert ipc.decode(frame_body) == Response(1, payload)


# -- encode rejections -----------------------------------------------------------------------


class Cycle(list[Any]):
    pass


def _cycle() -> Any:
    c: list[Any] = []
    c.append(c)
    return c


ENCODE_REJECTS: list[tuple[str, Any, str]] = [
    ("int key", Response(1, {1: "a"}), "bad_key"),
    ("bytes key", Response(1, {b"a": 1}), "bad_key"),
    ("None key", Response(1, {None: 1}), "bad_key"),
    ("bool key", Response(1, {True: 1}), "bad_key"),
    ("float key", Response(1, {1.5: 1}), "bad_key"),
    ("tuple key", Response(1, {("a",): 1}), "bad_key"),
    ("deep bad key", Notification("n", [[{"a": {2: 3}}]]), "bad_key"),
    ("ext type", Response(1, msgpack.ExtType(5, b"x")), "ext_type"),
    ("ext in list", Response(1, [1, msgpack.ExtType(5, b"x")]), "ext_type"),
    ("timestamp", Response(1, msgpack.Timestamp(1, 0)), "ext_type"),
    ("timestamp in map", Response(1, {"t": msgpack.Timestamp(1, 0)}), "ext_type"),
    ("datetime", Response(1, datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)), "unencodable"),
    ("set", Response(1, {1, 2}), "unencodable"),
    ("object", Response(1, [object()]), "unencodable"),
    ("int over uint64", Response(1, 2**64), "unencodable"),
    ("int under int64", Response(1, [-(2**63) - 1]), "unencodable"),
    ("surrogate str", Response(1, "\ud800"), "unencodable"),
    ("surrogate key", Response(1, {"\udc80": 1}), "unencodable"),
    ("array depth 33", Response(1, nest_list(33)), "too_deep"),
    ("map depth 33", Response(1, nest_map(33)), "too_deep"),
    ("tuple depth 33", Response(1, tuple(nest_list(33))), "too_deep"),
    ("cycle", Response(1, _cycle()), "too_deep"),
    ("too large", Response(1, b"x" * LIMIT), "too_large"),
    ("not an envelope: dict", {"msgid": 1}, "bad_type"),
    ("not an envelope: list", [1, 1, None], "bad_type"),
    ("not an envelope: None", None, "bad_type"),
    ("msgid bool", Response(True, None), "bad_type"),
    ("msgid negative", Response(-1, None), "bad_type"),
    ("msgid 2**32", Error(2**32, "E"), "bad_type"),
    ("method empty", Request(1, ""), "bad_type"),
    ("method overlong", Notification("m" * 129), "bad_type"),
    ("deadline bool", Request(1, "m", deadline=True), "bad_type"),
    ("deadline nan", Request(1, "m", deadline=math.nan), "bad_type"),
    ("deadline negative", Request(1, "m", deadline=-1), "bad_type"),
    ("code lower", Error(1, "denied"), "bad_type"),
    ("message overlong", Error(1, "E", "m" * 1025), "bad_type"),
]


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [pytest.param(env, reason, id=name) for name, env, reason in ENCODE_REJECTS],
)
def test_encode_rejects(envelope: Any, reason: str) -> None:
    assert reason_of(ipc.encode, envelope) == reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({1: 2}, "bad_key"),
        (msgpack.ExtType(1, b""), "ext_type"),
        (msgpack.Timestamp(0, 0), "ext_type"),
        (nest_list(33), "too_deep"),
        (object(), "unencodable"),
        (b"x" * LIMIT, "too_large"),
    ],
)
def test_encode_value_rejects(value: Any, reason: str) -> None:
    assert reason_of(ipc.encode_value, value) == reason


def test_encode_value_uses_limits() -> None:
    assert reason_of(ipc.encode_value, [[1]], Limits(max_depth=1)) == "too_deep"
    assert ipc.encode_value([1], Limits(max_depth=1)) == b"\x91\x01"


def test_deep_limit_above_msgpack_stack_still_refuses() -> None:
    # With a limit above msgpack's own stacks, their errors still map to too_deep.
    huge = Limits(max_depth=100_000)
    assert reason_of(ipc.encode_value, nest_list(5_000), huge) == "too_deep"
    assert reason_of(ipc.decode_value, b"\x91" * 5_000 + b"\xc0", huge) == "too_deep"


# -- linear time (guards against hangs, not benchmarks) ----------------------------------------


def _timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    with contextlib.suppress(InvalidFrame):
        fn(*args)
    return time.perf_counter() - start


N = LIMIT - 16


def counted(marker: bytes, count: int, item: bytes) -> bytes:
    """A RESPONSE whose body is a 32-bit-counted container (or str) of ``count`` items."""
    return RESP + marker + struct.pack(">I", count) + item * count


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("flat array of nils", counted(b"\xdd", N, b"\xc0")),
        ("flat array of ints", counted(b"\xdd", N, b"\x7f")),
        ("long string", counted(b"\xdb", N, b"a")),
        ("flat map", counted(b"\xdf", N // 2, b"\xa0\xc0")),
        ("wide shallow tree", counted(b"\xdd", N // 2, b"\x91\x90")),
        ("nested arrays", RESP + b"\x91" * N),
        ("nested maps", RESP + b"\x81\xa0" * (N // 2)),
        ("huge declared array", RESP + b"\xdd" + U32),
        ("huge declared map", RESP + b"\xdf" + U32),
        ("huge declared str", RESP + b"\xdb" + U32 + b"a"),
        ("many huge declared arrays", b"\xdd" + U32 + b"\xdd\xff\xff\xff\x00" * 1000),
    ],
)
def test_decode_is_fast_on_large_input(name: str, body: bytes) -> None:
    assert len(body) <= LIMIT
    assert _timed(ipc.decode, body) < 2.0, name


def test_encode_is_fast_on_large_input() -> None:
    wide = list(range(100_000))
    assert _timed(ipc.encode, Response(1, wide)) < 2.0
    assert _timed(ipc.encode, Response(1, [[i] for i in range(50_000)])) < 2.0
    assert _timed(ipc.encode, Response(1, "x" * (LIMIT - 16))) < 2.0
