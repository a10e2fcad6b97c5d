"""The audit tables of tre.db, read synchronously: proofs, reading, and the full check.

Used by the running log (tre/_audit.py, in the store's worker thread) and by ``tre audit``
(tre/_cli_audit.py, on a read-only connection). The tables (schema in tre/_store.py)::

    audit_entries(seq, time, domain, kind, nonce, body, mac, leaf)   one row per entry
    audit_nodes(level, idx, hash)        every complete subtree of level >= 1 (level 0 is
                                         audit_entries.leaf), written when its last leaf is
    audit_checkpoints(size, root, time, bootcount, signature)        signed tree heads

and in ``meta``: ``audit_chain`` (the sealed MAC-chain key of the next entry) and
``audit_events`` (the last row of ``events`` the log has taken in).
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterator
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import attestation

from ._audit_crypto import (
    AuditError,
    AuditKeys,
    AuditUnreadable,
    Checkpoint,
    MacChain,
    entry_leaf,
    leaf_data,
    open_chain,
)

__all__ = [
    "AuditEntry",
    "SqlNodeStore",
    "Verification",
    "checkpoints",
    "latest_checkpoint",
    "log_size",
    "public_entries",
    "read_entries",
    "verify_log",
]

_ENTRY_COLUMNS = "seq, time, domain, kind, nonce, body, mac, leaf"
#: Problems a check collects before it stops looking (the first one is what counts).
MAX_PROBLEMS = 20


@attrs.frozen
class AuditEntry:
    """One entry as its domain's owner reads it."""

    seq: int
    time: float
    domain: str
    kind: str
    body: Any


class SqlNodeStore:
    """:class:`attestation.NodeStore` over the audit tables (one indexed lookup each)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def subtree(self, level: int, index: int) -> bytes:
        if level == 0:
            row = self._conn.execute(
                "SELECT leaf FROM audit_entries WHERE seq = ?", (index,)
            ).fetchone()
        else:
            row = self._conn.execute(
                "SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?", (level, index)
            ).fetchone()
        if row is None or not isinstance(row[0], bytes):
            raise AuditError(f"the audit log has no subtree ({level}, {index})")
        return row[0]


def log_size(conn: sqlite3.Connection) -> int:
    (size,) = conn.execute("SELECT coalesce(max(seq) + 1, 0) FROM audit_entries").fetchone()
    return int(size)


def _checkpoint(row: tuple[Any, ...]) -> Checkpoint:
    return Checkpoint(int(row[0]), bytes(row[1]), float(row[2]), int(row[3]), bytes(row[4]))


def checkpoints(conn: sqlite3.Connection) -> list[Checkpoint]:
    rows = conn.execute(
        "SELECT size, root, time, bootcount, signature FROM audit_checkpoints ORDER BY size"
    ).fetchall()
    return [_checkpoint(r) for r in rows]


def latest_checkpoint(conn: sqlite3.Connection) -> Checkpoint | None:
    row = conn.execute(
        "SELECT size, root, time, bootcount, signature FROM audit_checkpoints "
        "ORDER BY size DESC LIMIT 1"
    ).fetchone()
    return None if row is None else _checkpoint(row)


def public_entries(conn: sqlite3.Connection) -> Iterator[tuple[int, float, str, str, bytes]]:
    """(seq, time, domain, kind, leaf) of every entry: what anyone may see."""
    yield from conn.execute("SELECT seq, time, domain, kind, leaf FROM audit_entries ORDER BY seq")


def read_entries(conn: sqlite3.Connection, keys: AuditKeys, domain: str) -> list[AuditEntry]:
    """Every entry of ``domain`` (or ``"tre"``), opened with that domain's key only.
    An entry that does not open (altered) raises :class:`AuditUnreadable`."""
    if not keys.knows(domain):
        raise AuditUnreadable(f"no audit key for {domain!r}")
    out = []
    for seq, time, dom, kind, nonce, body in conn.execute(
        "SELECT seq, time, domain, kind, nonce, body FROM audit_entries WHERE domain = ? "
        "ORDER BY seq",
        (domain,),
    ):
        value = keys.decrypt(domain, seq, time, dom, kind, nonce, body)
        out.append(AuditEntry(seq, time, dom, kind, value))
    return out


# --- the full check ------------------------------------------------------------------------


@attrs.frozen
class Verification:
    """What :func:`verify_log` found. ``problems`` is empty when the log is intact."""

    entries: int
    checkpoints: int
    problems: tuple[str, ...]
    mac_checked: bool
    root: bytes

    @property
    def ok(self) -> bool:
        return not self.problems


class _Levels:
    """Every complete subtree of the tree recomputed from the leaves (a NodeStore)."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.levels = [leaves]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append(
                [attestation.node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            )

    def subtree(self, level: int, index: int) -> bytes:
        return self.levels[level][index]


def verify_log(
    conn: sqlite3.Connection,
    *,
    public: Ed25519PublicKey,
    ueid: bytes,
    chain: MacChain | None,
    sealer: Any = None,
    pinned: Checkpoint | None = None,
) -> Verification:
    """Check the whole log, in this order, and say what is wrong:

    1. entries are numbered 0, 1, 2, ... without a gap, and each row's leaf hash is the
       hash of its fields;
    2. (with ``chain``, the chain's first key) every MAC, from the first entry on, and the
       sealed chain key is the one after the last entry (so the end was not cut off);
    3. the stored subtree hashes are exactly the complete subtrees of the recomputed tree;
    4. each checkpoint is signed by the DeviceID key and its root is the tree's at its size;
    5. (with ``pinned``) the pinned checkpoint is signed by the DeviceID key, the log is not
       shorter, and the current tree is consistent with it (RFC 9162 consistency proof).

    Run it inside one read transaction so the tables are seen at one instant.
    """
    problems: list[str] = []

    def problem(text: str) -> bool:
        problems.append(text)
        return len(problems) >= MAX_PROBLEMS

    # 1 and 2: the entries and the MAC chain.
    leaves: list[bytes] = []
    mac_ok = chain is not None
    chain = chain.copy() if chain is not None else None
    for row in conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM audit_entries ORDER BY seq"):  # noqa: S608
        seq, time, domain, kind, nonce, body, mac, leaf = row
        n = len(leaves)
        if seq != n:  # nothing after a gap can be checked: stop here
            problem(f"entry {n} is missing (the next entry is numbered {seq})")
            break
        try:
            data = leaf_data(seq, time, domain, kind, nonce, body)
            computed = entry_leaf(data, mac)
        except (TypeError, AttributeError, OverflowError, UnicodeError, struct.error):
            if problem(f"entry {seq} has a malformed field"):
                break
            leaves.append(leaf if isinstance(leaf, bytes) else b"")
            mac_ok = False
            continue
        if computed != leaf and problem(f"entry {seq}: its leaf hash does not match its row"):
            break
        if chain is not None and mac_ok:
            if chain.mac(data) != mac:
                mac_ok = False
                if problem(f"entry {seq}: the MAC chain breaks here (MAC does not verify)"):
                    break
            chain.step()
        leaves.append(computed)
    size = len(leaves)
    if chain is not None and mac_ok and not problems:
        row = conn.execute("SELECT value FROM meta WHERE key = 'audit_chain'").fetchone()
        sealed = open_chain(sealer, row[0], size) if row and isinstance(row[0], bytes) else None
        if size and (sealed is None or not sealed.same_key(chain)):
            problem(
                f"the sealed MAC-chain key is not the one after entry {size - 1}: entries "
                "were removed from or added at the end"
            )
    if size == 0 and not problems:
        # An empty log that has been written to: its bookkeeping survived its entries.
        kept = conn.execute(
            "SELECT count(*) FROM meta WHERE key IN ('audit_chain', 'audit_events')"
        ).fetchone()[0]
        if kept:
            problem("the audit log is empty but has been written to: its entries were removed")
    tree = _Levels(leaves)
    current = attestation.merkle_root(tree, size)

    # 3. the stored subtree hashes.
    if not problems:
        seen = 0
        for level, idx, value in conn.execute(
            "SELECT level, idx, hash FROM audit_nodes ORDER BY level, idx"
        ):
            seen += 1
            if not (
                isinstance(level, int)
                and 1 <= level < len(tree.levels)
                and isinstance(idx, int)
                and 0 <= idx < len(tree.levels[level])
            ):
                text = f"node ({level}, {idx}) is not a subtree of a log of {size} entries"
            elif value != tree.levels[level][idx]:
                text = f"node ({level}, {idx}): the stored hash does not match the entries"
            else:
                continue
            if problem(text):
                break
        expected = sum(len(lv) for lv in tree.levels[1:])
        if not problems and seen != expected:
            problem(f"{expected - seen} subtree hash(es) missing from audit_nodes")

    # 4. the checkpoints.
    stored = checkpoints(conn)
    for cp in stored:
        if problems:
            break
        if not cp.verify(public, ueid):
            problem(f"checkpoint at size {cp.size}: the signature is not the DeviceID key's")
        elif cp.size > size:
            problem(f"checkpoint at size {cp.size}: the log has only {size} entries (truncated)")
        elif cp.root != attestation.merkle_root(tree, cp.size):
            problem(f"checkpoint at size {cp.size}: its root is not the tree's root at that size")

    # 5. the pinned checkpoint.
    if pinned is not None and not problems:
        if not pinned.verify(public, ueid):
            problem("the pinned checkpoint is not signed by this device's DeviceID key")
        elif pinned.size > size:
            problem(
                f"the log has {size} entries, fewer than the pinned checkpoint's {pinned.size}: "
                "it was truncated"
            )
        else:
            proof = attestation.consistency_proof(tree, pinned.size, size) if pinned.size else []
            if not attestation.verify_consistency(pinned.size, size, pinned.root, current, proof):
                problem(
                    f"the log is not consistent with the pinned checkpoint (size {pinned.size}): "
                    "its history was rewritten"
                )
    return Verification(size, len(stored), tuple(problems), mac_ok and not problems, current)
