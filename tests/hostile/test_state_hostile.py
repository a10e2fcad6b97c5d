"""Hostile cases of installs and domain counters found in review (tre/_install.py,
tre/_counters.py): a package whose file is also another's folder is refused typed; a kill
while a counter is first created leaves no broken counter; a record that is not a regular
file (a FIFO) does not hang the boot.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import attestation
import tre
from tests.install_helpers import Site, ledger_files
from tre._counters import CounterBank

KEY = bytes(32)
EPOCH = b"e" * 16


def test_a_package_listing_a_file_and_a_folder_of_the_same_name_is_refused_typed(
    tmp_path: Path,
) -> None:
    """tre/_install.py:353-355: a signed package listing both ``data`` and ``data/inner``
    passes every check of attestation (each path is a safe relative path), then staging
    makes ``data`` a file and ``mkdir`` of its parent raises a raw FileExistsError: the CLI
    prints an OS error with exit 2, not ``UPDATE_MALFORMED``/``INSTALL_REFUSED`` with 3."""
    site = Site(tmp_path)
    before = site.snapshot()
    files = ledger_files(1, extra={"data": b"x", "data/inner": b"y"})
    with pytest.raises((attestation.UpdateError, tre.InstallRefused)):
        site.install(1, files=files)
    assert site.snapshot() == before


def test_a_kill_while_a_counter_is_first_created_leaves_a_usable_counter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tre/_counters.py:86-90 with tre/_counter.py:58-61: a new counter's record is created
    in place (O_CREAT|O_EXCL at its final name, then write, then fsync). A kill (or power
    loss) between the open and the write leaves an empty ``<label>.ctr``, which every later
    boot reads as a tampered record (None): the counter raises KeyUnavailable until the
    domain deletes it, although nothing was ever tampered with. Here the kill is simulated
    by stopping at the write."""
    bank = CounterBank(tmp_path, KEY)

    class Killed(BaseException):
        pass

    def killed(fd: int, data: bytes) -> int:
        raise Killed

    monkeypatch.setattr(os, "write", killed)
    with pytest.raises(Killed):
        bank.advance("oem", EPOCH, "sqn.1", 5)
    monkeypatch.undo()
    bank.close()
    # The next boot: the counter was never raised, so it must read as absent (0), not tampered.
    assert CounterBank(tmp_path, KEY).load("oem", EPOCH) == {}


def test_a_counter_record_that_is_not_a_regular_file_does_not_hang_the_boot(
    tmp_path: Path,
) -> None:
    """tre/_counters.py:71 via tre/_counter.py:67: load() reads each ``*.ctr`` with
    Path.read_bytes(): a FIFO planted as a record blocks the boot forever (a symlink to
    /dev/zero would read without end); an altered record should open as None at once."""
    folder = tmp_path / "oem"
    folder.mkdir()
    fifo = folder / "a.ctr"
    os.mkfifo(fifo)
    result: dict[str, object] = {}
    worker = threading.Thread(
        target=lambda: result.update(CounterBank(tmp_path, KEY).load("oem", EPOCH)), daemon=True
    )
    worker.start()
    worker.join(3)
    hung = worker.is_alive()
    if hung:  # release the blocked reader (a writer that opens and closes the FIFO)
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(3)
    assert not hung, "CounterBank.load blocked on a FIFO counter record"
    assert result == {"a": None}
