"""Hostile peers on the wire: every attack is a row naming the InvalidFrame reason it expects.

A peer controls every byte we read. Whatever it sends, the FrameDecoder either yields valid
envelopes or raises InvalidFrame (and then stays closed); it never raises anything else,
never buffers a body it has already refused, and never takes more than linear time.
"""

from __future__ import annotations

import itertools
import math
import struct
import time
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ipc
from ipc import CLOSED, NEED_DATA, FrameDecoder, InvalidFrame

LIMIT = ipc.DEFAULT_LIMITS.max_frame_bytes
EOF_ = b""  # end of stream, as a chunk


def hdr(n: int) -> bytes:
    return struct.pack(">I", n)


def framed(body: bytes) -> bytes:
    """A frame around any body, even an invalid or empty one (frame_body refuses those)."""
    return hdr(len(body)) + body


def pk(obj: Any) -> bytes:
    return bytes(msgpack.packb(obj, use_bin_type=True))


GOOD = ipc.frame(ipc.Response(1, "ok"))
RESP = b"\x93\x01\x01"
TS = b"\xd6\xff\x00\x00\x00\x01"


def run(chunks: list[bytes]) -> tuple[list[ipc.Envelope], str | None]:
    """Feed chunks, draining events after each; return the envelopes and the error reason."""
    decoder = FrameDecoder()
    got: list[ipc.Envelope] = []
    try:
        for chunk in chunks:
            decoder.receive_data(chunk)
            while True:
                event = decoder.next_event()
                if event is NEED_DATA or event is CLOSED:
                    break
                got.append(event)
    except InvalidFrame as exc:
        # ERROR is final: every later call refuses, whatever it is given.
        for call in (decoder.next_event, lambda: decoder.receive_data(GOOD)):
            with pytest.raises(InvalidFrame) as again:
                call()
            assert again.value.reason == "closed"
        return got, exc.reason
    return got, None


# Each row: the chunks a hostile peer sends, and the reason the decoder must give.
ATTACKS: list[tuple[str, list[bytes], str]] = [
    # framing
    ("eof inside header", [hdr(5)[:2], EOF_], "truncated"),
    ("eof after header", [hdr(5), EOF_], "truncated"),
    ("eof inside body", [GOOD[:-1], EOF_], "truncated"),
    ("eof inside second frame", [GOOD + GOOD[:5], EOF_], "truncated"),
    ("declared length over limit", [hdr(LIMIT + 1)], "too_large"),
    ("declared length 4 GiB", [b"\xff\xff\xff\xff"], "too_large"),
    ("declared length over limit after a good frame", [GOOD + hdr(LIMIT + 1)], "too_large"),
    ("zero length frame", [hdr(0)], "malformed"),
    ("zero length frame after a good one", [GOOD, hdr(0) + GOOD], "malformed"),
    ("data after eof", [GOOD, EOF_, b"\x00"], "closed"),
    ("frame after eof", [EOF_, GOOD], "closed"),
    # body syntax
    ("trailing bytes in body", [framed(pk([1, 1, None]) + b"\xc0")], "malformed"),
    ("body shorter than declared", [framed(b"\x93\x01")], "malformed"),
    ("reserved byte", [framed(b"\xc1")], "malformed"),
    ("invalid utf-8 in body", [framed(RESP + b"\xa2\xc3\x28")], "malformed"),
    ("invalid utf-8 in method", [framed(b"\x93\x02\xa2\xff\xfe\xc0")], "malformed"),
    ("invalid utf-8 in key", [framed(RESP + b"\x81\xa1\xff\xc0")], "malformed"),
    ("huge array count, tiny frame", [framed(RESP + b"\xdd\xff\xff\xff\xff")], "malformed"),
    ("huge map count, tiny frame", [framed(RESP + b"\xdf\xff\xff\xff\xff")], "malformed"),
    # nesting
    ("array depth 33", [framed(RESP + b"\x91" * 33 + b"\xc0")], "too_deep"),
    ("map depth 33", [framed(RESP + b"\x81\xa1k" * 33 + b"\xc0")], "too_deep"),
    ("array depth 500000", [framed(RESP + b"\x91" * 500_000 + b"\xc0")], "too_deep"),
    ("map depth 300000", [framed(RESP + b"\x81\xa0" * 300_000 + b"\xc0")], "too_deep"),
    # extension types
    ("timestamp body", [framed(RESP + TS)], "ext_type"),
    ("timestamp nested", [framed(RESP + b"\x91\x81\xa1t" + TS)], "ext_type"),
    ("timestamp96", [framed(RESP + b"\xc7\x0c\xff" + b"\x00" * 12)], "ext_type"),
    ("bad timestamp", [framed(RESP + b"\xc7\x03\xff\x00\x00\x00")], "ext_type"),
    ("ext 1", [framed(RESP + b"\xd4\x01\x00")], "ext_type"),
    ("ext 42 nested", [framed(RESP + b"\x91\xd5\x2a\x00\x00")], "ext_type"),
    ("ext envelope", [framed(b"\xd4\x01\x00")], "ext_type"),
    # map keys
    ("int key", [framed(RESP + b"\x81\x01\xc0")], "bad_key"),
    ("bytes key", [framed(RESP + b"\x81\xc4\x01k\xc0")], "bad_key"),
    ("nil key", [framed(RESP + b"\x81\xc0\xc0")], "bad_key"),
    ("bool key", [framed(RESP + b"\x81\xc2\xc0")], "bad_key"),
    ("float key", [framed(RESP + b"\x81\xca\x00\x00\x00\x00\xc0")], "bad_key"),
    ("array key", [framed(RESP + b"\x81\x90\xc0")], "bad_key"),
    # envelope header
    ("bool msgid", [framed(pk([1, True, None]))], "bad_type"),
    ("negative msgid", [framed(pk([1, -1, None]))], "bad_type"),
    ("msgid 2**32", [framed(pk([1, 2**32, None]))], "bad_type"),
    ("msgid uint64 max", [framed(pk([3, 2**64 - 1, "E", ""]))], "bad_type"),
    ("int deadline", [framed(pk([0, 1, "m", 1, None]))], "bad_type"),
    ("negative deadline", [framed(pk([0, 1, "m", -1.0, None]))], "bad_type"),
    ("nan deadline", [framed(pk([0, 1, "m", math.nan, None]))], "bad_type"),
    ("inf deadline", [framed(pk([0, 1, "m", math.inf, None]))], "bad_type"),
    ("empty method", [framed(pk([0, 1, "", None, None]))], "bad_type"),
    ("overlong method", [framed(pk([2, "m" * 129, None]))], "bad_type"),
    ("lower-case error code", [framed(pk([3, 1, "oops", ""]))], "bad_type"),
    ("error code with control char", [framed(pk([3, 1, "E\x00", ""]))], "bad_type"),
    ("overlong error message", [framed(pk([3, 1, "E", "x" * 1025]))], "bad_type"),
    ("request with 4 fields", [framed(pk([0, 1, "m", None]))], "bad_shape"),
    ("response with 4 fields", [framed(pk([1, 1, None, None]))], "bad_shape"),
    ("error with 2 fields", [framed(pk([3, 1]))], "bad_shape"),
    ("empty envelope", [framed(pk([]))], "bad_shape"),
    ("kind 4", [framed(pk([4, 1, None]))], "bad_kind"),
    ("kind -1", [framed(pk([-1, 1, None]))], "bad_kind"),
    ("kind as str", [framed(pk(["0", 1, "m", None, None]))], "bad_type"),
    ("envelope is a map", [framed(pk({"kind": 1}))], "bad_type"),
    ("envelope is an int", [framed(pk(1))], "bad_type"),
    ("envelope is a str", [framed(pk("[1, 1, null]"))], "bad_type"),
    # an attack after valid traffic: the good frame is delivered, then the error
    ("bad frame after a good one", [GOOD + framed(pk([9]))], "bad_kind"),
]


@pytest.mark.parametrize(
    ("chunks", "reason"),
    [pytest.param(chunks, reason, id=name) for name, chunks, reason in ATTACKS],
)
def test_attack(chunks: list[bytes], reason: str) -> None:
    got, error = run(chunks)
    assert error == reason
    # Rows that open with a valid frame get it delivered before the error.
    assert got == [ipc.Response(1, "ok")] * chunks[0].startswith(GOOD)


@pytest.mark.parametrize(
    ("chunks", "reason"),
    [
        pytest.param(chunks, reason, id=name)
        for name, chunks, reason in ATTACKS
        if sum(map(len, chunks)) <= 10_000  # the large rows are covered whole above
    ],
)
def test_attack_byte_by_byte(chunks: list[bytes], reason: str) -> None:
    split_: list[bytes] = []
    for chunk in chunks:  # one byte per chunk, keeping the end-of-stream markers
        split_.extend([chunk[i : i + 1] for i in range(len(chunk))] or [EOF_])
    assert run(split_)[1] == reason


def test_oversized_length_refused_before_any_body_byte() -> None:
    decoder = FrameDecoder()
    for byte in hdr(LIMIT + 1):
        assert decoder.next_event() is NEED_DATA
        decoder.receive_data(bytes([byte]))
    assert decoder.buffered == 4
    with pytest.raises(InvalidFrame) as info:
        decoder.next_event()
    assert info.value.reason == "too_large"
    with pytest.raises(InvalidFrame) as again:
        decoder.receive_data(b"\x00" * 1024)  # the body the attacker wanted us to hold
    assert again.value.reason == "closed"
    assert decoder.buffered == 4


def test_use_after_error_every_entry_point() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(hdr(0))
    with pytest.raises(InvalidFrame):
        decoder.next_event()
    for call in (
        decoder.next_event,
        lambda: decoder.receive_data(b""),
        lambda: decoder.receive_data(GOOD),
    ):
        with pytest.raises(InvalidFrame) as info:
            call()
        assert info.value.reason == "closed"


def test_huge_declared_containers_are_cheap() -> None:
    # Many containers each declaring 2**32-1 members inside one small frame.
    body = RESP + b"\xdd\xff\xff\xff\xff" + b"\xdf\xff\xff\xff\xff" * 1000
    start = time.perf_counter()
    assert run([framed(body)])[1] == "malformed"
    assert time.perf_counter() - start < 2.0


# -- fuzzing ----------------------------------------------------------------------------------

_msgids = st.integers(0, 2**32 - 1)
_names = st.text(min_size=1, max_size=8)
_codes = st.from_regex(r"[A-Z_]{1,8}", fullmatch=True)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
_valid_bodies = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
_valid_envelopes: st.SearchStrategy[ipc.Envelope] = (
    st.builds(ipc.Request, _msgids, _names, _valid_bodies, st.none() | st.floats(0, 1e9))
    | st.builds(ipc.Response, _msgids, _valid_bodies)
    | st.builds(ipc.Notification, _names, _valid_bodies)
    | st.builds(ipc.Error, _msgids, _codes, st.text(max_size=50))
)


def decode_stream(chunks: list[bytes]) -> None:
    """Feed chunks then EOF; only InvalidFrame may escape, and only valid envelopes come out."""
    decoder = FrameDecoder()
    try:
        for chunk in [*chunks, EOF_]:
            decoder.receive_data(chunk)
            while (event := decoder.next_event()) is not NEED_DATA and event is not CLOSED:
                assert isinstance(event, ipc.Request | ipc.Response | ipc.Notification | ipc.Error)
                ipc.encode(event)  # whatever we accept, we could send back
    except InvalidFrame as exc:
        assert exc.reason in ipc.REASONS


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


@settings(max_examples=400)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_to_decode(data: bytes) -> None:
    for fn in (ipc.decode, ipc.decode_value):
        try:
            fn(data)
        except InvalidFrame as exc:
            assert exc.reason in ipc.REASONS


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_arbitrary_msgpack_looking_bodies(data: bytes) -> None:
    # Bodies that start like an envelope get further into the decoder than random bytes.
    for prefix in (b"\x93\x01\x01", b"\x95\x00\x01\xa1m", b"\x94\x03\x01", b"\x93\x02\xa1m"):
        try:
            ipc.decode(prefix + data)
        except InvalidFrame as exc:
            assert exc.reason in ipc.REASONS


@settings(max_examples=300)
@given(st.binary(max_size=256), st.lists(st.integers(min_value=0), max_size=10))
def test_arbitrary_bytes_to_frame_decoder(data: bytes, cuts: list[int]) -> None:
    decode_stream(split(data, cuts))
    decode_stream(split(hdr(len(data)) + data, cuts))  # well-framed garbage


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(min_value=0), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(min_value=0), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(min_value=0), st.just(0)),
)


def mutate(data: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, where, value in mutations:
        if op == "insert":
            buf.insert(where % (len(buf) + 1), value)
        elif buf:
            i = where % len(buf)
            if op == "flip":
                buf[i] ^= value
            else:
                del buf[i]
    return bytes(buf)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_valid_envelopes, min_size=1, max_size=3),
    st.lists(_mutation, min_size=1, max_size=4),
    st.lists(st.integers(min_value=0), max_size=6),
)
def test_mutated_frames(envelopes: list[ipc.Envelope], mutations: Any, cuts: list[int]) -> None:
    stream = b"".join(ipc.frame(e) for e in envelopes)
    mutated = mutate(stream, mutations)
    decode_stream(split(mutated, cuts))
    # The bodies alone, mutated, through decode.
    body = mutate(ipc.encode(envelopes[0]), mutations)
    try:
        ipc.decode(body)
    except InvalidFrame as exc:
        assert exc.reason in ipc.REASONS
