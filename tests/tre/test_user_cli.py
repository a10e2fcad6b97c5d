"""``tre user ...`` and ``tre provision --admin``: users managed offline on a state folder."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import ipc
import tre
from tests.device_helpers import acli, assert_one_line_error, cli, make_factory, secret_forms
from tre._cli_user import open_users, read_password
from tre._users import MAX_FAILURES, UserError, Users

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_factory(tmp_path_factory.mktemp("factory") / "factory")


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TRE_PASSWORD", PASSWORD)
    return PASSWORD


@pytest.fixture
def state(tmp_path: Path, factory: Path, password: str, capsys: pytest.CaptureFixture[str]) -> Path:
    folder = tmp_path / "dev"
    code, _out, err = cli(
        capsys, "provision", "--state", folder, "--factory", factory, "--admin", "root"
    )
    assert code == 0, err
    return folder


def users_json(capsys: pytest.CaptureFixture[str], state: Path) -> list[dict[str, Any]]:
    code, out, err = cli(capsys, "user", "list", "--state", state, "--json")
    assert code == 0, err
    data: list[dict[str, Any]] = json.loads(out)
    return data


def login(state: Path, name: str, password: str) -> None:
    with open_users(state) as (users, _config):
        client = ipc.ClientAuth(name, password)
        server = ipc.ServerAuth(client.hello(), users.verifier(name))
        client.check(server.verify(client.answer(server.challenge())))


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """No TRE_PASSWORD: getpass answers from the list this yields (and records prompts)."""
    monkeypatch.delenv("TRE_PASSWORD", raising=False)
    answers: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        if not answers:
            raise EOFError
        return answers.pop(0)

    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    yield answers


# --- provision --admin --------------------------------------------------------------------


def test_provision_admin_creates_the_first_admin(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (entry,) = users_json(capsys, state)
    assert entry["name"] == "root" and entry["role"] == "admin"
    assert entry["grants"] == [] and entry["failures"] == 0 and entry["locked"] is False
    login(state, "root", PASSWORD)


def test_provision_admin_json_and_text(
    tmp_path: Path, factory: Path, password: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(
        capsys, "provision", "--state", tmp_path / "a", "--factory", factory, "--admin", "boss",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["admin"] == "boss"
    code, out, err = cli(capsys, "provision", "--state", tmp_path / "b", "--factory", factory)
    assert code == 0, err
    code, out, err = cli(capsys, "user", "list", "--state", tmp_path / "b")
    assert code == 0 and "no users" in out
    for text in (out, err):
        assert PASSWORD not in text


@pytest.mark.parametrize("name", ["Root", "1root", "a" * 33])
def test_provision_admin_with_a_bad_name_creates_nothing(
    tmp_path: Path, factory: Path, password: str, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    folder = tmp_path / "dev"
    code, out, err = cli(
        capsys, "provision", "--state", folder, "--factory", factory, "--admin", name
    )
    assert_one_line_error(code, out, err, "user name")
    assert not folder.exists()


def test_a_failed_admin_removes_the_whole_provisioning(
    tmp_path: Path,
    factory: Path,
    password: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise UserError("the disk is on fire")

    monkeypatch.setattr(Users, "add", broken)
    folder = tmp_path / "dev"
    code, out, err = cli(
        capsys, "provision", "--state", folder, "--factory", factory, "--admin", "root"
    )
    assert_one_line_error(code, out, err, "on fire")
    assert not folder.exists()
    folder.mkdir()  # into an existing empty folder: it stays, empty
    code, out, err = cli(
        capsys, "provision", "--state", folder, "--factory", factory, "--admin", "root"
    )
    assert code == 2
    assert list(folder.iterdir()) == []


def test_provision_api_needs_name_and_password_together(tmp_path: Path, factory: Path) -> None:
    from tre._provision import provision

    with pytest.raises(tre.ProvisioningError):
        provision(tmp_path / "a", factory, admin="root")
    with pytest.raises(tre.ProvisioningError):
        provision(tmp_path / "b", factory, admin_password=PASSWORD)
    with pytest.raises(UserError):
        provision(tmp_path / "c", factory, admin="root", admin_password="")
    assert not any((tmp_path / n).exists() for n in "abc")


def test_provision_admin_asks_twice(
    tmp_path: Path, factory: Path, no_env: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "dev"
    no_env += ["one password", "another"]
    code, out, err = cli(
        capsys, "provision", "--state", folder, "--factory", factory, "--admin", "root"
    )
    assert_one_line_error(code, out, err, "differ")
    assert "one password" not in err and not folder.exists()
    no_env += ["same", "same"]
    code, out, err = cli(
        capsys, "provision", "--state", folder, "--factory", factory, "--admin", "root"
    )
    assert code == 0, err
    login(folder, "root", "same")


# --- tre user ... ---------------------------------------------------------------------------------


def test_add_list_grant_passwd_remove(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(
        capsys, "user", "add", "--state", state, "olive", "--role", "operator",
        "--grant", "mno.enable", "oem.time", "--grant", "meter.backup",
    )  # fmt: skip
    assert code == 0, err
    assert "olive (operator)" in out and "mno.enable" in out
    code, out, err = cli(
        capsys, "user", "add", "--state", state, "rita", "--role", "reader", "--grant", "oem.info"
    )
    assert code == 0, err
    entries = {e["name"]: e for e in users_json(capsys, state)}
    assert set(entries) == {"olive", "rita", "root"}
    assert entries["olive"]["grants"] == ["meter.backup", "mno.enable", "oem.time"]
    assert entries["rita"] == {
        "name": "rita",
        "role": "reader",
        "grants": ["oem.info"],
        "failures": 0,
        "locked": False,
        "created": entries["rita"]["created"],
        "unreadable": False,
    }
    code, out, err = cli(capsys, "user", "list", "--state", state)
    assert code == 0 and "olive" in out and "operator" in out and "meter.backup" in out
    # grant replaces the grants
    code, out, err = cli(capsys, "user", "grant", "--state", state, "rita", "oem.time", "mno.mids")
    assert code == 0, err
    assert users_json(capsys, state)[1]["grants"] == ["mno.mids", "oem.time"]
    code, out, err = cli(capsys, "user", "grant", "--state", state, "rita")
    assert code == 0, err
    assert users_json(capsys, state)[1]["grants"] == []
    login(state, "rita", PASSWORD)
    # passwd
    code, out, err = cli(capsys, "user", "passwd", "--state", state, "rita")
    assert code == 0, err
    login(state, "rita", PASSWORD)
    # remove
    code, out, err = cli(capsys, "user", "remove", "--state", state, "rita")
    assert code == 0, err
    assert [e["name"] for e in users_json(capsys, state)] == ["olive", "root"]


def test_passwd_sets_the_new_password_and_unlocks(
    state: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli(capsys, "user", "add", "--state", state, "olive", "--role", "operator")
    with open_users(state) as (users, _config):
        for _ in range(MAX_FAILURES):
            users.failed("olive")
    (olive,) = [e for e in users_json(capsys, state) if e["name"] == "olive"]
    assert olive["locked"] is True and olive["failures"] == MAX_FAILURES
    code, out, err = cli(capsys, "user", "list", "--state", state)
    assert "yes" in out
    monkeypatch.setenv("TRE_PASSWORD", "a new one")
    code, out, err = cli(capsys, "user", "passwd", "--state", state, "olive")
    assert code == 0, err
    (olive,) = [e for e in users_json(capsys, state) if e["name"] == "olive"]
    assert olive["locked"] is False and olive["failures"] == 0
    login(state, "olive", "a new one")
    with pytest.raises(ipc.AuthFailed):
        login(state, "olive", PASSWORD)


def test_a_reader_is_refused_a_grant_outside_readonly(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(
        capsys, "user", "add", "--state", state, "rita", "--role", "reader", "--grant", "mno.enable"
    )
    assert_one_line_error(code, out, err, "mno.enable", "readonly")
    assert [e["name"] for e in users_json(capsys, state)] == ["root"]
    cli(capsys, "user", "add", "--state", state, "rita", "--role", "reader")
    code, out, err = cli(
        capsys, "user", "grant", "--state", state, "rita", "oem.info", "mno.delete"
    )
    assert_one_line_error(code, out, err, "mno.delete", "readonly")
    (rita,) = [e for e in users_json(capsys, state) if e["name"] == "rita"]
    assert rita["grants"] == []


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["add", "op", "--role", "operator", "--grant", "vault.get"], "host] calls"),
        (["add", "op", "--role", "operator", "--grant", "oem"], "DOMAIN.METHOD"),
        (["add", "adm", "--role", "admin", "--grant", "oem.info"], "no grants"),
        (["add", "root", "--role", "reader"], "exists"),
        (["add", "Bad", "--role", "reader"], "user name"),
        (["remove", "nobody"], "no user"),
        (["passwd", "nobody"], "no user"),
        (["grant", "nobody", "oem.info"], "no user"),
    ],
)
def test_refusals_are_one_line(
    state: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = cli(capsys, "user", argv[0], "--state", state, *argv[1:])
    assert_one_line_error(code, out, err, fragment)
    assert [e["name"] for e in users_json(capsys, state)] == ["root"]


@pytest.mark.parametrize(
    "argv",
    [
        ["user"],
        ["user", "add", "--state", "x", "bob"],  # no --role
        ["user", "add", "--state", "x", "bob", "--role", "root"],
        ["user", "add", "bob", "--role", "reader"],  # no --state
        ["user", "list", "--state", "x", "extra"],
        ["user", "frobnicate"],
        ["user", "add", "--state", "x", "bob", "--role", "reader", "--password", "pw"],
    ],
)
def test_bad_usage_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = cli(capsys, *argv)
    assert_one_line_error(code, out, err)


@pytest.mark.parametrize("action", ["add", "remove", "list", "passwd", "grant"])
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], action: str) -> None:
    code, out, _err = cli(capsys, "user", action, "--help")
    assert code == 0 and "--state" in out
    code, out, _ = cli(capsys, "user", "--help")
    assert code == 0 and action in out


def test_no_verifier_or_password_in_any_output(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = []
    commands: list[list[str | Path]] = [
        ["add", "--state", state, "olive", "--role", "operator", "--grant", "oem.info"],
        ["list", "--state", state],
        ["list", "--state", state, "--json"],
        ["grant", "--state", state, "olive", "oem.time"],
        ["passwd", "--state", state, "olive"],
    ]
    for argv in commands:
        code, out, err = cli(capsys, "user", *argv)
        assert code == 0, err
        outputs.append(out + err)
    joined = "\n".join(outputs)
    with open_users(state) as (users, _config):
        secrets = [v for n in ("olive", "root") if (v := users.verifier(n)) is not None]
    for verifier in secrets:
        for secret in (verifier.stored_key, verifier.server_key, verifier.salt):
            for form in secret_forms(secret):
                assert form not in joined
    assert PASSWORD not in joined


def test_an_unreadable_user_is_listed_as_such(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    cli(capsys, "user", "add", "--state", state, "olive", "--role", "operator")
    conn = sqlite3.connect(state / "tre.db")
    with conn:
        conn.execute("UPDATE users SET sealed = zeroblob(64) WHERE name = 'olive'")
    conn.close()
    entries = {e["name"]: e for e in users_json(capsys, state)}
    assert entries["olive"]["unreadable"] is True and entries["olive"]["role"] is None
    assert entries["root"]["unreadable"] is False
    code, out, err = cli(capsys, "user", "list", "--state", state)
    assert code == 0 and "does not open" in out
    code, out, err = cli(capsys, "user", "passwd", "--state", state, "olive")
    assert_one_line_error(code, out, err, "olive", "remove")
    code, out, err = cli(capsys, "user", "remove", "--state", state, "olive")
    assert code == 0, err


# --- passwords --------------------------------------------------------------------------------


def test_read_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRE_PASSWORD", "from env")
    assert read_password("pw: ", confirm=True) == "from env"
    monkeypatch.setenv("TRE_PASSWORD", "")
    with pytest.raises(UserError, match="empty"):
        read_password("pw: ")
    monkeypatch.setenv("TRE_PASSWORD", "x" * 1025)
    with pytest.raises(UserError) as exc:
        read_password("pw: ")
    assert "xxxx" not in str(exc.value)


def test_read_password_from_the_terminal(no_env: list[str]) -> None:
    no_env += ["typed"]
    assert read_password("pw: ") == "typed"
    no_env += ["typed", "typed"]
    assert read_password("pw: ", confirm=True) == "typed"
    no_env += ["typed", "typo"]
    with pytest.raises(UserError, match="differ") as exc:
        read_password("pw: ", confirm=True)
    assert "typ" not in str(exc.value)
    no_env += [""]
    with pytest.raises(UserError, match="empty"):
        read_password("pw: ")
    with pytest.raises(UserError, match="no password"):
        read_password("pw: ")  # end of input


def test_an_empty_environment_password_is_refused_by_the_cli(
    state: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRE_PASSWORD", "")
    code, out, err = cli(capsys, "user", "add", "--state", state, "olive", "--role", "reader")
    assert_one_line_error(code, out, err, "empty")
    assert [e["name"] for e in users_json(capsys, state)] == ["root"]


# --- never beside a running TRE ---------------------------------------------------------------


async def test_users_cannot_be_managed_while_a_tre_runs(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(60):
        async with tre.open_tre(state=state):
            commands: list[list[str | Path]] = [
                ["add", "--state", state, "olive", "--role", "reader"],
                ["list", "--state", state],
                ["passwd", "--state", state, "root"],
                ["remove", "--state", state, "root"],
                ["grant", "--state", state, "root"],
            ]
            for argv in commands:
                code, out, err = await acli(capsys, "user", *argv)
                assert_one_line_error(code, out, err, "in use", "manage users")
            with pytest.raises(tre.StateBusy), open_users(state):
                pass
    code, out, err = await acli(capsys, "user", "list", "--state", state, "--json")
    assert code == 0 and [e["name"] for e in json.loads(out)] == ["root"]
