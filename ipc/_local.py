"""The fast path for frames one process both writes and reads: the kernel's messages.

Between two domains of one TRE the kernel builds every frame itself, so the header
(kind, msgid, method, deadline) needs no re-validation, and the body is checked once,
on the way in, against the same rules as :func:`ipc.encode` (str keys, depth, no
extension types, size). The bytes that come out therefore hold only plain data, and
:meth:`LocalCodec.unpack` turns them into a fresh copy with msgpack's strict options
(str/bytes keys only, extension types refused) as a second line of defence.

Bodies made only of exact built-in types (None, bool, int, float, str, bytes, list, tuple,
dict) are packed with one reused packer: no user code can run while they are packed, so the
packer cannot be re-entered. Anything else (subclasses, say) takes the general path with a
fresh packer, exactly as :func:`ipc.encode` does.
"""

from __future__ import annotations

from typing import Any

from msgpack import Packer, unpackb

from ._codec import _check_encodable, _pack, _refuse_ext
from ._errors import InvalidFrame
from ._limits import DEFAULT_LIMITS, Limits

__all__ = ["LocalCodec"]

_NONE = type(None)


def _plain(value: Any, max_depth: int) -> bool:
    """True when ``value`` is made only of exact built-in types, within ``max_depth`` and
    with str keys. False means "take the general path" (which raises if it must)."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bytes or kind is bool:
        return True
    if kind is _NONE:
        return True
    if kind is not dict and kind is not list and kind is not tuple:
        return False
    level = [value]
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return False
        deeper = []
        for container in level:
            if type(container) is dict:
                for key in container:
                    if type(key) is not str:
                        return False
                members = container.values()
            else:
                members = container
            for member in members:
                kind = type(member)
                if kind is str or kind is int or kind is float or kind is bytes:
                    continue
                if kind is bool or kind is _NONE:
                    continue
                if kind is dict or kind is list or kind is tuple:
                    deeper.append(member)
                else:
                    return False
        level = deeper
    return True


class LocalCodec:
    """Pack and unpack the kernel's own frames (same wire layout as :mod:`ipc`)."""

    __slots__ = ("_max_depth", "_packer")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._packer = Packer(use_bin_type=True, datetime=False, autoreset=True)
        self._max_depth = limits.max_depth

    def _pack(self, items: list[Any], body: Any, max_bytes: int) -> bytes:
        if _plain(body, self._max_depth):
            try:
                data: bytes = self._packer.pack(items)
            except Exception as exc:  # e.g. an int over 64 bits
                self._packer.reset()
                raise InvalidFrame("unencodable", f"cannot encode: {type(exc).__name__}") from None
            if len(data) > max_bytes:
                raise InvalidFrame("too_large", f"body of {len(data)} bytes over {max_bytes}")
            return data
        _check_encodable(body, self._max_depth)
        return _pack(items, Limits(max_frame_bytes=max_bytes, max_depth=self._max_depth))

    def request(
        self, msgid: int, method: str, deadline: float | None, body: Any, max_bytes: int
    ) -> bytes:
        return self._pack([0, msgid, method, deadline, body], body, max_bytes)

    def response(self, msgid: int, body: Any, max_bytes: int) -> bytes:
        return self._pack([1, msgid, body], body, max_bytes)

    def notification(self, method: str, body: Any, max_bytes: int) -> bytes:
        return self._pack([2, method, body], body, max_bytes)

    def error(self, msgid: int, code: str, message: str) -> bytes:
        return self._pack([3, msgid, code, message], None, 1 << 30)

    @staticmethod
    def unpack(data: bytes) -> list[Any]:
        """A fresh copy of a frame made by this codec (a list: the wire array)."""
        try:
            items: list[Any] = unpackb(
                data, raw=False, strict_map_key=True, ext_hook=_refuse_ext, timestamp=0
            )
        except InvalidFrame:
            raise
        except Exception:
            raise InvalidFrame("malformed", "not a frame of this codec") from None
        return items
