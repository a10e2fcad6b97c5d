"""Stream framing: a 4-byte big-endian unsigned length, then one msgpack body.

:class:`FrameDecoder` follows h11: the caller feeds bytes with :meth:`receive_data`
(``b""`` = end of stream) and pulls events with :meth:`next_event` until it returns
:data:`NEED_DATA` (feed more) or :data:`CLOSED` (clean end of stream). Any fault puts the
decoder in a final ERROR state, after which every call raises ``InvalidFrame("closed")``.

The decoder states, as data::

    OPEN   --receive_data(b"")-->  EOF     (no more input; pending frames still come out)
    OPEN   --InvalidFrame------->  ERROR
    EOF    --receive_data(data)->  ERROR   (data after end of stream: "closed")
    EOF    --InvalidFrame------->  ERROR   ("truncated" when EOF falls inside a frame)
    ERROR  --anything----------->  ERROR   (raises "closed")
"""

from __future__ import annotations

import enum
import struct
from typing import Final, Literal, TypeAlias

from ._codec import BytesLike, decode, encode
from ._envelope import Envelope
from ._errors import InvalidFrame
from ._limits import DEFAULT_LIMITS, Limits

__all__ = [
    "CLOSED",
    "HEADER_SIZE",
    "NEED_DATA",
    "FrameDecoder",
    "FrameEvent",
    "Sentinel",
    "frame",
    "frame_body",
]

_HEADER = struct.Struct(">I")
#: Size of the length prefix in bytes.
HEADER_SIZE: Final = _HEADER.size

#: Consumed bytes are dropped from the buffer once there are this many of them and they are
#: at least half the buffer: each byte is moved at most a bounded number of times (linear).
_COMPACT_AT = 1 << 16


class Sentinel(enum.Enum):
    """The two non-envelope results of :meth:`FrameDecoder.next_event`."""

    #: Not enough bytes buffered for a whole frame: feed more with ``receive_data``.
    NEED_DATA = "NEED_DATA"
    #: The stream ended cleanly, between frames. Returned again on every later call.
    CLOSED = "CLOSED"

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = Sentinel.NEED_DATA
CLOSED: Final = Sentinel.CLOSED

FrameEvent: TypeAlias = Envelope | Literal[Sentinel.NEED_DATA, Sentinel.CLOSED]


class _State(enum.Enum):
    OPEN = "OPEN"
    EOF = "EOF"
    ERROR = "ERROR"


def frame_body(body: bytes, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Prefix an already-encoded body with its length.

    Refuses an empty body (``malformed``: the peer refuses a zero length) and one over
    ``max_frame_bytes`` (``too_large``).
    """
    size = len(body)
    if size == 0:
        raise InvalidFrame("malformed", "empty frame body")
    if size > limits.max_frame_bytes:
        raise InvalidFrame("too_large", f"body of {size} bytes over {limits.max_frame_bytes}")
    return _HEADER.pack(size) + body


def frame(envelope: Envelope, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Encode one envelope and prefix it with its length: ready to write to a stream."""
    body = encode(envelope, limits)
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Incremental, sans-I/O decoder of a stream of frames (the h11 pattern).

    Memory is bounded by what the caller feeds between calls to :meth:`next_event`: a
    declared length over ``max_frame_bytes`` is refused as soon as its 4 header bytes are
    buffered, before any of the body is awaited. Work is linear in the bytes fed, however
    they are chunked (one growing bytearray, read through an offset, compacted rarely).
    """

    __slots__ = ("_buf", "_limits", "_pos", "_state")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buf = bytearray()
        self._pos = 0
        self._state = _State.OPEN

    def __repr__(self) -> str:
        return f"<FrameDecoder {self._state.name} buffered={self.buffered}>"

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as part of an event."""
        return len(self._buf) - self._pos

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """``(unconsumed bytes, whether end of stream was received)``, as in h11."""
        return bytes(self._buf[self._pos :]), self._state is _State.EOF

    def _fail(self, reason: str, message: str = "") -> InvalidFrame:
        self._state = _State.ERROR
        return InvalidFrame(reason, message)

    def receive_data(self, data: BytesLike) -> None:
        """Buffer bytes from the peer; ``b""`` means the peer closed the stream."""
        state = self._state
        if state is _State.ERROR:
            raise InvalidFrame("closed", "the decoder failed earlier")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise self._fail("bad_type", f"expected bytes, not {type(data).__name__}")
        if state is _State.EOF:
            if data:
                raise self._fail("closed", "data after end of stream")
            return
        if data:
            self._buf += data
        else:
            self._state = _State.EOF

    def next_event(self) -> FrameEvent:
        """Return the next envelope, or :data:`NEED_DATA`, or :data:`CLOSED`."""
        if self._state is _State.ERROR:
            raise InvalidFrame("closed", "the decoder failed earlier")
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if available >= HEADER_SIZE:
            (size,) = _HEADER.unpack_from(buf, pos)
            if size > self._limits.max_frame_bytes:
                raise self._fail(
                    "too_large", f"declared length {size} over {self._limits.max_frame_bytes}"
                )
            if size == 0:
                raise self._fail("malformed", "zero-length frame")
            start = pos + HEADER_SIZE
            end = start + size
            if len(buf) >= end:
                body = buf[start:end]  # one copy; the buffer itself stays resizable
                self._consume(end)
                try:
                    return decode(body, self._limits)
                except InvalidFrame:
                    self._state = _State.ERROR
                    raise
        if self._state is _State.EOF:
            if available == 0:
                return CLOSED
            raise self._fail("truncated", f"stream ended inside a frame ({available} bytes)")
        return NEED_DATA

    def _consume(self, end: int) -> None:
        buf = self._buf
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end >= _COMPACT_AT and 2 * end >= len(buf):
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
