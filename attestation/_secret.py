"""A byte string that must not leak: the UDS, every CDI and every key derived from them."""

from __future__ import annotations

import hmac
from typing import NoReturn, final

from ._errors import InvalidIdentity

__all__ = ["Secret"]


@final
class Secret:
    """Immutable secret bytes that never show themselves by accident.

    ``repr()`` and ``str()`` give only the length (``Secret(<32 bytes>)``), so a secret in a
    log line, a traceback or an attrs repr reveals nothing. ``==`` compares in constant time
    (:func:`hmac.compare_digest`) and only with another :class:`Secret`. A secret is not
    hashable (a hash of the content would be a stable fingerprint of it) and cannot be
    pickled (so it is never serialised by accident); :func:`copy.copy` returns it unchanged.
    The bytes are available, on purpose, through :meth:`reveal`.

    Python cannot wipe memory, so this is hygiene against leaks through text, not protection
    against a process that reads our memory.
    """

    __slots__ = ("_value",)
    _value: bytes

    def __init__(self, value: bytes | bytearray) -> None:
        if not isinstance(value, bytes | bytearray):
            raise InvalidIdentity(f"a secret must be bytes, not {type(value).__name__}")
        if not value:
            raise InvalidIdentity("a secret must not be empty")
        object.__setattr__(self, "_value", bytes(value))

    def reveal(self) -> bytes:
        """The secret bytes. Every call site is a place where the secret leaves this wrapper."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"Secret(<{len(self._value)} bytes>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    __hash__ = None  # type: ignore[assignment]

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("a Secret is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("a Secret is immutable")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Secret:
        return self
