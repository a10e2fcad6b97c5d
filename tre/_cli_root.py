"""``tre root new|rotate|show``: the TUF-style root role (see tre/_root.py).

``new`` runs at the factory (it needs a threshold of the root keys), ``rotate`` and ``show``
on a device's state folder. A root the device refuses exits with status 3 and one line
``tre: error: <CODE>: <message>`` (the :class:`attestation.UpdateError` code); unreadable
files and bad usage exit 2, like every command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

import attestation

from ._cli_json import days_arg, print_json, refuse
from ._errors import ConfigError
from ._factory import MAX_ROOT_KEYS, ROOT_VALIDITY_DAYS, write_new_file
from ._root import new_root, read_root, rotate_state

__all__ = ["add_root_commands", "count_arg", "root_summary"]

CMDLINE = "<command line>"


def count_arg(text: str) -> int:
    """argparse type: a number of root keys or a threshold, 1..16."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_ROOT_KEYS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in 1..{MAX_ROOT_KEYS}")
    return value


def _public_key(spec: str) -> tuple[str, bytes]:
    """``ID=PUBFILE`` -> (domain id, raw Ed25519 public key)."""
    domain, sep, path = spec.partition("=")
    if not sep or not domain or not path:
        raise ConfigError(CMDLINE, "--owner", f"{spec!r} is not ID=PUBFILE")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from None
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(path, "", "is not an Ed25519 public key (PEM)")
    return domain, key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _read_root_file(path: str) -> bytes:
    """At most one byte more than an envelope may have (the verifier refuses larger)."""
    try:
        with open(path, "rb") as f:
            return f.read(attestation.MAX_ENVELOPE_SIZE + 1)
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from None


def _when(stamp: int) -> str:
    try:
        return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"unix {stamp}"


def root_summary(root: attestation.Root) -> dict[str, Any]:
    """What a root says, for people and ``--json``: key ids, never key material."""
    return {
        "version": root.version,
        "expires": root.expires,
        "threshold": root.role.threshold,
        "keys": sorted(attestation.key_id(k) for k in root.role.keys),
        "owners": {
            domain: {
                "threshold": role.threshold,
                "keys": sorted(attestation.key_id(k) for k in role.keys),
            }
            for domain, role in sorted(root.owners.items())
        },
    }


def cmd_new(args: argparse.Namespace) -> int:
    owners: dict[str, bytes] = {}
    for spec in args.owner:
        domain, raw = _public_key(spec)
        if domain in owners:
            raise ConfigError(CMDLINE, "--owner", f"{domain!r} is given twice")
        owners[domain] = raw
    if args.out is not None:
        out = Path(args.out)
        if not out.parent.is_dir():
            raise ConfigError(args.out, "", "its folder does not exist")
        if out.exists() or out.is_symlink():  # checked before anything is made
            raise ConfigError(args.out, "", "exists (the copy never overwrites a file)")
    path = new_root(
        Path(args.factory),
        add_owners=owners,
        drop_owners=args.drop_owner,
        new_keys=args.keys,
        threshold=args.threshold,
        expires_days=args.expires_days,
    )
    envelope = path.read_bytes()
    root = attestation.trusted_root(envelope)
    if args.out is not None:
        write_new_file(Path(args.out), envelope)  # O_EXCL: never over another file
    where = path if args.out is None else f"{path} (copy: {args.out})"
    print(
        f"root v{root.version}: {where}, {root.role.threshold} of {len(root.role.keys)} keys, "
        f"{len(root.owners)} owners, expires {_when(root.expires)}"
    )
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    envelope = _read_root_file(args.root)
    try:
        root = rotate_state(Path(args.state), envelope, int(time.time()))
    except attestation.UpdateError as exc:
        return refuse(exc)
    print(f"root rotated: v{root.version - 1} -> v{root.version} (expires {_when(root.expires)})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    summary = root_summary(read_root(Path(args.state)))
    if args.json:
        print_json(summary)
        return 0
    print(
        f"root v{summary['version']}, expires {_when(summary['expires'])}, "
        f"threshold {summary['threshold']} of {len(summary['keys'])} keys"
    )
    for kid in summary["keys"]:
        print(f"  key {kid}")
    print("owners:" if summary["owners"] else "owners: none")
    for domain, owner in summary["owners"].items():
        kids = ", ".join(kid[:16] + "..." for kid in owner["keys"])
        print(f"  {domain:<8} {owner['threshold']} of {len(owner['keys'])}: {kids}")
    return 0


def add_root_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("root", help="the root of trust for updates (TUF-style root role)")
    rsub = p.add_subparsers(dest="root_command", metavar="ACTION", parser_class=parser_class)
    rsub.required = True

    rn = rsub.add_parser("new", help="make the factory's next root (version N+1)")
    rn.add_argument("--factory", metavar="DIR", required=True, help="a folder from 'factory init'")
    rn.add_argument(
        "--owner",
        metavar="ID=PUBFILE",
        action="append",
        default=[],
        help="delegate domain ID to this Ed25519 public key (PEM); replaces its owner",
    )
    rn.add_argument(
        "--drop-owner", metavar="ID", action="append", default=[], help="delegate ID no more"
    )
    rn.add_argument("--keys", type=count_arg, metavar="N", help="fresh root keys (default: keep)")
    rn.add_argument("--threshold", type=count_arg, metavar="K", help="keys needed (default: keep)")
    rn.add_argument(
        "--expires-days",
        type=days_arg,
        default=float(ROOT_VALIDITY_DAYS),
        metavar="D",
        help=f"validity (default {ROOT_VALIDITY_DAYS})",
    )
    rn.add_argument("--out", metavar="FILE", help="also write a copy of the root here")
    rn.set_defaults(func=cmd_new)

    rr = rsub.add_parser("rotate", help="move a device to the next root (exit 3 if refused)")
    rr.add_argument("--state", metavar="DIR", required=True, help="the device's state folder")
    rr.add_argument("root", metavar="ROOTFILE", help="root N+1 (from 'tre root new')")
    rr.set_defaults(func=cmd_rotate)

    rs = rsub.add_parser("show", help="the root a device trusts")
    rs.add_argument("--state", metavar="DIR", required=True, help="the device's state folder")
    rs.add_argument("--json", action="store_true", help="print it as JSON")
    rs.set_defaults(func=cmd_show)
