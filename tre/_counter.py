"""A replay-protected monotonic counter: the stand-in for an eMMC RPMB partition.

On a real device the counter would live in a Replay Protected Memory Block: writes are
authenticated with a key shared with the secure world, and the hardware refuses to go
back to an older value. Here it is a small file holding ``magic || counter || HMAC``. The
HMAC (a key derived from the device secret) makes a forged or edited file detectable; what
a file cannot do is refuse to be replaced by an older copy of itself -- that is exactly the
property the hardware adds, and this model assumes it (see the README).

The keystore stores the same number in its database and checks at open that the database
is not older than the counter: an old copy of the database put back is detected.
"""

from __future__ import annotations

import fcntl
import hmac
import os
import stat
import struct
from hashlib import sha256
from pathlib import Path

from ._errors import StorageError

__all__ = ["CounterTampered", "MonotonicCounter", "fsync_dir"]

_MAGIC = b"TRECTR1\x00"
_LAYOUT = struct.Struct(">8sQ32s")  # magic, value, HMAC-SHA256(magic || value)


def fsync_dir(folder: Path) -> None:
    """Make a folder's entries durable (a file created, renamed or removed in it)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CounterTampered(StorageError):
    """The counter file is missing, malformed or fails its MAC."""

    code = "COUNTER_TAMPERED"


class MonotonicCounter:
    """One 64-bit counter that only goes up, in one authenticated 48-byte record."""

    def __init__(self, path: Path, mac_key: bytes) -> None:
        self.path = path
        self._key = mac_key
        self._fd: int | None = None  # kept open between writes (one open per store)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __repr__(self) -> str:
        return f"MonotonicCounter({str(self.path)!r})"

    def _tag(self, value: int) -> bytes:
        return hmac.new(self._key, _MAGIC + value.to_bytes(8, "big"), sha256).digest()

    def create(self) -> None:
        """Write the counter at 0. Refuses to overwrite. Atomic: the record is written and
        fsync'd under a temporary name, then linked into place (which fails if the name
        exists) and the folder fsync'd, so a crash never leaves an empty or partial
        record under the counter's name."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.unlink(missing_ok=True)  # a leftover of a crash during an earlier create
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, _LAYOUT.pack(_MAGIC, 0, self._tag(0)))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, self.path)
        finally:
            tmp.unlink()
        fsync_dir(self.path.parent)

    def _open(self, flags: int) -> int:
        """A descriptor of the record, refusing anything but a regular file (a FIFO, a
        device or a symbolic link planted in its place is tampering, not a hang)."""
        try:
            fd = os.open(self.path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise CounterTampered(f"cannot read the counter {self.path}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise CounterTampered(f"the counter record {self.path} is not a regular file")
        return fd

    def read(self) -> int:
        fd = self._open(os.O_RDONLY)
        try:
            data = os.pread(fd, _LAYOUT.size + 1, 0)
        except OSError as exc:
            raise CounterTampered(f"cannot read the counter {self.path}: {exc.strerror}") from None
        finally:
            os.close(fd)
        return self._check(data)

    def _check(self, data: bytes) -> int:
        if len(data) != _LAYOUT.size:
            raise CounterTampered(f"the counter record {self.path} has the wrong size")
        magic, value, tag = _LAYOUT.unpack(data)
        if magic != _MAGIC or not hmac.compare_digest(tag, self._tag(value)):
            raise CounterTampered(f"the counter record {self.path} fails its authentication")
        return int(value)

    def advance(self, value: int) -> None:
        """Raise the counter to ``value``; a lower or equal value changes nothing (two
        writers may race, and the counter need only be at least every committed
        generation). One in-place write of one small record and an fsync: a single-sector
        write, atomic on the storage it models."""
        if self._fd is None:
            self._fd = self._open(os.O_RDWR)
        fd = self._fd
        # One writer at a time across processes (a running TRE and `tre tamper`), so the
        # read-compare-write below cannot lower the counter.
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if value <= self._check(os.pread(fd, _LAYOUT.size + 1, 0)):
                return
            os.pwrite(fd, _LAYOUT.pack(_MAGIC, value, self._tag(value)), 0)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
