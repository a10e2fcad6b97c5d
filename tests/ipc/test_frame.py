"""ipc/_frame.py: length-prefixed framing and the incremental FrameDecoder."""

from __future__ import annotations

import struct
import time
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import ipc
from ipc import CLOSED, HEADER_SIZE, NEED_DATA, FrameDecoder, InvalidFrame, Limits, Response
from tests.ipc.ipc_strategies import assert_same_envelope, envelope_depth, envelopes

LIMIT = ipc.DEFAULT_LIMITS.max_frame_bytes


def header(n: int) -> bytes:
    return struct.pack(">I", n)


def drain(decoder: FrameDecoder) -> list[Any]:
    """Every event up to NEED_DATA or CLOSED (which is included)."""
    events: list[Any] = []
    while True:
        event = decoder.next_event()
        events.append(event)
        if event is NEED_DATA or event is CLOSED:
            return events


def feed_in_chunks(decoder: FrameDecoder, data: bytes, sizes: list[int]) -> list[Any]:
    got: list[Any] = []
    pos = 0
    i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        i += 1
        decoder.receive_data(data[pos : pos + size])
        pos += size
        got.extend(e for e in drain(decoder) if e is not NEED_DATA)
    decoder.receive_data(b"")
    got.extend(drain(decoder))
    return got


def reason_of(fn: Any, *args: Any) -> str:
    with pytest.raises(InvalidFrame) as info:
        fn(*args)
    return info.value.reason


# -- framing --------------------------------------------------------------------------------


def test_header_layout() -> None:
    assert HEADER_SIZE == 4
    envelope = Response(1, "x")
    data = ipc.frame(envelope)
    body = ipc.encode(envelope)
    assert data == header(len(body)) + body
    assert ipc.frame_body(body) == data


def test_frame_body_limits() -> None:
    assert reason_of(ipc.frame_body, b"") == "malformed"
    assert reason_of(ipc.frame_body, b"x" * 17, Limits(max_frame_bytes=16)) == "too_large"
    assert ipc.frame_body(b"x" * 16, Limits(max_frame_bytes=16)) == header(16) + b"x" * 16


def test_frame_propagates_encode_errors() -> None:
    assert reason_of(ipc.frame, Response(1, {1: 2})) == "bad_key"
    assert reason_of(ipc.frame, Response(1, b"x" * 20), Limits(max_frame_bytes=16)) == "too_large"


def test_sentinels() -> None:
    assert repr(NEED_DATA) == "NEED_DATA"
    assert repr(CLOSED) == "CLOSED"
    assert len({NEED_DATA, CLOSED}) == 2
    assert NEED_DATA is ipc.NEED_DATA


# -- round trips ------------------------------------------------------------------------------


@settings(max_examples=150)
@given(
    st.lists(envelopes, min_size=1, max_size=5),
    st.lists(st.integers(min_value=1, max_value=64), max_size=8),
)
def test_frames_round_trip_in_any_chunking(frames_in: list[ipc.Envelope], sizes: list[int]) -> None:
    for envelope in frames_in:
        assume(envelope_depth(envelope) <= ipc.DEFAULT_LIMITS.max_depth)
    stream = b"".join(ipc.frame(e) for e in frames_in)
    decoder = FrameDecoder()
    events = feed_in_chunks(decoder, stream, sizes)
    assert events[-1] is CLOSED
    assert len(events) == len(frames_in) + 1
    for got, want in zip(events[:-1], frames_in, strict=True):
        assert_same_envelope(got, want)
    assert decoder.buffered == 0
    assert decoder.next_event() is CLOSED  # CLOSED is sticky


def test_byte_at_a_time() -> None:
    envelopes_: list[ipc.Envelope] = [
        Response(1, "a"),
        ipc.Notification("n", [1, 2]),
        ipc.Error(3, "DENIED", "no"),
    ]
    stream = b"".join(ipc.frame(e) for e in envelopes_)
    decoder = FrameDecoder()
    got: list[Any] = []
    for i in range(len(stream)):
        decoder.receive_data(stream[i : i + 1])
        event = decoder.next_event()
        if event is not NEED_DATA:
            got.append(event)
            assert decoder.next_event() is NEED_DATA
    assert got == envelopes_


def test_all_frames_in_one_chunk() -> None:
    envelopes_ = [Response(i, i) for i in range(100)]
    decoder = FrameDecoder()
    decoder.receive_data(b"".join(ipc.frame(e) for e in envelopes_))
    assert drain(decoder) == [*envelopes_, NEED_DATA]
    decoder.receive_data(b"")
    assert decoder.next_event() is CLOSED


def test_need_data_until_the_frame_is_whole() -> None:
    data = ipc.frame(Response(1, "hello"))
    decoder = FrameDecoder()
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(data[:2])
    assert decoder.next_event() is NEED_DATA
    assert decoder.buffered == 2
    decoder.receive_data(data[2:-1])
    assert decoder.next_event() is NEED_DATA
    assert decoder.buffered == len(data) - 1
    assert decoder.trailing_data == (data[:-1], False)
    decoder.receive_data(data[-1:])
    assert decoder.next_event() == Response(1, "hello")
    assert decoder.buffered == 0
    assert decoder.trailing_data == (b"", False)


def test_empty_stream_closes_cleanly() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"")
    assert decoder.trailing_data == (b"", True)
    assert decoder.next_event() is CLOSED
    decoder.receive_data(b"")  # a repeated end of stream is harmless
    assert decoder.next_event() is CLOSED


def test_accepts_bytearray_and_memoryview() -> None:
    data = ipc.frame(Response(1, [1]))
    decoder = FrameDecoder()
    decoder.receive_data(bytearray(data[:3]))
    decoder.receive_data(memoryview(data)[3:])
    assert decoder.next_event() == Response(1, [1])


def test_compaction_keeps_the_stream_intact() -> None:
    # More than the compaction threshold of whole frames, followed by a partial frame.
    envelopes_ = [Response(i, "y" * 100) for i in range(2000)]
    stream = b"".join(ipc.frame(e) for e in envelopes_)
    decoder = FrameDecoder()
    cut = len(stream) - 50
    decoder.receive_data(stream[:cut])
    events = drain(decoder)
    assert events[-1] is NEED_DATA
    assert events[:-1] == envelopes_[:-1]
    assert decoder.buffered == len(ipc.frame(envelopes_[-1])) - 50
    decoder.receive_data(stream[cut:])
    assert decoder.next_event() == envelopes_[-1]


def test_custom_limits_apply_to_bodies() -> None:
    decoder = FrameDecoder(Limits(max_depth=1))
    decoder.receive_data(ipc.frame(Response(1, [[1]]), Limits(max_depth=2)))
    assert reason_of(decoder.next_event) == "too_deep"


# -- rejections ---------------------------------------------------------------------------------


def test_declared_length_over_limit_is_refused_from_the_header_alone() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(header(LIMIT + 1)[:3])
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(header(LIMIT + 1)[3:])  # the 4th header byte, no body at all
    assert decoder.buffered == HEADER_SIZE
    assert reason_of(decoder.next_event) == "too_large"
    assert reason_of(decoder.receive_data, b"x") == "closed"


@pytest.mark.parametrize("declared", [LIMIT + 1, 2**31, 2**32 - 1])
def test_huge_declared_lengths(declared: int) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(header(declared))
    assert reason_of(decoder.next_event) == "too_large"


def test_declared_length_at_limit_waits_for_the_body() -> None:
    decoder = FrameDecoder(Limits(max_frame_bytes=16))
    decoder.receive_data(header(16))
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(header(17))
    assert decoder.next_event() is NEED_DATA  # still inside the first frame's body


def test_zero_length_frame() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(header(0))
    assert reason_of(decoder.next_event) == "malformed"


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 9])
def test_end_of_stream_inside_a_frame(cut: int) -> None:
    data = ipc.frame(Response(1, "hello"))
    decoder = FrameDecoder()
    decoder.receive_data(data[:cut])
    decoder.receive_data(b"")
    assert reason_of(decoder.next_event) == "truncated"


def test_end_of_stream_after_a_whole_frame_and_a_partial_one() -> None:
    data = ipc.frame(Response(1, "a"))
    decoder = FrameDecoder()
    decoder.receive_data(data + data[:2])
    decoder.receive_data(b"")
    assert decoder.next_event() == Response(1, "a")
    assert reason_of(decoder.next_event) == "truncated"


def test_data_after_end_of_stream() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"")
    assert reason_of(decoder.receive_data, b"\x00") == "closed"
    assert reason_of(decoder.next_event) == "closed"


def test_bad_body_puts_the_decoder_in_error() -> None:
    good = ipc.frame(Response(1, "a"))
    decoder = FrameDecoder()
    decoder.receive_data(ipc.frame_body(b"\xc1") + good)
    assert reason_of(decoder.next_event) == "malformed"
    # ERROR is final: the good frame behind it never comes out.
    assert reason_of(decoder.next_event) == "closed"
    assert reason_of(decoder.receive_data, good) == "closed"
    assert reason_of(decoder.receive_data, b"") == "closed"
    assert "ERROR" in repr(decoder)


def test_receive_data_refuses_non_bytes() -> None:
    decoder = FrameDecoder()
    assert reason_of(decoder.receive_data, "text") == "bad_type"
    assert reason_of(decoder.next_event) == "closed"


# -- linear time --------------------------------------------------------------------------------


def test_large_frame_in_small_chunks_is_linear() -> None:
    payload = b"z" * (LIMIT - 8)
    data = ipc.frame(Response(1, payload))
    decoder = FrameDecoder()
    start = time.perf_counter()
    for i in range(0, len(data), 64):
        decoder.receive_data(data[i : i + 64])
        event = decoder.next_event()
    assert time.perf_counter() - start < 2.0
    assert event == Response(1, payload)


def test_many_small_frames_are_linear() -> None:
    one = ipc.frame(Response(1, None))
    stream = one * 100_000
    decoder = FrameDecoder()
    start = time.perf_counter()
    for i in range(0, len(stream), 4096):
        decoder.receive_data(stream[i : i + 4096])
        while decoder.next_event() is not NEED_DATA:
            pass
    assert time.perf_counter() - start < 2.0
    assert decoder.buffered == 0
