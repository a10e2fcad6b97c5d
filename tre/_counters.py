"""Replay-protected monotonic counters for domains (``ks.counter`` / ``ks.advance_counter``).

The same stand-in for an RPMB partition as the store's own counter (:mod:`._counter`): one
48-byte authenticated record per counter, written in place and fsync'd, whose hardware
counterpart refuses to go back. A domain uses one where a value must never go back and be
durable *cheaply*: one fsync of one record, no database transaction. The ``mno`` domain
keeps each MID's highest accepted SQN in one (a USIM keeps it in its own non-volatile
memory), so an AKA run costs one durable write, as on a card.

Files: ``STATE/counters/<domain>/<label>.ctr``. Each record's MAC key is derived from the
device secret, the domain id, the domain's install epoch and the label, so a record copied
to another label, domain or install does not verify (:class:`CounterTampered`). A removed
or transferred domain's counters are deleted with it. A throw-away device keeps them in
memory.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
from pathlib import Path

from ._counter import CounterTampered, MonotonicCounter, fsync_dir

__all__ = ["COUNTER_DIR", "CounterBank", "CounterTampered"]

COUNTER_DIR = "counters"
_SUFFIX = ".ctr"


class CounterBank:
    """Every domain's counters on one device (kernel-side). Blocking: call it from the
    store's worker thread (``AsyncStore.call``)."""

    def __init__(self, folder: Path | None, key: bytes) -> None:
        self.folder = folder
        self._key = key
        self._memory: dict[tuple[str, bytes, str], int] = {}  # a throw-away device's
        self._open: dict[tuple[str, bytes, str], MonotonicCounter] = {}  # fds kept open

    def close(self) -> None:
        for counter in self._open.values():
            counter.close()
        self._open.clear()

    def __repr__(self) -> str:
        return f"CounterBank({'memory' if self.folder is None else str(self.folder)!r})"

    def _mac_key(self, domain: str, epoch: bytes, label: str) -> bytes:
        message = b"tre/v1/domain-counter|" + domain.encode() + b"|" + epoch + b"|"
        return hmac.new(self._key, message + label.encode(), hashlib.sha256).digest()

    def _path(self, domain: str, label: str) -> Path:
        assert self.folder is not None
        return self.folder / domain / (label + _SUFFIX)

    def load(self, domain: str, epoch: bytes) -> dict[str, int | None]:
        """Every counter of ``domain``: label -> value, or None for a record that does not
        verify for this domain, install and label (altered, or copied from elsewhere)."""
        if self.folder is None:
            return {lb: v for (d, e, lb), v in self._memory.items() if d == domain and e == epoch}
        values: dict[str, int | None] = {}
        folder = self.folder / domain
        if not folder.is_dir():
            return values
        for path in sorted(folder.glob("*" + _SUFFIX)):
            label = path.name[: -len(_SUFFIX)]
            try:
                values[label] = MonotonicCounter(path, self._mac_key(domain, epoch, label)).read()
            except CounterTampered:
                values[label] = None
        return values

    def advance(self, domain: str, epoch: bytes, label: str, value: int) -> None:
        """Raise the counter to ``value`` (a lower or equal value changes nothing);
        durable on return: one in-place write and fsync of its record."""
        key = (domain, epoch, label)
        if self.folder is None:
            self._memory[key] = max(self._memory.get(key, 0), value)
            return
        counter = self._open.get(key)
        if counter is None:
            path = self._path(domain, label)
            counter = MonotonicCounter(path, self._mac_key(domain, epoch, label))
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                counter.create()  # atomic: a crash leaves no counter, never a broken one
            self._open[key] = counter
        counter.advance(value)

    def delete(self, domain: str, label: str) -> None:
        """Forget one counter (the domain's own decision: it starts from 0 again)."""
        if self.folder is None:
            for key in [k for k in self._memory if k[0] == domain and k[2] == label]:
                del self._memory[key]
            return
        for key in [k for k in self._open if k[0] == domain and k[2] == label]:
            self._open.pop(key).close()
        path = self._path(domain, label)
        if path.exists():
            path.unlink()
            fsync_dir(path.parent)

    def erase_domain(self, domain: str) -> None:
        """Delete every counter of ``domain`` (removal, transfer)."""
        for key in [k for k in self._open if k[0] == domain]:
            self._open.pop(key).close()
        if self.folder is None:
            for key in [k for k in self._memory if k[0] == domain]:
                del self._memory[key]
            return
        shutil.rmtree(self.folder / domain, ignore_errors=True)
