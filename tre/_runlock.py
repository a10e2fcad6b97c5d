"""One user of a state folder at a time: a running TRE, or an install, removal or transfer.

An advisory ``flock`` on ``STATE/run.lock``, taken without waiting. The kernel of a running
TRE keeps state in memory that another writer would silently invalidate (the key index's
aggregate, the unsealed keys), so an install must not run beside it, and two TREs must not
boot the same device. ``tre tamper`` and ``tre status`` do not take it: the tamper path must
always work, and the running TRE re-reads the lifecycle it changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ._errors import StateBusy, StorageError

__all__ = ["LOCK_FILE", "state_lock"]

LOCK_FILE = "run.lock"


@contextlib.contextmanager
def state_lock(state_dir: Path, what: str) -> Iterator[None]:
    """Hold the state folder's lock for ``what`` (e.g. "boot"); :class:`StateBusy` if held."""
    if not Path(state_dir).is_dir():
        raise StorageError(f"{state_dir} is not a provisioned TRE state")
    fd = os.open(Path(state_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateBusy(
                f"{state_dir} is in use (a running TRE, or an install, removal or transfer); "
                f"cannot {what} now"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock
