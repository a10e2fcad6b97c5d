"""ipc/_replay.py: the RFC 4303 / RFC 6347 sliding anti-replay window."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipc import ReplayWindow


class ModelWindow:
    """The window's specification, with a set instead of a bitmap: a counter is accepted iff
    it was never accepted and is greater than (highest accepted - size)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen: set[int] = set()

    def accept(self, counter: int) -> str | None:
        top = max(self.seen, default=-1)
        if counter in self.seen and counter > top - self.size:
            return "replay"
        if counter <= top - self.size:
            return "too-old"
        self.seen.add(counter)
        return None


def test_an_empty_window_accepts_any_counter() -> None:
    for counter in (0, 1, 63, 64, 2**32, 2**64 - 1):
        window = ReplayWindow(64)
        assert window.top is None
        assert window.accept(counter) is None
        assert window.top == counter


def test_duplicates_are_replays() -> None:
    window = ReplayWindow(64)
    assert window.accept(0) is None
    assert window.accept(0) == "replay"
    assert window.accept(5) is None
    assert window.accept(5) == "replay"
    assert window.accept(0) == "replay"


def test_out_of_order_within_the_window_is_accepted_once() -> None:
    window = ReplayWindow(8)
    assert window.accept(7) is None
    for counter in (3, 0, 6, 1):
        assert window.accept(counter) is None
        assert window.accept(counter) == "replay"
    assert window.top == 7


def test_counters_behind_the_window_are_too_old() -> None:
    window = ReplayWindow(8)
    assert window.accept(10) is None
    assert window.check(3) is None  # 10 - 8 < 3: the left edge is still inside
    assert window.check(2) == "too-old"
    assert window.accept(0) == "too-old"
    assert window.accept(11) is None  # slides: 3 falls out
    assert window.check(3) == "too-old"
    assert window.check(4) is None


def test_a_jump_larger_than_the_window_forgets_the_past() -> None:
    window = ReplayWindow(4)
    for counter in range(4):
        assert window.accept(counter) is None
    assert window.accept(100) is None
    assert window.accept(3) == "too-old"
    assert window.accept(97) is None
    assert window.accept(97) == "replay"
    assert window.accept(96) == "too-old"


def test_a_window_of_one_accepts_only_increasing_counters() -> None:
    window = ReplayWindow(1)
    assert window.accept(5) is None
    assert window.accept(5) == "replay"
    assert window.accept(4) == "too-old"
    assert window.accept(6) is None


def test_check_changes_nothing_and_mark_refuses_what_check_refuses() -> None:
    window = ReplayWindow(8)
    assert window.check(3) is None
    assert window.check(3) is None
    assert window.top is None
    window.mark(3)
    with pytest.raises(ValueError, match="check"):
        window.mark(3)
    with pytest.raises(ValueError, match="non-negative"):
        window.check(-1)


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "64"])
def test_bad_sizes_are_refused(size: object) -> None:
    with pytest.raises(ValueError, match="positive int"):
        ReplayWindow(size)  # type: ignore[arg-type]


def test_repr() -> None:
    window = ReplayWindow(16)
    window.accept(9)
    assert repr(window) == "ReplayWindow(size=16, top=9)"


@given(
    size=st.integers(1, 70),
    counters=st.lists(st.integers(0, 200) | st.integers(0, 2**64 - 1), max_size=150),
)
def test_the_window_matches_its_specification(size: int, counters: list[int]) -> None:
    window, model = ReplayWindow(size), ModelWindow(size)
    for counter in counters:
        assert window.check(counter) == model.accept(counter) == window.accept(counter)


@given(size=st.integers(1, 70), counters=st.lists(st.integers(0, 300), max_size=300))
def test_the_window_never_accepts_a_counter_twice(size: int, counters: list[int]) -> None:
    window = ReplayWindow(size)
    accepted: list[int] = [c for c in counters if window.accept(c) is None]
    assert len(accepted) == len(set(accepted))
    # and whatever it accepted it still refuses, in the window or behind it
    assert all(window.check(c) in ("replay", "too-old") for c in accepted)
