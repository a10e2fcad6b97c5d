"""One-shot reply slots: how a caller parks until its reply, timeout or abort arrives.

The kernel's call path puts ``(frame, slot, ...)`` into the callee's inbox and parks the
calling task on the slot. Whoever finishes first -- the callee's worker with a reply, the
deadline task with a timeout, the supervisor with an abort -- fills the slot; everyone
later finds ``done`` set and drops what they had (a late reply of a dead generation, say).
Parking uses trio's low-level reschedule directly: no Event, no cancel scope per call.
"""

from __future__ import annotations

from typing import Any

import outcome
import trio

__all__ = ["ReplySlot"]


def _take(slot: ReplySlot) -> Any:
    result = slot._outcome
    slot._outcome = None
    assert result is not None
    return result.unwrap()


class ReplySlot:
    __slots__ = ("_outcome", "_task", "deadline", "done", "serving")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        #: set once the slot is filled or abandoned; later fills are dropped
        self.done = False
        #: the cancel scope of the worker whose handler is serving this call, if any
        self.serving: trio.CancelScope | None = None
        self._task: trio.lowlevel.Task | None = None
        self._outcome: outcome.Outcome[Any] | None = None

    def _fill(self, result: outcome.Outcome[Any]) -> bool:
        if self.done:
            return False
        self.done = True
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task, result)
        else:
            self._outcome = result
        return True

    def set(self, frame: bytes) -> bool:
        """Deliver a reply frame. Returns False (and drops it) if the slot is done."""
        return self._fill(outcome.Value(frame))

    def fail(self, error: BaseException) -> bool:
        """Deliver an error. Returns False (and drops it) if the slot is done."""
        return self._fill(outcome.Error(error))

    async def wait(self) -> bytes:
        """Park until filled; return the reply frame or raise the error. If the waiting
        task is cancelled the slot is abandoned (marked done) and any reply is dropped."""
        if self._outcome is not None:
            await trio.lowlevel.checkpoint()
            return _take(self)  # type: ignore[no-any-return]
        self._task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._task = None
            self.done = True
            if self.serving is not None:
                # Nobody will read the result: cancel the handler working on it (which also
                # cancels the calls it made on our behalf).
                self.serving.cancel()
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)  # type: ignore[no-any-return]
