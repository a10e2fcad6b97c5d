"""The anti-replay sliding window of RFC 4303 section 3.4.3 and RFC 6347 section 4.1.2.6.

The receiver remembers the highest counter it accepted (``top``) and a bitmap of the
``size`` counters ending at ``top`` (bit ``i`` set = counter ``top - i`` was accepted). A
counter above ``top`` is new and slides the window forward; one inside the window is new
unless its bit is set (``"replay"``); one below the window's left edge cannot be told
apart from a replay any more and is refused (``"too-old"``). Memory is ``size`` bits
whatever the counters' range.

The window only records counters of messages that authenticated: the caller checks the
AEAD tag first, then :meth:`ReplayWindow.check`, then :meth:`ReplayWindow.mark` (or both
at once with :meth:`ReplayWindow.accept`), so a forged message can never move the window.
"""

from __future__ import annotations

__all__ = ["ReplayWindow"]


class ReplayWindow:
    """Which counters a receiver has accepted, for the last ``size`` counters up to the top.

    Counters are non-negative ints; the window starts empty (every counter is new).
    """

    __slots__ = ("_bitmap", "_mask", "_size", "_top")

    def __init__(self, size: int) -> None:
        if type(size) is not int or size < 1:
            raise ValueError(f"the replay window size must be a positive int, got {size!r}")
        self._size = size
        self._mask = (1 << size) - 1
        self._top = -1  # nothing accepted yet
        self._bitmap = 0

    @property
    def size(self) -> int:
        return self._size

    @property
    def top(self) -> int | None:
        """The highest counter accepted so far, or None."""
        return None if self._top < 0 else self._top

    def check(self, counter: int) -> str | None:
        """None if ``counter`` is new and inside (or ahead of) the window, else the reason
        it must be refused: ``"replay"`` (seen) or ``"too-old"`` (left of the window).
        Changes nothing."""
        if counter < 0:
            raise ValueError("counters are non-negative")
        top = self._top
        if counter > top:
            return None
        offset = top - counter
        if offset >= self._size:
            return "too-old"
        if (self._bitmap >> offset) & 1:
            return "replay"
        return None

    def mark(self, counter: int) -> None:
        """Record ``counter`` as accepted. It must have passed :meth:`check`."""
        if self.accept(counter) is not None:
            raise ValueError("mark() of a counter that check() refuses")

    def accept(self, counter: int) -> str | None:
        """:meth:`check` then, if it passed, record ``counter``. Returns what :meth:`check`
        does (None: accepted)."""
        if counter < 0:
            raise ValueError("counters are non-negative")
        top = self._top
        if counter > top:
            shift = counter - top
            # A jump of the whole window or more forgets everything before the new top.
            self._bitmap = ((self._bitmap << shift) | 1) & self._mask if shift < self._size else 1
            self._top = counter
            return None
        offset = top - counter
        if offset >= self._size:
            return "too-old"
        bit = 1 << offset
        if self._bitmap & bit:
            return "replay"
        self._bitmap |= bit
        return None

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self._size}, top={self.top})"
