"""``tre install|remove|transfer``: domains after provisioning (see tre/_install.py).

Each runs on a state folder while no TRE runs on it (the state's lock says so otherwise).
A package or transfer the device refuses exits with status 3 and one line
``tre: error: <CODE>: <message>`` (an :class:`attestation.UpdateError` code, or
``INSTALL_REFUSED``); unreadable files and bad usage exit 2, like every command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import attestation

from ._cli_json import print_json, refuse
from ._cli_package import read_bundle
from ._errors import InstallRefused
from ._install import install_package, remove_domain, transfer_domain

__all__ = ["add_install_commands"]


def _report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    if result.get("target") == "tre":
        print(
            f"authorised the installed TRE code: counter {result['previous_counter']} -> "
            f"{result['counter']}, {result['files']} files; the TRE's integrity reference now"
        )
        return
    print(
        f"{result['action']} domain {result['domain']}: counter {result['counter']}, "
        f"svn {result['svn']}, {result['files']} files, owner key {result['owner_key'][:16]}..."
    )
    print(
        f"  keys: {result['keys_kept']} kept, {result['keys_migrated']} migrated, "
        f"{result['keys_erased']} erased; it runs from the next boot"
    )


def cmd_install(args: argparse.Namespace) -> int:
    envelope, files = read_bundle(Path(args.package))
    try:
        result = install_package(Path(args.state), envelope, files, domain=args.domain)
    except (attestation.UpdateError, InstallRefused) as exc:
        return refuse(exc)
    _report(result, args.json)
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    envelope, files = read_bundle(Path(args.package))
    try:
        result = transfer_domain(Path(args.state), args.domain, envelope, files)
    except (attestation.UpdateError, InstallRefused) as exc:
        return refuse(exc)
    _report(result, args.json)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    try:
        result = remove_domain(Path(args.state), args.domain)
    except InstallRefused as exc:
        return refuse(exc)
    if args.json:
        print_json(result)
    else:
        print(f"removed domain {args.domain}: {result['keys_erased']} keys crypto-erased")
    return 0


def add_install_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("install", help="install or update a domain from a signed package")
    p.add_argument("--state", metavar="DIR", required=True, help="the device's state folder")
    p.add_argument("--domain", metavar="ID", help="refuse the package unless it targets ID")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.add_argument("package", metavar="PACKAGE", help="a package file (tre package build/sign)")
    p.set_defaults(func=cmd_install)
    p = sub.add_parser("remove", help="remove a domain and crypto-erase its keystore")
    p.add_argument("--state", metavar="DIR", required=True, help="the device's state folder")
    p.add_argument("--domain", metavar="ID", required=True, help="the domain to remove")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.set_defaults(func=cmd_remove)
    p = sub.add_parser(
        "transfer", help="give a domain to a new owner (package signed by old and new owner)"
    )
    p.add_argument("--state", metavar="DIR", required=True, help="the device's state folder")
    p.add_argument("--domain", metavar="ID", required=True, help="the domain to transfer")
    p.add_argument("--package", metavar="FILE", required=True, help="the transfer package")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.set_defaults(func=cmd_transfer)
