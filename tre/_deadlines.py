"""Call deadlines without a cancel scope per call.

Every call registers its slot here; one kernel task sleeps until the earliest deadline and
fails the slots that are still waiting then. Finished slots are dropped lazily: from the
top of the heap as calls complete (the common case, since deadlines mostly arrive in
order), and by an occasional compaction when stale entries pile up below the top.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import trio

from ._slot import ReplySlot

__all__ = ["DeadlineQueue"]

#: Compact the heap when it holds more than this many entries and most are finished.
_COMPACT_MIN = 1024


class DeadlineQueue:
    def __init__(self, on_expire: Callable[[ReplySlot], None]) -> None:
        self._heap: list[tuple[float, int, ReplySlot]] = []
        self._seq = 0
        self._scope: trio.CancelScope | None = None
        self._compact_at = _COMPACT_MIN
        self._on_expire = on_expire

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, slot: ReplySlot) -> None:
        heap = self._heap
        deadline = slot.deadline
        heapq.heappush(heap, (deadline, self._seq, slot))
        self._seq += 1
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline
        if len(heap) > self._compact_at:
            self._compact()

    def prune(self) -> None:
        """Drop finished slots from the top of the heap (cheap; called after each call)."""
        heap = self._heap
        while heap and heap[0][2].done:
            heapq.heappop(heap)

    def _compact(self) -> None:
        self._heap[:] = [entry for entry in self._heap if not entry[2].done]
        heapq.heapify(self._heap)
        self._compact_at = max(_COMPACT_MIN, 2 * len(self._heap))

    async def run(self) -> None:
        """The kernel's deadline task: runs until cancelled."""
        heap = self._heap
        while True:
            self.prune()
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                slot = heapq.heappop(heap)[2]
                if not slot.done:
                    self._on_expire(slot)
