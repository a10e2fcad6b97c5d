"""An authenticated index of every stored key row, against rows put back one by one.

The replay-protected counter catches an old copy of the *whole* database. A single old row
spliced back (a deleted key resurrected, an older version of a key) would still open, since
each row is sealed on its own. So every key row has a digest -- an HMAC of the whole row
under a key derived from the device secret -- in the ``key_digests`` table, and the set of
digests is authenticated as a whole: their XOR (an incremental set hash, MSet-XOR-Hash
style) tagged together with the store's generation in every write transaction.

At boot the digests' aggregate is recomputed and its tag checked against the current
generation (which the counter vouches for): if the digest table itself was edited or an
old one restored, the boot is refused with :class:`RollbackDetected`. Then each key row is
compared with its digest: a row altered (one flipped bit), put back from an older copy, or
resurrected after deletion does not match, and only that key is unavailable.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import Iterable
from typing import Any

from ._errors import RollbackDetected

__all__ = ["ROW_COLUMNS", "KeyIndex"]

#: The columns of a key row, in the order the digest covers them.
ROW_COLUMNS = "domain, label, version, kind, policy, svn, nonce, sealed, public"
_ZERO = bytes(32)


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(32, "big")


class KeyIndex:
    """Keeps ``aggregate || tag`` in ``meta`` under the key ``key_index``."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._pending: bytes | None = None  # the aggregate of the transaction in progress
        self._known: bytes | None = None  # the aggregate last stored (see _aggregate)

    def __repr__(self) -> str:
        return "KeyIndex()"

    def row_digest(self, row: Iterable[Any]) -> bytes:
        h = hmac.new(self._key, b"tre/v1/key-row", hashlib.sha256)
        for value in row:
            data = value if isinstance(value, bytes) else str(value).encode()
            h.update(len(data).to_bytes(4, "big") + data)
        return h.digest()

    def _stored(self, conn: sqlite3.Connection) -> tuple[bytes, bytes | None]:
        row = conn.execute("SELECT value FROM meta WHERE key = 'key_index'").fetchone()
        if row is None:
            return _ZERO, None
        value = bytes(row[0])
        return value[:32], value[32:]

    def update(
        self,
        conn: sqlite3.Connection,
        *,
        add: Iterable[Any] = (),
        remove: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Inside a write transaction: index new rows (``add``: full rows in ROW_COLUMNS
        order) and drop the digests of deleted keys (``remove``: (domain, label))."""
        aggregate = self._pending if self._pending is not None else self._aggregate(conn)
        for row in add:
            row = tuple(row)
            digest = self.row_digest(row)
            conn.execute(
                "INSERT INTO key_digests VALUES (?, ?, ?, ?) ON CONFLICT(domain, label) "
                "DO UPDATE SET version = excluded.version, digest = excluded.digest",
                (row[0], row[1], row[2], digest),
            )
            aggregate = _xor(aggregate, digest)
        for domain, label in remove:
            old = conn.execute(
                "SELECT digest FROM key_digests WHERE domain = ? AND label = ? "
                "AND digest IS NOT NULL",
                (domain, label),
            ).fetchone()
            if old is not None:  # (UPDATE ... RETURNING would give the new, NULL value)
                conn.execute(
                    "UPDATE key_digests SET digest = NULL WHERE domain = ? AND label = ?",
                    (domain, label),
                )
                aggregate = _xor(aggregate, bytes(old[0]))
        self._pending = aggregate

    def _aggregate(self, conn: sqlite3.Connection) -> bytes:
        # Only the keystore of the running TRE changes key rows, so the aggregate it last
        # wrote is still the stored one; read it once.
        if self._known is None:
            self._known = self._stored(conn)[0]
        return self._known

    def reset(self, conn: sqlite3.Connection) -> None:
        """Inside a write transaction that deletes every key row."""
        conn.execute("UPDATE key_digests SET digest = NULL")
        self._pending = _ZERO

    def _tag(self, generation: int, aggregate: bytes) -> bytes:
        message = b"tre/v1/key-index|" + generation.to_bytes(8, "big") + aggregate
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def seal(self, conn: sqlite3.Connection, generation: int) -> None:
        """The store's commit hook: tag the aggregate with the transaction's generation."""
        aggregate = self._pending if self._pending is not None else self._aggregate(conn)
        self._pending = None
        self._known = aggregate
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('key_index', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (aggregate + self._tag(generation, aggregate),),
        )

    def abandon(self) -> None:
        """The transaction rolled back: forget its pending aggregate."""
        self._pending = None
        self._known = None

    def check(self, conn: sqlite3.Connection, generation: int) -> dict[tuple[str, str], bytes]:
        """Check the digest table as a whole (refuse the boot if it was edited or rolled
        back) and return it: (domain, label) -> the digest the row must have."""
        aggregate = _ZERO
        digests: dict[tuple[str, str], bytes] = {}
        for domain, label, digest in conn.execute(
            "SELECT domain, label, digest FROM key_digests WHERE digest IS NOT NULL"
        ):
            digests[(domain, label)] = bytes(digest)
            aggregate = _xor(aggregate, bytes(digest))
        stored, tag = self._stored(conn)
        self._known = stored
        if (
            tag is None
            or not hmac.compare_digest(aggregate, stored)
            or not hmac.compare_digest(tag, self._tag(generation, aggregate))
        ):
            raise RollbackDetected(
                "the index of stored keys fails its authentication: it was edited or an "
                "older copy of it was put back"
            )
        return digests

    def row_ok(self, row: Iterable[Any], digests: dict[tuple[str, str], bytes]) -> bool:
        """Does this key row (ROW_COLUMNS order) match its indexed digest?"""
        row = tuple(row)
        expected = digests.get((row[0], row[1]))
        return expected is not None and hmac.compare_digest(expected, self.row_digest(row))
