"""The secure audit record (R11): an append-only, tamper-evident, access-controlled log.

Every entry is a row of ``audit_entries`` in the TRE's database (formats and keys in
tre/_audit_crypto.py): public structure (sequence number, time, domain, kind) around a
body encrypted to the domain's audit key (TRE-wide entries to the TRE's), chained by a
forward-secure MAC, and hashed as a leaf of an RFC 9162 Merkle tree whose complete
subtrees are stored as they are completed (``audit_nodes``), so proofs cost O(log n)
lookups. Checkpoints -- the tree's size and root, the time and the boot count, signed by
the DeviceID key -- are written after their entries are durable.

What is recorded: every event handed to the device's hooks (lifecycle transitions, tamper
responses, termination, and the kernel's events: denials, faults, restarts, stops, locks,
overruns, integrity results), keystore changes (in the same transaction as the change, so
a key never exists without its entry) and sealing failures, and every row of the
``events`` table the log has not seen through a hook (written while no TRE ran: the
provisioning, a ``tre tamper`` from another process, or a transition whose hook entry was
lost in a crash) -- each exactly once.

Group commit: :meth:`AuditLog.record` (synchronous, for hooks) and :meth:`AuditLog.append`
(returns once the entry is durable) queue entries in memory; one writer (:meth:`serve`,
or the appender itself when no writer runs) takes up to :data:`MAX_BATCH` of them and
writes them in one transaction of the store (encryption, MACs and hashing happen in the
store's worker thread, off the event loop). Entries that arrive while a transaction is
being written make the next batch. The checkpoint of a batch is written in the next
transaction: the next batch's when entries come within :data:`CHECKPOINT_DELAY`, else a
transaction of its own -- so a checkpoint is never on disk without its entries, and a
steady stream of appends costs one transaction per batch. An entry acknowledged is
committed: nothing acknowledged is lost in a crash (tests/hostile/test_audit_hostile.py).

The database, not memory, is the truth about the log's end: every transaction that
appends first checks that the end it knows (size and last leaf) is the stored one, and
reloads it (O(log n) lookups) if another transaction appended since.
"""

from __future__ import annotations

import collections
import logging
import re
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import attestation

from ._audit_crypto import (
    TRE_DOMAIN,
    AuditError,
    AuditKeys,
    Checkpoint,
    MacChain,
    entry_leaf,
    leaf_data,
    open_chain,
    pack_body,
    seal_chain,
)
from ._audit_tables import AuditEntry, SqlNodeStore, latest_checkpoint, log_size, read_entries
from ._device import Device, TREEvent
from ._store import AUDIT_SCHEMA

if TYPE_CHECKING:
    from ._kernel import Kernel

__all__ = [
    "CHECKPOINT_DELAY",
    "MAX_BATCH",
    "MAX_PENDING",
    "AuditLog",
    "attach_audit_log",
    "audit_keys",
]

log = logging.getLogger("tre.audit")

#: Most entries written in one transaction. A transaction costs two fsyncs (the WAL and
#: the replay-protected counter) whatever its size, so larger batches carry more entries
#: per fsync; 512 keeps one batch's CPU work (encrypt, MAC, hash: ~10 us an entry) near
#: 5 ms, so a batch never holds the store (and the keystore writes behind it) for long.
MAX_BATCH = 512
#: Most entries waiting in memory. Past it a hook's entry is dropped and counted (a
#: "dropped" entry records the count as soon as there is room) and :meth:`append` waits:
#: a domain provoking denials in a loop cannot exhaust the TRE's memory.
MAX_PENDING = 65536
#: How long (seconds) the writer waits for more entries before it writes the checkpoint
#: of the last batch in a transaction of its own: entries that come sooner carry it, so a
#: steady stream of appends costs one transaction a batch, not two.
CHECKPOINT_DELAY = 0.05
#: Longest detail text kept from an event (a fault's message can be long).
MAX_DETAIL = 2048
#: Event keys remembered after an ``events`` row was taken in before its hook ran.
_MAX_SUPPRESSED = 1024
KIND_RE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")

_EventKey = tuple[float, str, str, str]
_Row = tuple[float, str, str, bytes]  # time, domain, kind, packed body


def audit_keys(device: Device) -> AuditKeys:
    """The body keys of every installed domain and of the TRE."""
    return AuditKeys(device.cdis, {i: r.owner_hash for i, r in device.records.items()})


async def attach_audit_log(kernel: Kernel) -> AuditLog:
    """At boot: open the device's audit log and hand it every event -- the device's hooks
    (lifecycle and kernel events) and each domain's keystore changes. The caller runs
    :meth:`AuditLog.serve` in its nursery and :meth:`AuditLog.aclose` at the end."""
    audit = await AuditLog.open(kernel.device)
    kernel.device.hooks.append(audit.on_event)
    for rt in kernel.domains.values():
        if rt.keys is not None:
            rt.keys.audit = audit
    return audit


@attrs.define(eq=False)
class _Waiter:
    done: trio.Event = attrs.field(factory=trio.Event)
    seq: int = -1
    error: BaseException | None = None


@attrs.define(eq=False)
class _Item:
    time: float
    domain: str
    kind: str
    body: bytes
    waiter: _Waiter | None = None
    key: _EventKey | None = None  # a hook event's identity (to match its events row)


@attrs.frozen
class _Tip:
    """The end of the log: enough to append and to sign, without reading it all."""

    size: int
    frontier: tuple[bytes, ...]
    chain: MacChain  # the MAC key of entry ``size``
    last_leaf: bytes | None
    checkpointed: int  # size of the latest checkpoint
    events_seq: int  # last row of ``events`` taken in

    @property
    def root(self) -> bytes:
        return attestation.frontier_root(self.frontier)

    def is_current(self, conn: sqlite3.Connection) -> bool:
        """Is this the stored end? (Leaf hashes carry random nonces: no false match.)"""
        row = conn.execute(
            "SELECT seq, leaf FROM audit_entries ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return self.size == 0
        return bool(row[0] + 1 == self.size and row[1] == self.last_leaf)


def _load_tip(conn: sqlite3.Connection, keys: AuditKeys, sealer: AESGCM) -> _Tip:
    size = log_size(conn)
    try:
        frontier = attestation.load_frontier(SqlNodeStore(conn), size)
    except AuditError as exc:
        raise AuditError(f"the audit log cannot be continued: {exc.message}") from None
    meta = dict(
        conn.execute(
            "SELECT key, value FROM meta WHERE key IN ('audit_chain', 'audit_events')"
        ).fetchall()
    )
    sealed = meta.get("audit_chain")
    if size == 0 and sealed is None:
        chain: MacChain | None = keys.chain_start()
    else:
        chain = open_chain(sealer, sealed, size) if isinstance(sealed, bytes) else None
    if chain is None:
        raise AuditError(
            f"the audit log cannot be continued: its sealed MAC-chain key is not the one "
            f"after its {size} entries (edited or truncated; see `tre audit verify`)"
        )
    last = None
    if size:
        (last,) = conn.execute(
            "SELECT leaf FROM audit_entries WHERE seq = ?", (size - 1,)
        ).fetchone()
    cp = latest_checkpoint(conn)
    return _Tip(
        size,
        tuple(frontier),
        chain,
        last,
        0 if cp is None else cp.size,
        int(meta.get("audit_events", 0)),
    )


def _append(
    conn: sqlite3.Connection, tip: _Tip, rows: Sequence[_Row], keys: AuditKeys, sealer: AESGCM
) -> _Tip:
    """Write ``rows`` after ``tip`` inside the caller's transaction; the new end."""
    size, frontier, chain = tip.size, list(tip.frontier), tip.chain.copy()
    last = tip.last_leaf
    entries, nodes = [], []
    for stamp, domain, kind, plain in rows:
        nonce, body = keys.encrypt(size, stamp, domain, kind, plain)
        data = leaf_data(size, stamp, domain, kind, nonce, body)
        mac = chain.mac(data)
        chain.step()  # k_size is dropped here (see MacChain on what that means in Python)
        last = entry_leaf(data, mac)
        entries.append((size, stamp, domain, kind, nonce, body, mac, last))
        nodes += attestation.append_leaf(frontier, size, last)
        size += 1
    conn.executemany("INSERT INTO audit_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", entries)
    conn.executemany("INSERT INTO audit_nodes VALUES (?, ?, ?)", nodes)
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('audit_chain', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (seal_chain(sealer, chain),),
    )
    return attrs.evolve(tip, size=size, frontier=tuple(frontier), chain=chain, last_leaf=last)


class AuditLog:
    """The running TRE's audit log. Open with :meth:`open`; run :meth:`serve` in a
    nursery (or let :meth:`append` write); :meth:`aclose` writes what is queued."""

    def __init__(self, device: Device, keys: AuditKeys, sealer: AESGCM, tip: _Tip) -> None:
        self.device = device
        self.keys = keys
        self._sealer = sealer
        self._tip = tip
        #: the end after the last entry written inside another transaction (see committed)
        self._inline_tip: _Tip | None = None
        self._queue: collections.deque[_Item] = collections.deque()
        self._wake = trio.Event()
        self._room = trio.Event()
        self._lock = trio.Lock()
        self._serving = False
        self._closed = False
        self._dropped = 0
        #: rows of ``events`` are waiting to be taken in (checked at open)
        self._unseen = False
        #: hook events since the last transaction took its snapshot (see _write)
        self._hooked: set[_EventKey] = set()
        #: events rows taken in before their hook ran: the hook entry is skipped
        self._suppressed: collections.OrderedDict[_EventKey, None] = collections.OrderedDict()

    def __repr__(self) -> str:
        return f"<AuditLog {self._tip.size} entries, {len(self._queue)} queued>"

    @property
    def size(self) -> int:
        """Entries committed (as far as this log has written or been told)."""
        return self._tip.size

    @property
    def root(self) -> bytes:
        return self._tip.root

    # --- opening ------------------------------------------------------------------------

    @classmethod
    async def open(cls, device: Device) -> AuditLog:
        """The device's log, continued where it ends; refuses (:class:`AuditError`) a log
        whose end does not hold together (its chain key is not the one after its last
        entry), since no correct entry could be added to it."""
        keys = audit_keys(device)
        sealer = keys.chain_sealer()
        store = device.store
        present = await store.read(
            lambda c: c.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'audit_entries'"
            ).fetchone()[0]
        )
        if not present:  # a database made before the audit tables existed

            def create(conn: sqlite3.Connection) -> None:
                for statement in AUDIT_SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)

            await store.write(create)

        def load(conn: sqlite3.Connection) -> tuple[_Tip, bool]:
            tip = _load_tip(conn, keys, sealer)
            unseen = conn.execute(
                "SELECT 1 FROM events WHERE seq > ?", (tip.events_seq,)
            ).fetchone()
            return tip, unseen is not None

        tip, unseen = await store.read(load)
        audit = cls(device, keys, sealer, tip)
        audit._unseen = unseen  # rows of `events` to take in: the writer has work
        return audit

    # --- adding entries -----------------------------------------------------------------

    def on_event(self, event: TREEvent) -> None:
        """The device's event hook (synchronous: queues the entry, never waits)."""
        key = (event.time, event.kind, event.subject, event.detail)
        if key in self._suppressed:  # its events row is in the log already
            del self._suppressed[key]
            return
        self._hooked.add(key)
        domain = event.subject if self.keys.knows(event.subject) else TRE_DOMAIN
        body = {"subject": event.subject, "detail": event.detail[:MAX_DETAIL]}
        kind = event.kind if KIND_RE.fullmatch(event.kind) else "event"
        self._put(_Item(event.time, domain, kind, pack_body(body), key=key))

    def record(self, domain: str, kind: str, body: Any) -> None:
        """Queue an entry without waiting (from synchronous code); written soon."""
        self._put(self._item(domain, kind, body))

    def note(self, kind: str, domain: str, detail: str) -> None:
        """:meth:`record` a detail text, in a kernel event's argument order."""
        self.record(*self._subject(kind, domain, detail))

    def in_transaction(self, conn: sqlite3.Connection, kind: str, domain: str, detail: str) -> None:
        """Append an entry inside the caller's write transaction of the device's store (in
        its worker thread): it commits or rolls back with the change it records. Call
        :meth:`committed` once the transaction returned."""
        domain, kind, body = self._subject(kind, domain, detail)
        item = self._item(domain, kind, body)
        tip = self._tip if self._tip.is_current(conn) else _load_tip(conn, self.keys, self._sealer)
        row = (item.time, item.domain, item.kind, item.body)
        self._inline_tip = _append(conn, tip, [row], self.keys, self._sealer)

    def committed(self) -> None:
        """After a transaction that used :meth:`in_transaction` committed: the writer
        signs a checkpoint over the new entries."""
        tip = self._inline_tip
        if tip is not None and tip.size > self._tip.size:
            self._tip = tip  # checked against the database before it is used again
        self._wake.set()

    async def append(self, domain: str, kind: str, body: Any) -> int:
        """Add an entry; returns its sequence number once it is durable."""
        item = self._item(domain, kind, body)
        item.waiter = waiter = _Waiter()
        while len(self._queue) >= MAX_PENDING:
            await self._room.wait()
        self._put(item)
        if not self._serving:  # nobody writes for us: write (with whatever else is queued)
            async with self._lock:
                while not waiter.done.is_set():
                    await self._write_next()
        await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        return waiter.seq

    def _subject(self, kind: str, domain: str, detail: str) -> tuple[str, str, dict[str, str]]:
        subject = domain
        if not self.keys.knows(domain):
            domain = TRE_DOMAIN
        return domain, kind, {"subject": subject, "detail": detail[:MAX_DETAIL]}

    def _item(self, domain: str, kind: str, body: Any) -> _Item:
        if not self.keys.knows(domain):
            raise AuditError(f"no domain {domain!r} is installed (TRE-wide entries use 'tre')")
        if not isinstance(kind, str) or not KIND_RE.fullmatch(kind):
            raise AuditError(f"an entry kind must match {KIND_RE.pattern}")
        return _Item(time.time(), domain, kind, pack_body(body))

    def _put(self, item: _Item) -> None:
        if self._closed:
            log.warning("audit entry %s after the log was closed: not recorded", item.kind)
            if item.waiter is not None:
                item.waiter.error = AuditError("the audit log is closed")
                item.waiter.done.set()
            return
        if item.waiter is None and len(self._queue) >= MAX_PENDING:
            self._dropped += 1
            return
        self._queue.append(item)
        self._wake.set()

    # --- writing ------------------------------------------------------------------------

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The writer: run it in a nursery for as long as the TRE runs."""
        self._serving = True
        task_status.started()
        try:
            while True:
                if not self._pending():
                    await self._wake.wait()
                self._wake = trio.Event()
                if not self._queue and not self._unseen:
                    # Only a checkpoint is due: give entries a moment to come and carry it
                    # (one transaction instead of two).
                    with trio.move_on_after(CHECKPOINT_DELAY):
                        while not self._queue:
                            await self._wake.wait()
                            self._wake = trio.Event()
                async with self._lock:
                    await self._write_next()
        finally:
            self._serving = False

    async def flush(self) -> None:
        """Write everything queued, and the checkpoint after it."""
        async with self._lock:
            while self._pending():
                await self._write_next()

    async def aclose(self) -> None:
        """Write what is queued and stop taking entries. Never raises (a failing audit
        write must not hide the error that ended the TRE); the failure is logged."""
        with trio.CancelScope(shield=True):
            try:
                await self.flush()
            except Exception:
                log.exception("the audit log could not write its last entries")
            self._closed = True
            if self.on_event in self.device.hooks:
                self.device.hooks.remove(self.on_event)

    def _pending(self) -> bool:
        return bool(self._queue or self._unseen or self._tip.checkpointed < self._tip.size)

    async def _write_next(self) -> None:
        """One transaction: the next batch (with the checkpoint of what came before), or
        the checkpoint alone."""
        if not self._pending():
            return
        batch: list[_Item] = []
        if self._dropped:
            body = pack_body({"subject": TRE_DOMAIN, "detail": f"{self._dropped} dropped"})
            batch.append(_Item(time.time(), TRE_DOMAIN, "dropped", body))
            self._dropped = 0
        while self._queue and len(batch) < MAX_BATCH:
            batch.append(self._queue.popleft())
        await self._write(batch)
        self._room.set()
        self._room = trio.Event()

    async def _write(self, batch: list[_Item]) -> None:
        snapshot, self._hooked = self._hooked, set()
        known = self._tip
        device = self.device
        keys, sealer = self.keys, self._sealer
        signer, ueid, boots = device.device_key, device.ueid, device.boot_count

        def write(conn: sqlite3.Connection) -> tuple[_Tip, list[_EventKey]]:
            tip = known if known.is_current(conn) else _load_tip(conn, keys, sealer)
            if tip.size > tip.checkpointed:  # those entries are durable: sign their head
                cp = Checkpoint(tip.size, tip.root, time.time(), boots).signed(signer, ueid)
                conn.execute(
                    "INSERT INTO audit_checkpoints VALUES (?, ?, ?, ?, ?)",
                    (cp.size, cp.root, cp.time, cp.boot_count, cp.signature),
                )
                tip = attrs.evolve(tip, checkpointed=tip.size)
            rows: list[_Row] = []
            taken: list[_EventKey] = []
            events_seq = tip.events_seq
            for seq, stamp, kind, subject, detail in conn.execute(
                "SELECT seq, time, kind, domain, detail FROM events WHERE seq > ? ORDER BY seq",
                (events_seq,),
            ).fetchall():
                events_seq = seq
                key = (stamp, kind, subject, detail)
                if key in snapshot:  # its hook entry is queued or written already
                    continue
                taken.append(key)
                domain = subject if keys.knows(subject) else TRE_DOMAIN
                value = {"subject": subject, "detail": detail[:MAX_DETAIL], "row": seq}
                rows.append((stamp, domain, kind, pack_body(value)))
            rows += [(i.time, i.domain, i.kind, i.body) for i in batch]
            if rows:
                tip = _append(conn, tip, rows, keys, sealer)
            if events_seq != tip.events_seq:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('audit_events', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (events_seq,),
                )
                tip = attrs.evolve(tip, events_seq=events_seq)
            return tip, taken

        try:
            # Shielded: once the transaction may have committed, the bookkeeping below
            # must run (a cancelled writer would otherwise forget what it wrote).
            with trio.CancelScope(shield=True):
                new_tip, taken = await device.store.write(write)
        except Exception as exc:
            self._hooked |= snapshot
            self._dropped += sum(1 for i in batch if i.waiter is None and i.kind != "dropped")
            log.error("the audit log could not write %d entries: %s", len(batch), exc)
            for item in batch:
                if item.waiter is not None:
                    item.waiter.error = exc
                    item.waiter.done.set()
            return
        first = new_tip.size - len(batch)
        self._tip = new_tip
        self._unseen = False
        for offset, item in enumerate(batch):
            if item.waiter is not None:
                item.waiter.seq = first + offset
                item.waiter.done.set()
        for key in taken:
            self._taken_before_hook(key)

    def _taken_before_hook(self, key: _EventKey) -> None:
        """An events row was taken in that was not in the snapshot: its hook ran after the
        snapshot (its entry is queued: drop it) or has not run yet (skip it when it does);
        or it was written by another process (no hook will come; forgotten in time)."""
        for item in self._queue:
            if item.key == key:
                self._queue.remove(item)
                self._hooked.discard(key)
                return
        self._suppressed[key] = None
        while len(self._suppressed) > _MAX_SUPPRESSED:
            self._suppressed.popitem(last=False)

    # --- reading ------------------------------------------------------------------------

    async def read(self, domain: str) -> list[AuditEntry]:
        """Every committed entry of ``domain`` (or ``"tre"``), decrypted with that
        domain's audit key only: another domain's entries are not even selected, and
        would not open with this key."""
        keys = self.keys
        return await self.device.store.read(lambda c: read_entries(c, keys, domain))

    async def latest_checkpoint(self) -> Checkpoint | None:
        return await self.device.store.read(latest_checkpoint)
