"""``tre call --socket PATH --user NAME DOMAIN METHOD [JSON-ARGS]``: the host-side client.

The password comes from the environment variable ``TRE_PASSWORD`` (for scripts) or a
prompt, never from the command line. The result is printed as JSON (bytes as
``{"hex": "..."}``). Exit status: 0 answered; 3 the TRE refused (login failed, locked out,
not granted, denied by policy, an error answered by the domain); 2 bad usage or an
unreachable socket.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import ipc

from ._cli_json import print_json, refuse
from ._cli_user import read_password
from ._errors import ConfigError
from ._hostclient import HostClient

__all__ = ["add_call_commands", "from_json", "to_json"]


def from_json(value: Any) -> Any:
    """JSON -> msgpack-able: ``{"hex": "..."}`` (the only key) becomes bytes."""
    if isinstance(value, dict):
        if set(value) == {"hex"} and isinstance(value["hex"], str):
            return bytes.fromhex(value["hex"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def to_json(value: Any) -> Any:
    """The reverse of :func:`from_json`, for printing a result."""
    if isinstance(value, bytes | bytearray):
        return {"hex": bytes(value).hex()}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def cmd_call(args: argparse.Namespace) -> int:
    if not ipc.USER_RE.fullmatch(args.user):
        raise ConfigError("<command line>", "--user", f"{args.user!r} is not a user name")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ConfigError("<command line>", "--timeout", "must be a positive number of seconds")
    body = None
    if args.args is not None:
        try:
            body = from_json(json.loads(args.args))
        except (ValueError, TypeError) as exc:
            raise ConfigError("<command line>", "JSON-ARGS", f"not valid JSON: {exc}") from None
    password = read_password(f"password for {args.user}: ")
    try:
        client = HostClient(args.socket, timeout=args.timeout)
    except OSError as exc:
        raise ConfigError(args.socket, "", f"cannot connect: {exc.strerror or exc}") from None
    with client:
        try:
            client.login(args.user, password)
            result = client.call(args.domain, args.method, body)
        except ipc.InvalidFrame:
            raise
        except ipc.TREError as exc:
            return refuse(exc)
        except (OSError, ConnectionError) as exc:
            raise ConfigError(args.socket, "", f"connection failed: {exc}") from None
    print_json(to_json(result))
    return 0


def add_call_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("call", help="call a domain through a running TRE's host socket")
    p.add_argument("--socket", metavar="PATH", required=True, help="the socket of tre run")
    p.add_argument("--user", metavar="NAME", required=True, help="the user to log in as")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("method", metavar="METHOD")
    p.add_argument(
        "args", metavar="JSON-ARGS", nargs="?", help='the body as JSON; bytes as {"hex": "..."}'
    )
    p.set_defaults(func=cmd_call)
