"""Users of the host interface: names, roles, grants, password verifiers, lockout.

Kernel-side and synchronous, over a :class:`Store` (the running TRE reaches it through its
``AsyncStore``; the ``tre user`` commands open the state offline). One row per user in the
``users`` table::

    name          the user name (ipc.USER_RE)
    nonce, sealed AES-256-GCM under a key derived from the device secret ("users") of
                  msgpack {"role", "grants": sorted [[domain, method], ...], "verifier"},
                  associated data b"tre/v1/user|" + name
    failures      failed logins since the last success or password change
    last_failure  when the last one happened (the clock's seconds)
    created       when the user was added

Role, grants and verifier are sealed together and bound to the name, so none of them can be
edited or moved to another user in the file: such a row does not open (:class:`UserUnreadable`,
that user only; the others are unaffected) and its user cannot log in. The failure count is
not sealed (it changes at every failed login): someone who can write ``tre.db`` can reset
it, but cannot change who may do what or any password.

Roles, checked by :func:`may_call` (and only ever for a pair of the config's
``[host] calls``): ``admin`` may call every pair; ``operator`` its grants; ``reader`` its
grants that are also in ``[host] readonly``.

Lockout: after ``failures`` failed logins the next attempt waits :func:`backoff` seconds
(none for the first two; 1, 2, 4 ... 32, 60 s); at :data:`MAX_FAILURES` the user is locked
until an admin sets a new password (``tre user passwd``). Each failure is written durably
before the client hears of it, so a restart does not reset the count.
"""

from __future__ import annotations

import builtins
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import attestation
import ipc
from ipc._hostauth import MAX_PASSWORD

from ._config import TREConfig
from ._manifest import ID_RE, METHOD_RE
from ._store import USERS_SCHEMA, Store

if TYPE_CHECKING:
    from ._device import Device

__all__ = [
    "MAX_FAILURES",
    "MAX_GRANTS",
    "ROLES",
    "User",
    "UserError",
    "UserLocked",
    "UserUnreadable",
    "Users",
    "backoff",
    "check_grants",
    "check_name",
    "check_password",
    "format_grant",
    "may_call",
    "parse_grant",
    "users_key",
]

log = logging.getLogger("tre.users")

ROLES = ("admin", "operator", "reader")
#: Failed logins after which a user is locked until an admin sets a new password.
MAX_FAILURES = 10
#: Longest back-off between two attempts, in seconds.
MAX_BACKOFF = 60.0
#: Most (domain, method) pairs one user may be granted.
MAX_GRANTS = 256

_AAD = b"tre/v1/user|"
_NONCE_SIZE = 12
_KEY_SIZE = 32
_PAYLOAD_KEYS = frozenset({"role", "grants", "verifier"})


class UserError(ipc.TREError):
    """A bad user name, role, grant or password; a user that exists already (add) or does
    not exist (remove, passwd, set_grants)."""

    code = "USER"


class UserUnreadable(UserError):
    """A user's row does not open (edited in the file, or moved from another name): that
    user cannot log in or be changed until an admin removes it and adds it again."""

    code = "USER_UNREADABLE"


class UserLocked(ipc.AuthFailed):
    """Too many failed logins. ``retry_after``: seconds until the next attempt is allowed,
    or None when the user is locked until an admin sets a new password."""

    code = "USER_LOCKED"

    def __init__(self, retry_after: float | None) -> None:
        if retry_after is None:
            message = "too many failed logins: locked until an admin sets a new password"
        else:
            message = f"too many failed logins: try again in {retry_after:.1f} s"
        super().__init__(message)
        self.retry_after = retry_after


@attrs.frozen
class User:
    """A user as stored (never its verifier)."""

    name: str
    role: str
    grants: frozenset[tuple[str, str]]
    failures: int
    locked: bool
    created: float


def backoff(failures: int) -> float:
    """Seconds to wait after the last failure before the next attempt: 0 for 0..2
    failures, then ``min(2 ** (failures - 3), 60)``."""
    if type(failures) is not int or failures < 0:
        raise ValueError(f"failures must be a non-negative int, got {failures!r}")
    if failures < 3:
        return 0.0
    return float(min(2 ** min(failures - 3, 16), MAX_BACKOFF))


def users_key(source: attestation.Secret | Device) -> bytes:
    """The key that seals user rows: ``attestation.derive_key(uds, "users")``, from the
    device secret or from an opened :class:`Device` (kernel-side only)."""
    secret = source if isinstance(source, attestation.Secret) else source._uds
    return attestation.derive_key(secret, "users").reveal()


# --- validation -----------------------------------------------------------------------------


def check_name(name: object) -> str:
    if not isinstance(name, str) or ipc.USER_RE.fullmatch(name) is None:
        raise UserError(
            "a user name is 1-32 characters: a lower-case letter, then lower-case letters, "
            "digits, '_', '.' or '-'"
        )
    return name


def check_password(password: object) -> None:
    """UserError unless ``password`` is what :func:`ipc.make_verifier` takes (1..1024
    characters of text); the message never quotes it."""
    ok = isinstance(password, str) and 1 <= len(password) <= MAX_PASSWORD
    if ok:
        try:
            str(password).encode("utf-8")
        except UnicodeError:
            ok = False
    if not ok:
        raise UserError(f"a password is 1..{MAX_PASSWORD} characters of text (never shown)")


def _valid_name(name: object) -> bool:
    return isinstance(name, str) and ipc.USER_RE.fullmatch(name) is not None


def _check_role(role: object) -> str:
    if not isinstance(role, str) or role not in ROLES:
        raise UserError(f"a role is one of {', '.join(ROLES)}")
    return role


def _pair_ok(pair: object) -> bool:
    return (
        isinstance(pair, tuple | list)
        and len(pair) == 2
        and isinstance(pair[0], str)
        and isinstance(pair[1], str)
        and ID_RE.fullmatch(pair[0]) is not None
        and METHOD_RE.fullmatch(pair[1]) is not None
    )


def _check_grants(grants: object) -> frozenset[tuple[str, str]]:
    if isinstance(grants, str | bytes) or not isinstance(grants, Iterable):
        raise UserError("grants are (domain, method) pairs")
    pairs: set[tuple[str, str]] = set()
    for pair in grants:
        if not _pair_ok(pair):
            raise UserError("grants are (domain, method) pairs of a domain id and a method")
        pairs.add((pair[0], pair[1]))
        if len(pairs) > MAX_GRANTS:
            raise UserError(f"at most {MAX_GRANTS} grants per user")
    return frozenset(pairs)


def parse_grant(text: str) -> tuple[str, str]:
    """``"domain.method"`` (the CLI's form) -> ``("domain", "method")``; UserError else."""
    domain, dot, method = text.partition(".")
    pair = (domain, method)
    if not dot or not _pair_ok(pair):
        raise UserError(f"{text!r} is not DOMAIN.METHOD")
    return pair


def format_grant(pair: tuple[str, str]) -> str:
    return f"{pair[0]}.{pair[1]}"


def check_grants(role: str, grants: Iterable[tuple[str, str]], config: TREConfig) -> None:
    """Refuse (UserError) grants the config does not allow for ``role``: every pair must be
    in ``[host] calls``, and a reader's in ``[host] readonly``; an admin takes none (it
    may call every pair already)."""
    role = _check_role(role)
    pairs = sorted(_check_grants(grants))
    if role == "admin" and pairs:
        raise UserError("an admin may call everything in [host] calls: it takes no grants")
    for domain, method in pairs:
        if method not in config.host.calls.get(domain, frozenset()):
            raise UserError(f"{domain}.{method} is not in the config's [host] calls")
        if role == "reader" and (domain, method) not in config.host.readonly:
            raise UserError(
                f"{domain}.{method} is not in the config's [host] readonly: a reader may "
                "only be granted read-only calls"
            )


def may_call(user: User, domain: str, method: str, config: TREConfig) -> bool:
    """Whether ``user`` may call ``domain.method`` under ``config``: the pair must be in
    ``[host] calls``; then an admin may, an operator if granted it, a reader if granted it
    and it is in ``[host] readonly``."""
    if method not in config.host.calls.get(domain, frozenset()):
        return False
    if user.role == "admin":
        return True
    pair = (domain, method)
    if pair not in user.grants:
        return False
    if user.role == "operator":
        return True
    return user.role == "reader" and pair in config.host.readonly


# --- storage --------------------------------------------------------------------------------


def _has_table(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'users'"
    ).fetchone()
    return row is not None


def _create_table(conn: sqlite3.Connection) -> None:
    # Inside a write transaction: a database made before the users table existed.
    conn.execute(USERS_SCHEMA)


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError("extension types are not allowed")


_SELECT = "SELECT name, nonce, sealed, failures, last_failure, created FROM users"


def _event(conn: sqlite3.Connection, kind: str, detail: str) -> None:
    conn.execute(
        "INSERT INTO events(time, kind, domain, detail) VALUES (?, ?, 'tre', ?)",
        (time.time(), kind, detail),
    )


def _grants_detail(pairs: frozenset[tuple[str, str]]) -> str:
    return ", ".join(f"{d}.{m}" for d, m in sorted(pairs)) or "no grants"


class Users:
    """The users of one device's store. Every write is one durable transaction of the store
    (it also moves the rollback counter). Not thread-safe: use it as the store is used,
    from one thread at a time."""

    def __init__(self, store: Store, key: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if type(key) is not bytes or len(key) != _KEY_SIZE:
            raise ValueError(f"the users key must be {_KEY_SIZE} bytes")
        self._store = store
        self._aead = AESGCM(key)
        self._clock = clock

    def __repr__(self) -> str:
        return f"Users({self._store!r})"

    # --- sealing ------------------------------------------------------------------------------

    def _seal(
        self, name: str, role: str, grants: frozenset[tuple[str, str]], verifier: ipc.Verifier
    ) -> tuple[bytes, bytes]:
        payload: bytes = msgpack.packb(
            {
                "role": role,
                "grants": [list(pair) for pair in sorted(grants)],
                "verifier": verifier.to_bytes(),
            },
            use_bin_type=True,
        )
        nonce = os.urandom(_NONCE_SIZE)
        return nonce, self._aead.encrypt(nonce, payload, _AAD + name.encode("utf-8"))

    def _open(
        self, name: str, nonce: bytes, sealed: bytes
    ) -> tuple[str, frozenset[tuple[str, str]], ipc.Verifier]:
        """Role, grants and verifier of a row; UserUnreadable if it does not open or holds
        anything but what :meth:`_seal` writes."""
        unreadable = UserUnreadable(
            f"the stored record of user {name!r} does not open (altered or moved in the "
            "database): remove the user and add it again"
        )
        try:
            payload = self._aead.decrypt(bytes(nonce), bytes(sealed), _AAD + name.encode())
        except (InvalidTag, ValueError, TypeError):
            raise unreadable from None
        try:
            value = msgpack.unpackb(
                payload, raw=False, strict_map_key=True, use_list=True, ext_hook=_no_ext
            )
            if type(value) is not dict or set(value) != _PAYLOAD_KEYS:
                raise ValueError("bad payload")
            role = _check_role(value["role"])
            raw = value["grants"]
            if type(raw) is not list:
                raise ValueError("bad grants")
            grants = _check_grants(raw)
            verifier = ipc.Verifier.from_bytes(value["verifier"])
        except Exception:  # a payload this module did not write
            raise unreadable from None
        return role, grants, verifier

    def _row(self, name: str) -> tuple[Any, ...] | None:
        def read(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
            if not _has_table(conn):
                return None
            row: tuple[Any, ...] | None = conn.execute(
                _SELECT + " WHERE name = ?", (name,)
            ).fetchone()
            return row

        return self._store.read(read)

    def _user(self, row: tuple[Any, ...]) -> User:
        name, nonce, sealed, failures, _, created = row
        role, grants, _verifier = self._open(name, nonce, sealed)
        return User(name, role, grants, failures, failures >= MAX_FAILURES, created)

    def _new_verifier(self, password: str) -> ipc.Verifier:
        check_password(password)
        return ipc.make_verifier(password)

    def _existing(self, conn: sqlite3.Connection, name: str) -> tuple[Any, ...]:
        row: tuple[Any, ...] | None = None
        if _has_table(conn):
            row = conn.execute(_SELECT + " WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UserError(f"no user {name!r}")
        return row

    # --- administration (each change also writes an ``events`` row: the audit log takes
    # it in at the next boot, like the other changes made while the TRE is down) ---------

    def add(
        self, name: str, role: str, password: str, grants: Iterable[tuple[str, str]] = ()
    ) -> User:
        """A new user; UserError for a bad name, role or grant, a bad password, or a name
        that exists."""
        name = check_name(name)
        role = _check_role(role)
        pairs = _check_grants(grants)
        if self._row(name) is not None:  # before the slow part
            raise UserError(f"user {name!r} exists")
        verifier = self._new_verifier(password)
        nonce, sealed = self._seal(name, role, pairs, verifier)
        now = self._clock()

        def write(conn: sqlite3.Connection) -> None:
            _create_table(conn)
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserError(f"user {name!r} exists")
            conn.execute(
                "INSERT INTO users(name, nonce, sealed, failures, last_failure, created) "
                "VALUES (?, ?, ?, 0, 0.0, ?)",
                (name, nonce, sealed, now),
            )
            _event(conn, "user_added", f"{name} ({role}): {_grants_detail(pairs)}")

        self._store.write(write)
        return User(name, role, pairs, 0, False, now)

    def remove(self, name: str) -> None:
        """Delete a user (UserError if there is none); works on an unreadable row too."""
        name = check_name(name)

        def write(conn: sqlite3.Connection) -> None:
            self._existing(conn, name)
            conn.execute("DELETE FROM users WHERE name = ?", (name,))
            _event(conn, "user_removed", name)

        self._store.write(write)

    def passwd(self, name: str, password: str) -> None:
        """A new password (new salt, new verifier); clears the failures and the lock."""
        name = check_name(name)
        if self._row(name) is None:
            raise UserError(f"no user {name!r}")
        verifier = self._new_verifier(password)

        def write(conn: sqlite3.Connection) -> None:
            _, nonce, sealed, *_rest = self._existing(conn, name)
            role, grants, _old = self._open(name, nonce, sealed)
            nonce, sealed = self._seal(name, role, grants, verifier)
            conn.execute(
                "UPDATE users SET nonce = ?, sealed = ?, failures = 0, last_failure = 0.0 "
                "WHERE name = ?",
                (nonce, sealed, name),
            )
            _event(conn, "user_password", f"{name}: new password, failures cleared")

        self._store.write(write)

    def set_grants(self, name: str, grants: Iterable[tuple[str, str]]) -> User:
        """Replace a user's grants; returns the user as now stored."""
        name = check_name(name)
        pairs = _check_grants(grants)

        def write(conn: sqlite3.Connection) -> User:
            _, nonce, sealed, failures, _last, created = self._existing(conn, name)
            role, _grants, verifier = self._open(name, nonce, sealed)
            nonce, sealed = self._seal(name, role, pairs, verifier)
            conn.execute(
                "UPDATE users SET nonce = ?, sealed = ? WHERE name = ?", (nonce, sealed, name)
            )
            _event(conn, "user_grants", f"{name}: {_grants_detail(pairs)}")
            return User(name, role, pairs, failures, failures >= MAX_FAILURES, created)

        return self._store.write(write)

    # --- reading --------------------------------------------------------------------------

    def get(self, name: str) -> User | None:
        """The user, or None if there is none (or the name is not a valid one).
        UserUnreadable if its row does not open."""
        if not _valid_name(name):
            return None
        row = self._row(name)
        return None if row is None else self._user(row)

    def list(self) -> builtins.list[User]:
        """Every user whose row opens, by name (see :meth:`unreadable` for the others)."""
        users = []
        for row in self._rows():
            try:
                users.append(self._user(row))
            except UserUnreadable:
                log.warning("the stored record of user %r does not open", row[0])
        return users

    def unreadable(self) -> builtins.list[str]:
        """Names of the users whose rows do not open."""
        names = []
        for row in self._rows():
            try:
                self._user(row)
            except UserUnreadable:
                names.append(str(row[0]))
        return names

    def failures(self, name: str) -> int:
        """Failed logins counted for ``name`` (0 for an unknown name); readable even when
        the user's sealed row is not."""
        row = self._row(name) if _valid_name(name) else None
        return 0 if row is None else int(row[3])

    def _rows(self) -> builtins.list[tuple[Any, ...]]:
        def read(conn: sqlite3.Connection) -> builtins.list[tuple[Any, ...]]:
            if not _has_table(conn):
                return []
            return conn.execute(_SELECT + " ORDER BY name").fetchall()

        return self._store.read(read)

    def verifier(self, name: str) -> ipc.Verifier | None:
        """The user's verifier for :class:`ipc.ServerAuth`; None for an unknown (or
        invalid) name. UserUnreadable if the row does not open."""
        if not _valid_name(name):
            return None
        row = self._row(name)
        if row is None:
            return None
        _, _, verifier = self._open(row[0], row[1], row[2])
        return verifier

    # --- logins -----------------------------------------------------------------------------

    def begin(self, name: str) -> None:
        """Before a login attempt: UserLocked while the user is locked (``retry_after``
        None) or backing off (``retry_after`` = seconds left). Unknown names pass, so an
        attempt cannot tell them from known ones before several failures."""
        if not _valid_name(name):
            return
        row = self._row(name)
        if row is None:
            return
        failures, last_failure = int(row[3]), float(row[4])
        if failures >= MAX_FAILURES:
            raise UserLocked(None)
        wait = backoff(failures)
        if wait:
            elapsed = max(self._clock() - last_failure, 0.0)  # a clock that went back
            if elapsed < wait:
                raise UserLocked(wait - elapsed)

    def failed(self, name: str) -> None:
        """Count a failed login, durably (before the client is told). For an unknown name
        nothing is stored, but the same durable transaction runs, so its timing does not
        tell the names apart."""
        if not _valid_name(name):
            return
        now = self._clock()

        def write(conn: sqlite3.Connection) -> None:
            _create_table(conn)
            conn.execute(
                "UPDATE users SET failures = failures + 1, last_failure = ? WHERE name = ?",
                (now, name),
            )

        self._store.write(write)

    def succeeded(self, name: str) -> None:
        """A successful login: reset the failures (a durable write only if there were)."""
        if not _valid_name(name):
            return
        row = self._row(name)
        if row is None or int(row[3]) == 0:
            return

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE users SET failures = 0, last_failure = 0.0 WHERE name = ?", (name,)
            )

        self._store.write(write)
