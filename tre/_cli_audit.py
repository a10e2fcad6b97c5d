"""The audit commands of the ``tre`` CLI: show, checkpoint, prove, verify.

All of them read the state folder without booting it (tre/_audit_offline.py), so they
work on a running device too. Only ``show --domain`` reads entries' contents, and only
that domain's; ``verify`` checks the MAC chain when the device secret is there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from ._audit_offline import open_audit_state
from ._cli_json import print_json

__all__ = ["add_audit_commands"]


def _when(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat(timespec="milliseconds")


def _detail(body: Any) -> str:
    if isinstance(body, dict) and "detail" in body:
        subject = body.get("subject")
        prefix = f"[{subject}] " if subject not in (None, "tre") else ""
        return prefix + str(body["detail"])
    return json.dumps(body, default=str)


def cmd_show(args: argparse.Namespace) -> int:
    with open_audit_state(Path(args.state)) as state:
        cps = state.checkpoints()
        latest = cps[-1] if cps else None
        summary = {
            "entries": state.size,
            "checkpoints": len(cps),
            "latest_checkpoint": None
            if latest is None
            else {"size": latest.size, "root": latest.root.hex(), "time": latest.time},
        }
        if args.domain is None:
            entries = state.public_entries()
        else:
            entries = [
                {"seq": e.seq, "time": e.time, "domain": e.domain, "kind": e.kind, "body": e.body}
                for e in state.read(args.domain)
            ]
    if args.json:
        print_json({**summary, "domain": args.domain, "entries": entries})
        return 0
    head = f"audit log: {summary['entries']} entries, {summary['checkpoints']} checkpoints"
    if latest is not None:
        head += f"; latest checkpoint: size {latest.size}, root {latest.root.hex()[:16]}..."
    print(head)
    if args.domain is None:
        for e in entries:
            print(
                f"{e['seq']:>6}  {_when(e['time'])}  {e['domain']:<8} {e['kind']:<14} {e['leaf']}"
            )
    else:
        print(f"entries of {args.domain!r} ({len(entries)}):")
        for e in entries:
            print(f"{e['seq']:>6}  {_when(e['time'])}  {e['kind']:<14} {_detail(e['body'])}")
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    with open_audit_state(Path(args.state)) as state:
        cp = state.latest()
        if not cp.verify(state.public, state.ueid):
            print("tre: the latest checkpoint's signature does not verify", file=sys.stderr)
            return 1
        Path(args.out).write_text(cp.to_json(state.ueid, state.cert_pem), encoding="utf-8")
    print(f"checkpoint: size {cp.size}, root {cp.root.hex()} -> {args.out}")
    return 0


def cmd_prove(args: argparse.Namespace) -> int:
    with open_audit_state(Path(args.state)) as state:
        if args.index is not None:
            proof = state.prove_inclusion(args.index)
        else:
            proof = state.prove_consistency(state.load_pinned(Path(args.pinned_from)))
    data = {"kind": proof.kind, "verified": proof.verified, **proof.data}
    if args.json:
        print_json(data)
    else:
        d = proof.data
        if proof.kind == "inclusion":
            print(f"inclusion of entry {d['index']} (leaf {d['leaf'][:16]}...) in the tree of")
            print(f"  checkpoint size {d['size']}, root {d['root']}")
        else:
            print(f"consistency of checkpoint size {d['old_size']} (root {d['old_root'][:16]}...)")
            print(f"  with checkpoint size {d['new_size']}, root {d['new_root']}")
        print(f"  proof: {len(d['proof'])} hashes")
        for h in d["proof"]:
            print(f"    {h}")
        print("  verified" if proof.verified else "  NOT verified")
    return 0 if proof.verified else 1


def cmd_verify(args: argparse.Namespace) -> int:
    with open_audit_state(Path(args.state)) as state:
        pinned = None if args.pinned is None else state.load_pinned(Path(args.pinned))
        result = state.verify(pinned, public_only=args.public)
        secret = state.keys is not None
    if not result.ok:
        more = len(result.problems) - 1
        extra = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
        print(f"tre: audit log NOT verified: {result.problems[0]}{extra}", file=sys.stderr)
        return 1
    what = "MAC chain checked" if result.mac_checked else "public structure only"
    if not result.mac_checked and not args.public and not secret:
        what += " (no device secret: the MAC chain was not checked)"
    pin = f", consistent with the pinned checkpoint of size {pinned.size}" if pinned else ""
    print(
        f"audit log: {result.entries} entries, {result.checkpoints} checkpoints, "
        f"verified ({what}{pin})"
    )
    return 0


def add_audit_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Register ``tre audit ...`` on the ``tre`` subparsers."""
    p = sub.add_parser("audit", help="the secure audit record: show, prove, verify")
    asub = p.add_subparsers(dest="audit_command", metavar="ACTION", parser_class=parser_class)
    asub.required = True

    def state_opt(q: argparse.ArgumentParser) -> None:
        q.add_argument("--state", metavar="DIR", required=True, help="the device's state folder")

    q = asub.add_parser("show", help="entries: public structure, or one domain's contents")
    state_opt(q)
    q.add_argument(
        "--domain", metavar="ID", help="decrypt this domain's entries ('tre': TRE-wide ones)"
    )
    q.add_argument("--json", action="store_true", help="print as JSON")
    q.set_defaults(func=cmd_show)

    q = asub.add_parser("checkpoint", help="write the latest signed checkpoint to a file")
    state_opt(q)
    q.add_argument("--out", metavar="FILE", required=True, help="where to write it (JSON)")
    q.set_defaults(func=cmd_checkpoint)

    q = asub.add_parser("prove", help="an inclusion or a consistency proof, verified")
    state_opt(q)
    which = q.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--index", type=_index, metavar="N", help="entry N in the latest checkpoint's tree"
    )
    which.add_argument(
        "--from",
        dest="pinned_from",
        metavar="FILE",
        help="from this checkpoint file to the latest checkpoint",
    )
    q.add_argument("--json", action="store_true", help="print the proof as JSON")
    q.set_defaults(func=cmd_prove)

    q = asub.add_parser("verify", help="check the whole log; exit 0 only if it is intact")
    state_opt(q)
    q.add_argument("--pinned", metavar="FILE", help="also require consistency with it")
    q.add_argument(
        "--public", action="store_true", help="check only what needs no secret (an auditor)"
    )
    q.set_defaults(func=cmd_verify)


def _index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an entry number (0, 1, 2, ...)")
    return value
