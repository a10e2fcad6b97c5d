"""The device commands of the ``tre`` CLI: factory, provision, status, tamper, terminate.

Nothing here prints a secret: the device secret and private keys are only ever written
to files of mode 0600.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import trio

from ._cli_json import print_json
from ._cli_root import count_arg
from ._cli_user import read_password
from ._config import default_config, load_config
from ._device import Device
from ._endoflife import tamper, terminate_state
from ._errors import ConfigError
from ._factory import factory_init
from ._provision import provision
from ._status import read_status
from ._users import check_name

__all__ = ["add_device_commands"]


def cmd_factory_init(args: argparse.Namespace) -> int:
    if args.root_threshold > args.root_keys:
        raise ConfigError(
            "<command line>", "--root-threshold", f"must not exceed --root-keys ({args.root_keys})"
        )
    factory = factory_init(
        Path(args.factory), root_keys=args.root_keys, root_threshold=args.root_threshold
    )
    print(f"manufacturer CA: {factory.path / 'ca.pem'} (key {factory.path / 'ca.key'}, mode 0600)")
    for owner in sorted(factory.owners):
        print(f"owner key: {factory.path / 'owners' / (owner + '.key')} (+ .pub)")
    print(
        f"root of trust: {factory.root_dir / '1.cbor'} (v1, {args.root_threshold} of "
        f"{args.root_keys} keys in {factory.root_dir / 'keys'}, mode 0600)"
    )
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    config = default_config() if args.config is None else load_config(args.config)
    password = None
    if args.admin is not None:
        check_name(args.admin)
        password = read_password(f"password for the admin {args.admin}: ", confirm=True)
    result = provision(
        Path(args.state),
        Path(args.factory),
        imei=args.imei,
        config=config,
        admin=args.admin,
        admin_password=password,
    )
    if args.json:
        print_json(result)
    else:
        print(f"provisioned {args.state}: UEID {result['ueid']}")
        print(f"  DeviceID certificate: {Path(args.state) / 'device.pem'}")
        print(f"  domains installed: {', '.join(result['domains'])}")
        if args.admin is not None:
            print(f"  admin: {args.admin} (tre user ... to add more users)")
        print("  lifecycle: secured")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = read_status(Path(args.state))
    if args.json:
        print_json(status)
        return 0
    print(f"state:      {status['state_dir']}")
    print(f"UEID:       {status['ueid']}" + (f" (IMEI {status['imei']})" if status["imei"] else ""))
    print(f"lifecycle:  {status['lifecycle']}")
    print(f"boot count: {status['boot_count']}")
    if status["root_version"] is not None:
        print(f"root:       v{status['root_version']}")
    print("domains:")
    for d in status["domains"]:
        signed = "owner key" if d["owner_key"] else "unsigned owner"
        if d["counter"]:
            signed += f", package {d['counter']}"
        print(
            f"  {d['id']:<8} {d['state']:<9} svn {d['svn']:<3} keys {d['keys']:<3} "
            f"measurement {d['measurement'][:16]}...  ({signed})"
        )
    return 0


def cmd_tamper(args: argparse.Namespace) -> int:
    async def run() -> list[str]:
        device = await Device.open(Path(args.state))
        try:
            return await tamper(device, None if args.all else args.domain, "tamper reported")
        finally:
            await device.close()

    locked = trio.run(run)
    what = "the whole TRE" if args.all else f"domain {args.domain}"
    print(f"tamper response: {what} locked ({', '.join(locked)})")
    return 0


def cmd_terminate(args: argparse.Namespace) -> int:
    if not args.yes and sys.stdin.isatty():
        answer = input(f"Terminate the device in {args.state}? This cannot be undone. [type yes] ")
        if answer.strip() != "yes":
            print("tre: not terminated", file=sys.stderr)
            return 1

    outcome = terminate_state(Path(args.state))
    print(f"terminated {args.state}: the device secret and every key are erased ({outcome})")
    return 0


def add_device_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Register the device commands on the ``tre`` subparsers."""

    def state_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state", metavar="DIR", required=True, help="the device's state folder")

    p = sub.add_parser("factory", help="the manufacturer's out-of-band facility")
    fsub = p.add_subparsers(dest="factory_command", metavar="ACTION", parser_class=parser_class)
    fsub.required = True
    fi = fsub.add_parser(
        "init", help="create a manufacturer CA, the reference owner keys and root v1"
    )
    fi.add_argument("--factory", metavar="DIR", required=True, help="folder to create them in")
    fi.add_argument(
        "--root-keys", type=count_arg, default=3, metavar="N", help="root keys (default 3)"
    )
    fi.add_argument(
        "--root-threshold",
        type=count_arg,
        default=2,
        metavar="K",
        help="root keys that must sign (default 2)",
    )
    fi.set_defaults(func=cmd_factory_init)

    p = sub.add_parser("provision", help="create a device: secret, DeviceID, domains")
    state_opt(p)
    p.add_argument("--factory", metavar="DIR", required=True, help="a folder from 'factory init'")
    p.add_argument("--imei", metavar="15DIGITS", help="platform identity (UEID from the IMEI)")
    p.add_argument("--config", metavar="FILE", help="domains to install (default: reference)")
    p.add_argument(
        "--admin",
        metavar="NAME",
        help="create the first admin user (password from TRE_PASSWORD or asked twice)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_provision)

    p = sub.add_parser("status", help="identity, lifecycle, boot count and domains of a device")
    state_opt(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("tamper", help="report a detected attack: lock a domain or the TRE")
    state_opt(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--domain", metavar="ID", help="lock this domain")
    which.add_argument("--all", action="store_true", help="lock the whole TRE")
    p.set_defaults(func=cmd_tamper)

    p = sub.add_parser("terminate", help="erase the device secret and all keys (irreversible)")
    state_opt(p)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_terminate)
