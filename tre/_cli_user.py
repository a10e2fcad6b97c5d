"""``tre user add|remove|list|passwd|grant``: the users of the host interface (tre/_users.py).

Each opens the state folder offline, under the state's lock: stop the TRE to manage users
(a running TRE holds the lock, so these refuse with StateBusy; it would not see the change).
Passwords are read by :func:`read_password`: from ``TRE_PASSWORD`` when set (for scripts),
otherwise from the terminal without echo; never from the command line, never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import hmac
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ._cli_json import print_json
from ._config import TREConfig
from ._device import Device
from ._users import (
    MAX_FAILURES,
    ROLES,
    User,
    UserError,
    Users,
    check_grants,
    check_name,
    check_password,
    format_grant,
    parse_grant,
    users_key,
)

__all__ = ["PASSWORD_ENV", "add_user_commands", "open_users", "read_password"]

#: The environment variable a script sets to give a password without a terminal.
PASSWORD_ENV = "TRE_PASSWORD"  # noqa: S105 - the variable's name, not a password


def read_password(prompt: str, *, confirm: bool = False) -> str:
    """A password from ``TRE_PASSWORD`` if set, else typed on the terminal (twice when
    ``confirm``). UserError for an empty password, two that differ, or none at all."""
    given = os.environ.get(PASSWORD_ENV)
    if given is not None:
        if not given:
            raise UserError(f"{PASSWORD_ENV} is set but empty: refusing an empty password")
        check_password(given)
        return given
    try:
        password = getpass.getpass(prompt)
        if not password:
            raise UserError("refusing an empty password")
        if confirm:
            again = getpass.getpass("the same password again: ")
            same = hmac.compare_digest(
                password.encode("utf-8", "surrogatepass"), again.encode("utf-8", "surrogatepass")
            )
            if not same:
                raise UserError("the two passwords differ")
    except (EOFError, KeyboardInterrupt):
        raise UserError("no password given") from None
    check_password(password)
    return password


@contextlib.contextmanager
def open_users(state_dir: Path) -> Iterator[tuple[Users, TREConfig]]:
    """The users of the device in ``state_dir`` and its config, under the state's lock
    (StateBusy while a TRE runs on it); the store is closed on the way out."""
    with Device.offline(state_dir, "manage users") as device:
        yield Users(device.store.sync, users_key(device)), device.config


def _grants_text(user: User) -> str:
    if user.role == "admin":
        return "(every [host] call)"
    return ", ".join(format_grant(p) for p in sorted(user.grants)) or "-"


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


# --- commands ---------------------------------------------------------------------------


def cmd_user_add(args: argparse.Namespace) -> int:
    name = check_name(args.name)
    grants = [parse_grant(g) for g in args.grant]
    with open_users(Path(args.state)) as (users, config):
        check_grants(args.role, grants, config)
        if users.get(name) is not None:
            raise UserError(f"user {name!r} exists")
        password = read_password(f"password for {name}: ", confirm=True)
        user = users.add(name, args.role, password, grants)
    print(f"added user {user.name} ({user.role}): {_grants_text(user)}")
    return 0


def cmd_user_remove(args: argparse.Namespace) -> int:
    name = check_name(args.name)
    with open_users(Path(args.state)) as (users, _config):
        users.remove(name)
    print(f"removed user {name}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    with open_users(Path(args.state)) as (users, _config):
        listed = users.list()
        broken = [(n, users.failures(n)) for n in users.unreadable()]
    entries: list[dict[str, Any]] = [
        {
            "name": u.name,
            "role": u.role,
            "grants": [format_grant(p) for p in sorted(u.grants)],
            "failures": u.failures,
            "locked": u.locked,
            "created": u.created,
            "unreadable": False,
        }
        for u in listed
    ]
    entries += [
        {
            "name": n,
            "role": None,
            "grants": [],
            "failures": failures,
            "locked": failures >= MAX_FAILURES,
            "created": None,
            "unreadable": True,
        }
        for n, failures in broken
    ]
    entries.sort(key=lambda e: str(e["name"]))
    if args.json:
        print_json(entries)
        return 0
    if not entries:
        print("no users (add one with 'tre user add')")
        return 0
    by_name = {u.name: u for u in listed}
    rows = []
    for e in entries:
        user = by_name.get(e["name"])
        if user is None:
            locked = "yes" if e["locked"] else "no"
            rows.append([e["name"], "?", "(record does not open)", str(e["failures"]), locked])
        else:
            locked = "yes" if user.locked else "no"
            rows.append([user.name, user.role, _grants_text(user), str(user.failures), locked])
    print(_table(rows, ["name", "role", "grants", "failures", "locked"]))
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    name = check_name(args.name)
    with open_users(Path(args.state)) as (users, _config):
        if users.get(name) is None:
            raise UserError(f"no user {name!r}")
        password = read_password(f"new password for {name}: ", confirm=True)
        users.passwd(name, password)
    print(f"changed the password of {name} (failed logins cleared, unlocked)")
    return 0


def cmd_user_grant(args: argparse.Namespace) -> int:
    name = check_name(args.name)
    grants = [parse_grant(g) for g in args.grants]
    with open_users(Path(args.state)) as (users, config):
        user = users.get(name)
        if user is None:
            raise UserError(f"no user {name!r}")
        check_grants(user.role, grants, config)
        user = users.set_grants(name, grants)
    print(f"{user.name} ({user.role}) may call: {_grants_text(user)}")
    return 0


def add_user_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Register ``tre user ...`` on the ``tre`` subparsers."""
    p = sub.add_parser(
        "user", help="users of the host interface: roles, grants, passwords (TRE stopped)"
    )
    usub = p.add_subparsers(dest="user_command", metavar="ACTION", parser_class=parser_class)
    usub.required = True

    def common(q: argparse.ArgumentParser, name: bool = True) -> None:
        q.add_argument("--state", metavar="DIR", required=True, help="the device's state folder")
        if name:
            q.add_argument("name", metavar="NAME", help="the user name")

    q = usub.add_parser(
        "add",
        help="add a user (password from TRE_PASSWORD or asked twice)",
        description="Add a user. The password comes from TRE_PASSWORD if set, otherwise it "
        "is asked twice on the terminal. Grants must be in the config's [host] calls, and a "
        "reader's in [host] readonly; an admin takes none.",
    )
    common(q)
    q.add_argument("--role", required=True, choices=ROLES, help="admin, operator or reader")
    q.add_argument(
        "--grant",
        action="extend",
        nargs="+",
        default=[],
        metavar="DOMAIN.METHOD",
        help="a call the user may make (repeatable)",
    )
    q.set_defaults(func=cmd_user_add)

    q = usub.add_parser("remove", help="remove a user")
    common(q)
    q.set_defaults(func=cmd_user_remove)

    q = usub.add_parser("list", help="users, roles, grants, failed logins (never a verifier)")
    common(q, name=False)
    q.add_argument("--json", action="store_true", help="print the users as JSON")
    q.set_defaults(func=cmd_user_list)

    q = usub.add_parser(
        "passwd", help="set a user's password (TRE_PASSWORD or asked twice); also unlocks"
    )
    common(q)
    q.set_defaults(func=cmd_user_passwd)

    q = usub.add_parser(
        "grant",
        help="replace a user's grants (none given: no grants)",
        description="Replace the user's grants with the DOMAIN.METHOD pairs given (none: the "
        "user keeps no grant). The same checks as 'tre user add --grant'.",
    )
    common(q)
    q.add_argument("grants", nargs="*", metavar="DOMAIN.METHOD", help="the calls it may make")
    q.set_defaults(func=cmd_user_grant)
