"""The child process of tests/hostile/test_audit_hostile.py: append audit entries until killed.

Usage: ``python audit_kill9_child.py STATE TASKS``

Opens the device provisioned in STATE (the checks of a boot, rollback included), opens its
audit log (which refuses a log it cannot continue), runs the log's writer, and has TASKS
tasks append entries ``{"task": t, "n": n}`` forever, each to the domain ``tre``. Prints
``ready`` once running and ``SEQ TASK N`` for each entry only after ``append`` returned
(the entry is durable), flushed, so the parent knows what was acknowledged when it sends
SIGKILL. Several tasks make batches of several entries (group commit).
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from tre._audit import AuditLog
from tre._device import Device


async def append_forever(state: Path, tasks: int) -> None:
    device = await Device.open(state)
    log = await AuditLog.open(device)

    async def writer(task: int) -> None:
        n = 0
        while True:
            seq = await log.append("tre", "kill9", {"task": task, "n": n})
            print(seq, task, n, flush=True)
            n += 1

    async with trio.open_nursery() as nursery:
        await nursery.start(log.serve)
        print("ready", flush=True)
        for task in range(tasks):
            nursery.start_soon(writer, task)


def main() -> None:
    state, tasks = sys.argv[1:3]
    trio.run(append_forever, Path(state), int(tasks))


if __name__ == "__main__":
    main()
