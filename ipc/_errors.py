"""The root of the project's error tree, and the wire subtree.

The root lives here, in the bottom layer, because ``ipc`` and ``attestation`` must not
import ``tre`` (which imports trio). ``tre`` re-exports :class:`TREError` unchanged.
"""

from __future__ import annotations


class TREError(Exception):
    """Root of every error the project raises on purpose.

    Each subclass has a stable, upper-case ``code`` (part of the API: it crosses the wire
    in ERROR envelopes and is what callers should branch on). Messages are for people and
    never contain secrets.
    """

    code: str = "TRE_ERROR"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class InvalidFrame(TREError):
    """A frame or envelope broke the wire rules (framing, size, depth, types).

    Raised for every kind of malformed input by :func:`ipc.decode` and
    :class:`ipc.FrameDecoder`, and never any other exception. ``code`` is always
    ``"INVALID_FRAME"``; ``reason`` is one of the stable strings in :data:`REASONS`,
    naming which rule was broken.
    """

    code = "INVALID_FRAME"

    def __init__(self, reason: str, message: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown InvalidFrame reason {reason!r}")
        super().__init__(message or reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"InvalidFrame(reason={self.reason!r}, message={self.message!r})"


#: Stable reasons carried by :class:`InvalidFrame` (documented in the README).
REASONS = frozenset(
    {
        "too_large",  # declared or actual size over the limit
        "truncated",  # the stream ended inside a frame
        "malformed",  # not valid msgpack, or trailing bytes after the value
        "too_deep",  # nesting deeper than the limit
        "ext_type",  # a msgpack extension type (including timestamps)
        "bad_key",  # a map key that is not a str
        "bad_type",  # a value or envelope field of the wrong type
        "bad_kind",  # an unknown envelope kind code
        "bad_shape",  # an envelope with the wrong number of fields
        "unencodable",  # a Python value that cannot be put on the wire
        "closed",  # data after end of stream, or use after an earlier error
    }
)
