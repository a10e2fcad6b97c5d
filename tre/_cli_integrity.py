"""``tre integrity seal|status``: the code-base integrity reference and its checks."""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path
from typing import Any

from ._cli_json import print_json
from ._device import DB_FILE
from ._errors import StorageError
from ._integrity import TRE_SCOPE, manifest_path
from ._integrity_seal import seal_state

__all__ = ["add_integrity_commands"]


def cmd_seal(args: argparse.Namespace) -> int:
    result = seal_state(Path(args.state), Path(args.factory))
    print(
        f"integrity manifests signed: the TRE ({result['tre_files']} files) and "
        f"{len(result['domains'])} domains "
        f"({', '.join(f'{d} by {w}' for d, w in sorted(result['domains'].items()))})"
    )
    return 0


def read_integrity_status(state_dir: Path) -> dict[str, Any]:
    db = state_dir / DB_FILE
    if not db.is_file():
        raise StorageError(f"{state_dir} is not a provisioned TRE state (no {DB_FILE})")
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT kind, time, result, detail FROM integrity_checks ORDER BY kind"
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{db} cannot be read as a TRE database: {exc}") from None
    manifests = sorted(p.stem for p in (state_dir / "integrity" / "domains").glob("*.json"))
    return {
        "state_dir": str(state_dir),
        "tre_manifest": manifest_path(state_dir, TRE_SCOPE).exists(),
        "domain_manifests": manifests,
        "checks": {
            kind: {"time": t, "result": result, "detail": [d for d in detail.split("\n") if d]}
            for kind, t, result, detail in rows
        },
    }


def cmd_status(args: argparse.Namespace) -> int:
    status = read_integrity_status(Path(args.state))
    if args.json:
        print_json(status)
        return 0
    print(
        f"manifests: TRE {'present' if status['tre_manifest'] else 'MISSING'}, "
        f"domains: {', '.join(status['domain_manifests']) or 'none'}"
    )
    if not status["checks"]:
        print("no check has run yet (the first runs at the next boot)")
    for kind, check in status["checks"].items():
        print(f"{kind:<14} {check['result']:<9} at {check['time']:.0f}")
        for line in check["detail"]:
            print(f"    {line}")
    return 0


def add_integrity_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("integrity", help="the signed code-base reference and its checks")
    isub = p.add_subparsers(dest="integrity_command", metavar="ACTION", parser_class=parser_class)
    isub.required = True
    ps = isub.add_parser("seal", help="measure and sign the integrity manifests (factory)")
    ps.add_argument("--state", metavar="DIR", required=True, help="the device's state folder")
    ps.add_argument("--factory", metavar="DIR", required=True, help="the factory's keys")
    ps.set_defaults(func=cmd_seal)
    pt = isub.add_parser("status", help="the last check of each kind, its time and result")
    pt.add_argument("--state", metavar="DIR", required=True, help="the device's state folder")
    pt.add_argument("--json", action="store_true", help="print the status as JSON")
    pt.set_defaults(func=cmd_status)
