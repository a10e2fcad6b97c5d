"""The codec: one envelope (or bare value) <-> one msgpack frame body, strictly.

Decoding refuses, always with :class:`InvalidFrame` and never any other exception:
input that is not a bytes-like object (``bad_type``), over ``max_frame_bytes``
(``too_large``, checked before unpacking), invalid msgpack, trailing bytes or invalid UTF-8
(``malformed``), extension types including the timestamp ext -1 (``ext_type``), map keys
that are not str (``bad_key``), nesting deeper than ``max_depth`` (``too_deep``), and
envelope header faults (``bad_type`` / ``bad_shape`` / ``bad_kind``, see ``_envelope``).

Decoding is linear in the input: msgpack bounds every declared length by the input size
(``unpackb`` defaults ``max_*_len`` to ``len(data)``, which is at most ``max_frame_bytes``;
that is tighter than passing the limit, so a 5-byte input declaring a 2**32-element array
fails before anything is allocated), its own parser stack is bounded (deeper input raises
StackError, mapped to ``too_deep``), and the depth/key walk below is iterative, level by
level, visiting each container once and stopping at the first level past the limit.
"""

from __future__ import annotations

from typing import Any, NoReturn, TypeAlias

from msgpack import ExtraData, ExtType, Packer, StackError, Timestamp, unpackb

from ._envelope import WIRE_CHECKS, Envelope, Error, from_wire
from ._errors import InvalidFrame
from ._limits import DEFAULT_LIMITS, Limits

__all__ = ["BytesLike", "decode", "decode_value", "encode", "encode_value"]

#: What the decoders accept: anything else is ``InvalidFrame("bad_type")``.
BytesLike: TypeAlias = bytes | bytearray | memoryview

# Exact scalar types msgpack packs natively: the encode walk skips them without isinstance.
_SCALARS = frozenset({type(None), bool, int, float, str, bytes})
_CONTAINERS = (list, tuple, dict)
_EXTS = (ExtType, Timestamp)


def _refuse_ext(code: int, data: bytes) -> NoReturn:
    # msgpack calls this for every ext type except -1, which it always decodes itself into
    # a Timestamp (whatever ``timestamp=`` says); those are caught by the walk below.
    raise InvalidFrame("ext_type", f"msgpack extension type {code} is not allowed")


# -- decoding --------------------------------------------------------------------------------


def _unpack(data: Any, limits: Limits) -> Any:
    """bytes -> one msgpack value, with every msgpack failure mapped to a reason."""
    if isinstance(data, bytes | bytearray):
        size = len(data)
    elif isinstance(data, memoryview):
        size = data.nbytes
    else:
        raise InvalidFrame("bad_type", f"expected bytes, not {type(data).__name__}")
    if size > limits.max_frame_bytes:
        raise InvalidFrame("too_large", f"body of {size} bytes over {limits.max_frame_bytes}")
    try:
        return unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_refuse_ext,
            timestamp=0,
        )
    except InvalidFrame:
        raise
    except StackError:
        raise InvalidFrame("too_deep", "nesting over msgpack's parser stack") from None
    except ExtraData:
        raise InvalidFrame("malformed", "trailing bytes after the value") from None
    except Exception as exc:  # anything msgpack (or the buffer protocol) can raise
        raise _classify(exc) from None


def _classify(exc: Exception) -> InvalidFrame:
    # msgpack reports these two as plain ValueErrors; only their text tells them apart.
    text = str(exc) if isinstance(exc, ValueError) else ""
    if "not allowed for map key" in text:
        return InvalidFrame("bad_key", "map keys must be str")
    if "invalid timestamp" in text:
        return InvalidFrame("ext_type", "msgpack extension type -1 is not allowed")
    if isinstance(exc, UnicodeDecodeError):
        return InvalidFrame("malformed", "invalid UTF-8 in a string")
    return InvalidFrame("malformed", "not a valid msgpack value")


def _check_decoded(value: Any, max_depth: int) -> None:
    """Check a value built by msgpack: depth, str keys, no Timestamp.

    Only lists, dicts, and scalars can come out of ``unpackb`` here (ext_hook refuses other
    exts; strict_map_key leaves str and bytes keys), so exact type tests suffice.
    """
    kind = type(value)
    if kind is not list and kind is not dict:
        if kind is Timestamp:
            raise InvalidFrame("ext_type", "msgpack extension type -1 is not allowed")
        return
    level: list[Any] = [value]
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise InvalidFrame("too_deep", f"nesting deeper than {max_depth}")
        deeper: list[Any] = []
        for container in level:
            members: Any = container
            if type(container) is dict:
                for key in container:
                    if type(key) is not str:
                        raise InvalidFrame("bad_key", "map keys must be str")
                members = container.values()
            for member in members:
                kind = type(member)
                if kind is list or kind is dict:
                    deeper.append(member)
                elif kind is Timestamp:
                    raise InvalidFrame("ext_type", "msgpack extension type -1 is not allowed")
        level = deeper


def decode(body: BytesLike, limits: Limits = DEFAULT_LIMITS) -> Envelope:
    """Decode one frame body (no length prefix) into an envelope; strict, see the module."""
    envelope = from_wire(_unpack(body, limits), limits)
    if not isinstance(envelope, Error):
        _check_decoded(envelope.body, limits.max_depth)
    return envelope


def decode_value(data: BytesLike, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode one bare msgpack value with the same rules as an envelope body."""
    value = _unpack(data, limits)
    _check_decoded(value, limits.max_depth)
    return value


# -- encoding --------------------------------------------------------------------------------


def _check_encodable(value: Any, max_depth: int) -> None:
    """Check a local value before packing: depth, str keys, no ExtType/Timestamp.

    Uses isinstance (msgpack packs subclasses of list, tuple and dict too), but tests exact
    scalar types first so plain values cost one set lookup. Values msgpack cannot pack at all
    are left to it (they raise ``unencodable`` in :func:`_pack`).
    """
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is not list and kind is not dict and kind is not tuple:
        if isinstance(value, _EXTS):  # ExtType is a tuple subclass: test it first
            raise InvalidFrame("ext_type", "msgpack extension types are not allowed")
        if not isinstance(value, _CONTAINERS):
            return
    level: list[Any] = [value]
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise InvalidFrame("too_deep", f"nesting deeper than {max_depth}")
        deeper: list[Any] = []
        for container in level:
            members: Any = container
            if isinstance(container, dict):
                for key in container:
                    if type(key) is not str and not isinstance(key, str):
                        raise InvalidFrame("bad_key", "map keys must be str")
                members = container.values()
            for member in members:
                kind = type(member)
                if kind in _SCALARS:
                    continue
                if kind is list or kind is dict or kind is tuple:
                    deeper.append(member)
                elif isinstance(member, _EXTS):
                    raise InvalidFrame("ext_type", "msgpack extension types are not allowed")
                elif isinstance(member, _CONTAINERS):
                    deeper.append(member)
        level = deeper


def _pack(obj: Any, limits: Limits) -> bytes:
    try:
        # A fresh Packer per call (what packb does, minus a layer): a shared one is neither
        # thread-safe nor re-entrant (a dict subclass's items() may run arbitrary code).
        data: bytes = Packer(use_bin_type=True, datetime=False).pack(obj)
    except Exception as exc:  # TypeError, OverflowError, UnicodeEncodeError, ...
        if isinstance(exc, ValueError) and "recursion limit" in str(exc):
            raise InvalidFrame("too_deep", "nesting over msgpack's packer limit") from None
        raise InvalidFrame("unencodable", f"cannot encode: {type(exc).__name__}") from None
    if len(data) > limits.max_frame_bytes:
        raise InvalidFrame("too_large", f"body of {len(data)} bytes over {limits.max_frame_bytes}")
    return data


def encode(envelope: Envelope, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Encode one envelope into a frame body (no length prefix).

    Runs the same header checks as :func:`decode` (``bad_type``), so what ``encode`` accepts
    the peer's ``decode`` accepts; refuses bodies with non-str keys (``bad_key``), ext types
    (``ext_type``), nesting over ``max_depth`` (``too_deep``), values msgpack cannot pack
    (``unencodable``) and results over ``max_frame_bytes`` (``too_large``).
    """
    check = WIRE_CHECKS.get(type(envelope))
    if check is None:
        raise InvalidFrame("bad_type", f"not an envelope: {type(envelope).__name__}")
    items = envelope.to_wire()
    check(items, limits)
    if not isinstance(envelope, Error):
        _check_encodable(envelope.body, limits.max_depth)
    return _pack(items, limits)


def encode_value(obj: Any, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Encode one bare value with the same rules as an envelope body."""
    _check_encodable(obj, limits.max_depth)
    return _pack(obj, limits)
