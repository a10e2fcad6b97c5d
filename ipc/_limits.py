"""Wire limits: every bound the codec and the framer enforce, named, with its reason."""

from __future__ import annotations

import attrs

__all__ = ["DEFAULT_LIMITS", "MAX_MSGID", "Limits"]

#: Largest message id: ids are unsigned 32-bit so they fit msgpack's uint32 and any peer's int.
MAX_MSGID = 2**32 - 1

#: The 4-byte length prefix cannot describe a longer body.
_MAX_REPRESENTABLE = 2**32 - 1


@attrs.frozen
class Limits:
    """Bounds on what a peer may send us (and what we refuse to send).

    One frozen object, so a domain's quota can carry its own ``Limits`` and the kernel
    passes it to :func:`ipc.decode` / :class:`ipc.FrameDecoder` unchanged.
    """

    #: Largest frame BODY in bytes (the 4-byte length prefix is not counted). Bounds the
    #: memory one frame can pin, and the work of decoding it (decoding is linear in size).
    max_frame_bytes: int = 1 << 20
    #: Deepest nesting of containers (arrays and maps) inside a BODY. The envelope array is
    #: not counted: a scalar body has depth 0, ``[]`` or ``{}`` depth 1, ``[[1]]`` depth 2.
    #: Bounds the recursion any consumer of a decoded body may do.
    max_depth: int = 32
    #: Longest method name, in characters. Names are identifiers, not payload.
    max_method_len: int = 128
    #: Longest ERROR message, in characters: a safe human summary, never a traceback.
    max_message_len: int = 1024
    #: Longest ERROR code, in characters (codes are short upper-case constants).
    max_code_len: int = 64

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(Limits):
            value = getattr(self, field.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"Limits.{field.name} must be a positive int, got {value!r}")
        if self.max_frame_bytes > _MAX_REPRESENTABLE:
            raise ValueError("Limits.max_frame_bytes must fit the 4-byte length prefix")


DEFAULT_LIMITS = Limits()
