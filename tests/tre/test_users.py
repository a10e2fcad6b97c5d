"""tre/_users.py: users, roles, grants, sealed rows, lockout and back-off."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import attestation
import ipc
import tre
from tests.device_helpers import db_rows, make_factory, secret_forms
from tre._config import HostPolicy, TREConfig, default_config
from tre._device import Device
from tre._provision import provision
from tre._store import Store
from tre._users import (
    MAX_FAILURES,
    ROLES,
    User,
    UserError,
    UserLocked,
    Users,
    UserUnreadable,
    backoff,
    check_grants,
    may_call,
    parse_grant,
    users_key,
)

KEY = bytes(range(32))
PASSWORD = "s3cret-passw0rd"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store.create(None, None)
    yield s
    s.close()


@pytest.fixture
def users(store: Store, clock: FakeClock) -> Users:
    return Users(store, KEY, clock=clock)


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_factory(tmp_path_factory.mktemp("factory") / "factory")


@pytest.fixture
def state(tmp_path: Path, factory: Path) -> Path:
    folder = tmp_path / "dev"
    provision(folder, factory, config=default_config(), admin="root", admin_password=PASSWORD)
    return folder


def device_users(state: Path, clock: FakeClock | None = None) -> tuple[Device, Users]:
    device = Device.open_sync(state)
    kwargs = {} if clock is None else {"clock": clock}
    return device, Users(device.store.sync, users_key(device), **kwargs)


def close(device: Device) -> None:
    device.store.sync.close()
    device.counters.close()


def login(users: Users, name: str, password: str) -> None:
    """One full exchange against the stored verifier (AuthFailed if it fails)."""
    client = ipc.ClientAuth(name, password)
    server = ipc.ServerAuth(client.hello(), users.verifier(name), decoy_key=b"k")
    client.check(server.verify(client.answer(server.challenge())))


# --- administration ------------------------------------------------------------------------


def test_add_get_list_remove(users: Users, clock: FakeClock) -> None:
    alice = users.add("alice", "operator", PASSWORD, [("oem", "info"), ("meter", "latest")])
    assert alice == User(
        "alice", "operator", frozenset({("oem", "info"), ("meter", "latest")}), 0, False, clock.now
    )
    assert users.get("alice") == alice
    users.add("bob", "reader", PASSWORD)
    assert [u.name for u in users.list()] == ["alice", "bob"]
    assert users.get("carol") is None
    users.remove("alice")
    assert users.get("alice") is None
    assert [u.name for u in users.list()] == ["bob"]
    login(users, "bob", PASSWORD)


def test_passwd_replaces_the_verifier(users: Users) -> None:
    users.add("alice", "admin", PASSWORD)
    before = users.verifier("alice")
    users.passwd("alice", "another one")
    after = users.verifier("alice")
    assert before is not None and after is not None
    assert before.salt != after.salt
    login(users, "alice", "another one")
    with pytest.raises(ipc.AuthFailed):
        login(users, "alice", PASSWORD)
    assert users.get("alice") == users.get("alice")
    assert users.get("alice").role == "admin"  # type: ignore[union-attr]


def test_set_grants_replaces_the_grants(users: Users) -> None:
    users.add("alice", "operator", PASSWORD, [("oem", "info")])
    verifier = users.verifier("alice")
    user = users.set_grants("alice", [("mno", "status"), ("mno", "status"), ("oem", "time")])
    assert user.grants == {("mno", "status"), ("oem", "time")}
    assert users.get("alice") == user
    assert users.verifier("alice") == verifier  # the password is unchanged
    assert users.set_grants("alice", []).grants == frozenset()


def test_every_write_is_a_store_transaction(users: Users, store: Store) -> None:
    generations = [store.generation()]
    users.add("alice", "operator", PASSWORD)
    users.set_grants("alice", [("oem", "info")])
    users.passwd("alice", "x")
    users.failed("alice")
    users.succeeded("alice")
    users.remove("alice")
    generations.append(store.generation())
    assert generations[1] - generations[0] == 6


@pytest.mark.parametrize("name", ["", "Alice", "1abc", "a" * 33, "a b", "al/ice", "é", None, 7])
def test_bad_names_are_refused(users: Users, name: object) -> None:
    with pytest.raises(UserError):
        users.add(name, "reader", PASSWORD)  # type: ignore[arg-type]
    with pytest.raises(UserError):
        users.remove(name)  # type: ignore[arg-type]
    with pytest.raises(UserError):
        users.passwd(name, PASSWORD)  # type: ignore[arg-type]
    with pytest.raises(UserError):
        users.set_grants(name, [])  # type: ignore[arg-type]
    assert users.get(name) is None  # type: ignore[arg-type]
    assert users.verifier(name) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("role", ["root", "Admin", "", None])
def test_bad_roles_are_refused(users: Users, role: object) -> None:
    with pytest.raises(UserError):
        users.add("alice", role, PASSWORD)  # type: ignore[arg-type]
    assert users.list() == []


@pytest.mark.parametrize(
    "grants",
    [
        [("oem",)],
        [("oem", "info", "x")],
        [("OEM", "info")],
        [("oem", "Info")],
        [("oem", 1)],
        [("", "info")],
        ["oem.info"],
        "oem.info",
        b"oem",
        7,
        [("oem", f"m{i}") for i in range(300)],
    ],
)
def test_bad_grants_are_refused(users: Users, grants: object) -> None:
    with pytest.raises(UserError):
        users.add("alice", "operator", PASSWORD, grants)  # type: ignore[arg-type]
    users.add("bob", "operator", PASSWORD)
    with pytest.raises(UserError):
        users.set_grants("bob", grants)  # type: ignore[arg-type]


@pytest.mark.parametrize("password", ["", "x" * 1025, None, b"bytes", "lone \ud800"])
def test_bad_passwords_are_refused_without_being_shown(users: Users, password: object) -> None:
    with pytest.raises(UserError) as exc:
        users.add("alice", "reader", password)  # type: ignore[arg-type]
    assert "\ud800" not in str(exc.value) and "bytes" not in str(exc.value)
    assert users.get("alice") is None


def test_duplicates_and_unknown_users(users: Users) -> None:
    users.add("alice", "reader", PASSWORD)
    with pytest.raises(UserError, match="exists"):
        users.add("alice", "admin", "other")
    assert users.get("alice").role == "reader"  # type: ignore[union-attr]
    for action in (
        lambda: users.remove("bob"),
        lambda: users.passwd("bob", PASSWORD),
        lambda: users.set_grants("bob", []),
    ):
        with pytest.raises(UserError, match="no user"):
            action()


def test_a_database_made_before_the_users_table(store: Store, clock: FakeClock) -> None:
    store.write(lambda c: c.execute("DROP TABLE users"))
    users = Users(store, KEY, clock=clock)
    assert users.list() == [] and users.get("alice") is None and users.verifier("alice") is None
    users.begin("alice")
    users.succeeded("alice")
    with pytest.raises(UserError):
        users.remove("alice")
    users.failed("alice")  # creates the table, stores nothing
    assert users.list() == []
    users.add("alice", "reader", PASSWORD)
    assert [u.name for u in users.list()] == ["alice"]


def test_the_key_must_be_32_bytes(store: Store) -> None:
    for key in (b"", bytes(31), bytes(33), "x" * 32):
        with pytest.raises(ValueError):
            Users(store, key)  # type: ignore[arg-type]


def test_users_key_is_derived_from_the_device_secret() -> None:
    secret = attestation.Secret(bytes(32))
    key = users_key(secret)
    assert len(key) == 32 and key == users_key(attestation.Secret(bytes(32)))
    assert key == attestation.derive_key(secret, "users").reveal()
    assert key != users_key(attestation.Secret(bytes([1]) * 32))


# --- lockout and back-off -----------------------------------------------------------------------


def test_backoff_table() -> None:
    assert [backoff(f) for f in range(12)] == [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff(10**9) == 60
    for bad in (-1, 1.5, True, None):
        with pytest.raises(ValueError):
            backoff(bad)  # type: ignore[arg-type]


def test_back_off_then_lock_until_passwd(users: Users, clock: FakeClock) -> None:
    users.add("alice", "operator", PASSWORD)
    users.begin("alice")
    for failures in range(1, MAX_FAILURES):
        users.failed("alice")
        wait = backoff(failures)
        if wait == 0:
            users.begin("alice")
            continue
        with pytest.raises(UserLocked) as exc:
            users.begin("alice")
        assert exc.value.retry_after == pytest.approx(wait)
        assert exc.value.code == "USER_LOCKED"
        assert isinstance(exc.value, ipc.AuthFailed)
        clock.advance(wait * 0.25)
        with pytest.raises(UserLocked) as exc:
            users.begin("alice")
        assert exc.value.retry_after == pytest.approx(wait * 0.75)
        clock.advance(wait * 0.75)
        users.begin("alice")  # waited enough
    assert users.get("alice").failures == MAX_FAILURES - 1  # type: ignore[union-attr]
    users.failed("alice")
    user = users.get("alice")
    assert user is not None and user.locked and user.failures == MAX_FAILURES
    clock.advance(10 * 365 * 86400)
    with pytest.raises(UserLocked) as exc:
        users.begin("alice")
    assert exc.value.retry_after is None
    assert "admin" in str(exc.value)
    users.passwd("alice", PASSWORD)
    user = users.get("alice")
    assert user is not None and not user.locked and user.failures == 0
    users.begin("alice")


def test_a_success_resets_the_failures(users: Users, store: Store) -> None:
    users.add("alice", "operator", PASSWORD)
    generation = store.generation()
    users.succeeded("alice")  # nothing to reset: no write
    assert store.generation() == generation
    for _ in range(4):
        users.failed("alice")
    with pytest.raises(UserLocked):
        users.begin("alice")
    users.succeeded("alice")
    assert users.get("alice").failures == 0  # type: ignore[union-attr]
    users.begin("alice")


def test_unknown_names_pass_and_store_nothing(users: Users, store: Store) -> None:
    users.add("alice", "reader", PASSWORD)
    for _ in range(MAX_FAILURES + 2):
        users.begin("mallory")
        users.failed("mallory")
    users.succeeded("mallory")
    assert [u.name for u in users.list()] == ["alice"]
    assert store.read(lambda c: c.execute("SELECT count(*) FROM users").fetchone()[0]) == 1
    assert users.get("alice").failures == 0  # type: ignore[union-attr]
    # invalid names too (the server refuses their hello anyway)
    users.begin("Not A Name")
    users.failed("Not A Name")


def test_a_clock_that_went_back_does_not_shorten_the_wait(users: Users, clock: FakeClock) -> None:
    users.add("alice", "reader", PASSWORD)
    for _ in range(5):
        users.failed("alice")
    clock.advance(-3600)
    with pytest.raises(UserLocked) as exc:
        users.begin("alice")
    assert exc.value.retry_after == pytest.approx(backoff(5))


def test_the_failure_count_survives_reopening_the_state(state: Path) -> None:
    clock = FakeClock()
    device, users = device_users(state, clock)
    try:
        users.add("alice", "operator", PASSWORD, [("oem", "info")])
        for _ in range(5):
            users.failed("alice")
    finally:
        close(device)
    device, users = device_users(state, clock)
    try:
        assert users.get("alice").failures == 5  # type: ignore[union-attr]
        with pytest.raises(UserLocked) as exc:
            users.begin("alice")
        assert exc.value.retry_after == pytest.approx(backoff(5))
        for _ in range(MAX_FAILURES - 5):
            users.failed("alice")
    finally:
        close(device)
    device, users = device_users(state, clock)
    try:
        assert users.get("alice").locked  # type: ignore[union-attr]
        assert users.get("root").role == "admin"  # type: ignore[union-attr]
        login(users, "root", PASSWORD)
    finally:
        close(device)


# --- sealed rows --------------------------------------------------------------------------------


def edit_db(state: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(state / "tre.db")
    try:
        with conn:
            conn.execute(sql, params)
    finally:
        conn.close()


def test_a_flipped_byte_makes_that_user_unreadable(
    state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    device, users = device_users(state)
    try:
        users.add("alice", "reader", PASSWORD, [("oem", "info")])
        users.add("bob", "operator", PASSWORD)
    finally:
        close(device)
    ((sealed,),) = db_rows(state, "SELECT sealed FROM users WHERE name = 'alice'")
    flipped = bytearray(sealed)
    flipped[5] ^= 0x01
    edit_db(state, "UPDATE users SET sealed = ? WHERE name = 'alice'", bytes(flipped))
    device, users = device_users(state)
    try:
        with pytest.raises(UserUnreadable) as exc:
            users.get("alice")
        assert exc.value.code == "USER_UNREADABLE" and isinstance(exc.value, UserError)
        with pytest.raises(UserUnreadable):
            users.verifier("alice")
        with pytest.raises(UserUnreadable):
            users.passwd("alice", PASSWORD)
        with pytest.raises(UserUnreadable):
            users.set_grants("alice", [])
        with caplog.at_level(logging.WARNING, logger="tre.users"):
            assert [u.name for u in users.list()] == ["bob", "root"]
        assert "alice" in caplog.text
        assert users.unreadable() == ["alice"]
        login(users, "bob", PASSWORD)  # the others are unaffected
        users.remove("alice")  # an admin can clear it
        users.add("alice", "reader", PASSWORD)
        login(users, "alice", PASSWORD)
    finally:
        close(device)


def test_a_row_moved_to_another_name_does_not_open(state: Path) -> None:
    device, users = device_users(state)
    try:
        users.add("mallory", "reader", "mallory's password", [("oem", "info")])
        users.add("bob", "reader", PASSWORD)
    finally:
        close(device)
    ((nonce, sealed),) = db_rows(state, "SELECT nonce, sealed FROM users WHERE name = 'root'")
    # mallory copies the admin's row onto her own name, and her own row onto root's
    edit_db(state, "UPDATE users SET nonce = ?, sealed = ? WHERE name = 'mallory'", nonce, sealed)
    device, users = device_users(state)
    try:
        with pytest.raises(UserUnreadable):
            users.get("mallory")
        with pytest.raises(ipc.TREError):
            login(users, "mallory", PASSWORD)
        assert users.get("root").role == "admin"  # type: ignore[union-attr]
        assert users.get("bob").role == "reader"  # type: ignore[union-attr]
    finally:
        close(device)


def test_another_device_key_opens_nothing(users: Users, store: Store) -> None:
    users.add("alice", "admin", PASSWORD)
    other = Users(store, bytes(32))
    assert other.list() == [] and other.unreadable() == ["alice"]
    with pytest.raises(UserUnreadable):
        other.get("alice")


def test_no_verifier_in_lists_reprs_or_rows(users: Users, store: Store) -> None:
    users.add("alice", "operator", PASSWORD, [("oem", "info")])
    verifier = users.verifier("alice")
    assert verifier is not None
    texts = [repr(users), repr(users.list()), str(users.list()), repr(users.get("alice"))]
    texts.append(repr(store.read(lambda c: c.execute("SELECT * FROM users").fetchall())))
    joined = "\n".join(texts)
    for secret in (verifier.stored_key, verifier.server_key, verifier.salt):
        for form in secret_forms(secret):
            assert form not in joined
    assert PASSWORD not in joined
    assert not hasattr(users.get("alice"), "verifier")


# --- roles and grants ---------------------------------------------------------------------------


CONFIG = TREConfig(
    host=HostPolicy(
        calls={"oem": frozenset({"info", "time"}), "mno": frozenset({"status", "enable"})},
        readonly=frozenset({("oem", "info"), ("mno", "status")}),
    )
)


def user(role: str, *grants: tuple[str, str]) -> User:
    return User("u", role, frozenset(grants), 0, False, 0.0)


def test_may_call_follows_the_roles() -> None:
    admin = user("admin")
    operator = user("operator", ("oem", "time"), ("mno", "enable"), ("vault", "get"))
    reader = user("reader", ("oem", "info"), ("mno", "enable"))
    pairs = [("oem", "info"), ("oem", "time"), ("mno", "status"), ("mno", "enable")]
    assert [may_call(admin, d, m, CONFIG) for d, m in pairs] == [True] * 4
    assert [may_call(operator, d, m, CONFIG) for d, m in pairs] == [False, True, False, True]
    # a reader's grant outside [host] readonly is refused at call time too
    assert [may_call(reader, d, m, CONFIG) for d, m in pairs] == [True, False, False, False]
    # nobody calls outside [host] calls, whatever the grants say
    for who in (admin, operator, reader):
        assert not may_call(who, "vault", "get", CONFIG)
        assert not may_call(who, "oem", "secret", CONFIG)
    assert not may_call(user("ghost", ("oem", "info")), "oem", "info", CONFIG)


def test_check_grants_against_the_config() -> None:
    check_grants("operator", [("oem", "time"), ("mno", "enable")], CONFIG)
    check_grants("reader", [("oem", "info"), ("mno", "status")], CONFIG)
    check_grants("admin", [], CONFIG)
    with pytest.raises(UserError, match="readonly"):
        check_grants("reader", [("mno", "enable")], CONFIG)
    with pytest.raises(UserError, match="host"):
        check_grants("operator", [("vault", "get")], CONFIG)
    with pytest.raises(UserError, match="admin"):
        check_grants("admin", [("oem", "info")], CONFIG)
    with pytest.raises(UserError):
        check_grants("root", [], CONFIG)


def test_parse_grant() -> None:
    assert parse_grant("oem.info") == ("oem", "info")
    assert parse_grant("my-domain.get_x") == ("my-domain", "get_x")
    for bad in ("oem", ".info", "oem.", "OEM.info", "oem.info.x", "oem info", ""):
        with pytest.raises(UserError):
            parse_grant(bad)


def test_roles_and_exports() -> None:
    assert ROLES == ("admin", "operator", "reader")
    assert UserError.code == "USER"
    assert issubclass(UserLocked, ipc.AuthFailed)
    assert tre.UserError is UserError and tre.UserLocked is UserLocked
