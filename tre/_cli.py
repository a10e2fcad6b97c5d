"""The ``tre`` command line.

Every command has ``--help``. Bad usage and bad configuration exit with status 2 and one
line on stderr; ``--json`` prints data for scripts wherever the output is data.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

import trio

from ._cli_attest import add_attest_commands
from ._cli_audit import add_audit_commands
from ._cli_call import add_call_commands
from ._cli_device import add_device_commands
from ._cli_install import add_install_commands
from ._cli_integrity import add_integrity_commands
from ._cli_json import print_json
from ._cli_mid import add_mid_commands
from ._cli_package import add_package_commands
from ._cli_root import add_root_commands
from ._cli_user import add_user_commands
from ._config import TREConfig, default_config, load_config
from ._errors import TREError
from ._hostserver import ServerLimits
from ._loader import DomainSpec, resolve
from ._policy import Policy

__all__ = ["main"]


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _config(path: str | None) -> TREConfig:
    return default_config() if path is None else load_config(path)


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return "\n".join(lines)


def _manifest_dict(spec: DomainSpec) -> dict[str, Any]:
    m = spec.manifest
    return {
        "id": m.id,
        "owner": m.owner,
        "version": m.version,
        "svn": m.svn,
        "entry": m.entry,
        "path": m.path,
        "isolated": m.isolated,
        "boot_order": m.boot_order,
        "default_deadline": m.default_deadline,
        "services": {k: sorted(v) for k, v in sorted(m.services.items())},
        "calls": {k: sorted(v) for k, v in sorted(m.calls.items())},
        "quotas": {
            "max_frame_bytes": m.quotas.max_frame_bytes,
            "inbox_depth": m.quotas.inbox_depth,
            "max_outstanding": m.quotas.max_outstanding,
            "calls_per_second": m.quotas.calls_per_second,
            "burst": m.quotas.burst,
            "concurrency": m.quotas.concurrency,
        },
        "abort": {
            "action": m.abort.action,
            "max_restarts": m.abort.max_restarts,
            "period": m.abort.period,
        },
    }


# --- commands ---------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(interval=args.interval)


def cmd_domains(args: argparse.Namespace) -> int:
    specs = resolve(_config(args.config))
    if args.json:
        print_json([_manifest_dict(s) for s in specs])
        return 0
    rows = []
    for s in specs:
        m = s.manifest
        offers = "isolated" if m.isolated else ", ".join(sorted(m.services)) or "-"
        calls = ", ".join(f"{d}.{x}" for d, ms in sorted(m.calls.items()) for x in sorted(ms))
        rows.append([m.id, m.owner, m.version, str(m.svn), str(m.boot_order), offers, calls or "-"])
    print(_table(rows, ["id", "owner", "version", "svn", "boot", "services", "calls"]))
    return 0


def _print_ports(policy: Policy) -> None:
    """The ports section of ``tre policy show``: each declared port, who may open it, and
    the claims and grants that are refused."""
    entries = policy.port_matrix()
    if not policy.ports and not entries:
        return
    if policy.ports:
        print("\nDevice ports (may open: claims it and is granted it; '-' = nobody):\n")
        rows = [
            [
                name,
                "exclusive" if spec.exclusive else "shared",
                ", ".join(sorted(policy.port_access[name])) or "-",
            ]
            for name, spec in sorted(policy.ports.items())
        ]
        print(_table(rows, ["port", "mode", "may open"]))
    else:
        print("\nDevice ports: the config declares none.")
    refused = [(d, p, x) for d, p, x in entries if not x.allowed]
    if refused:
        print("\nClaimed or granted but refused:")
        for domain, port, decision in refused:
            print(f"  {domain} -> port {port}: {decision.code} ({decision.reason})")


def _ports_json(policy: Policy) -> dict[str, Any]:
    return {
        "declared": [
            {
                "port": name,
                "exclusive": spec.exclusive,
                "granted": sorted(spec.domains),
                "domains": sorted(policy.port_access[name]),
            }
            for name, spec in sorted(policy.ports.items())
        ],
        "entries": [
            {"domain": d, "port": p, "decision": x.code, "reason": x.reason}
            for d, p, x in policy.port_matrix()
        ],
    }


def cmd_policy_show(args: argparse.Namespace) -> int:
    config = _config(args.config)
    specs = resolve(config)
    policy = Policy.compile((s.manifest for s in specs), config.host.calls, ports=config.ports)
    entries = policy.matrix()
    if args.json:
        print_json(
            {
                "digest": policy.digest(),
                "isolated": sorted(policy.isolated),
                "entries": [
                    {"caller": a, "callee": b, "method": m, "decision": d.code, "reason": d.reason}
                    for a, b, m, d in entries
                ],
                "ports": _ports_json(policy),
            }
        )
        return 0
    callees = sorted(policy.offered)
    grid = []
    for caller in policy.callers():
        row = [caller]
        for callee in callees:
            methods = sorted(m for a, b, m in policy.edges if a == caller and b == callee)
            row.append(",".join(methods) if methods else ".")
        grid.append(row)
    print("Who may call what (rows call columns; '.' = no channel):\n")
    print(_table(grid, ["caller \\ callee", *callees]))
    refused = [(a, b, m, d) for a, b, m, d in entries if not d.allowed]
    if refused:
        print("\nDeclared or offered but refused:")
        for a, b, m, d in refused:
            print(f"  {a} -> {b}.{m}: {d.code} ({d.reason})")
    if policy.isolated:
        print(f"\nIsolated domains: {', '.join(sorted(policy.isolated))}")
    _print_ports(policy)
    print(f"\npolicy digest: {policy.digest()}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ._runtime import open_tre

    if args.state is not None and args.config is not None:
        raise _UsageError("give --state or --config, not both (a state has its own config)")
    config = None if args.state is not None else _config(args.config)
    if args.socket is not None and args.state is None:
        raise _UsageError("--socket needs --state (users live in a provisioned device)")
    try:
        socket_mode = int(args.socket_mode, 8)
    except ValueError:
        socket_mode = -1
    if not 0 <= socket_mode <= 0o777 or socket_mode & 0o600 != 0o600:
        raise _UsageError("--socket-mode must be octal permissions including 600, e.g. 660")

    async def run() -> dict[str, Any]:
        async with open_tre(config, state=args.state) as t, trio.open_nursery() as nursery:
            name = t.config.name
            device = t.device
            print(
                f"tre: {name}: {len(t.domains())} domains booted "
                f"in {t.boot_seconds * 1000:.1f} ms (boot {device.boot_count}, "
                f"{device.lifecycle})",
                file=sys.stderr,
            )
            if args.socket is not None:
                serve = functools.partial(
                    t.serve_host, Path(args.socket), limits=ServerLimits(mode=socket_mode)
                )
                path = await nursery.start(serve)
                print(f"tre: serving the host interface on {path}", file=sys.stderr)
            try:
                if args.duration is None:
                    await trio.sleep_forever()
                await trio.sleep(args.duration)
                nursery.cancel_scope.cancel()
            finally:
                summary = {
                    "name": name,
                    "device": vars_of(device),
                    "domains": [vars_of(d) for d in t.domains()],
                    "events": [vars_of(e) for e in t.events],
                }
        return summary

    try:
        summary = trio.run(run)
    except KeyboardInterrupt:
        print("tre: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print_json(summary)
    else:
        rows = [
            [d["id"], d["state"], str(d["generation"]), str(d["served"]), str(d["faults"])]
            for d in summary["domains"]
        ]
        print(_table(rows, ["domain", "state", "generation", "served", "faults"]))
    return 0


def vars_of(obj: Any) -> dict[str, Any]:
    import attrs

    return attrs.asdict(obj)


# --- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tre",
        description="A model of the 3GPP TR 33.812 Trusted Environment with isolated "
        "stakeholder domains.",
    )
    try:
        version = metadata.version("tre")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        version = "unknown"
    parser.add_argument("--version", action="version", version=f"tre {version}")
    parser.add_argument(
        "--log-level",
        default="error",
        choices=["debug", "info", "warning", "error"],
        help="log level on stderr (default: error)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def config_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", metavar="FILE", help="TRE config (default: the embedded one)")

    p = sub.add_parser("demo", help="boot the reference domains and show them at work")
    p.add_argument("--interval", type=float, default=0.1, help="meter sampling interval (s)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="boot a TRE and keep it running")
    config_opt(p)
    p.add_argument("--state", metavar="DIR", help="boot the device provisioned in DIR")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--json", action="store_true", help="print the closing summary as JSON")
    p.add_argument(
        "--socket",
        metavar="PATH",
        help="serve the host interface on a Unix socket (needs --state)",
    )
    p.add_argument(
        "--socket-mode",
        metavar="OCTAL",
        default="600",
        help="permissions of the socket file (default 600: its owner only)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("domains", help="list the domains a config boots (their manifests)")
    config_opt(p)
    p.add_argument("--json", action="store_true", help="print the manifests as JSON")
    p.set_defaults(func=cmd_domains)

    p = sub.add_parser("policy", help="inspect the compiled security policy")
    psub = p.add_subparsers(dest="policy_command", metavar="ACTION", parser_class=_Parser)
    psub.required = True
    ps = psub.add_parser("show", help="the matrix of who may call what, and the device ports")
    config_opt(ps)
    ps.add_argument("--json", action="store_true", help="print every decision as JSON")
    ps.set_defaults(func=cmd_policy_show)
    add_device_commands(sub, _Parser)
    add_attest_commands(sub, _Parser)
    add_audit_commands(sub, _Parser)
    add_integrity_commands(sub, _Parser)
    add_package_commands(sub, _Parser)
    add_install_commands(sub, _Parser)
    add_call_commands(sub, _Parser)
    add_root_commands(sub, _Parser)
    add_mid_commands(sub, _Parser)
    add_user_commands(sub, _Parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "duration", None) is not None and args.duration < 0:
            raise _UsageError("--duration must not be negative")
        if getattr(args, "interval", 1.0) <= 0:
            raise _UsageError("--interval must be positive")
        logging.basicConfig(
            level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
        )
        return int(args.func(args))
    except _UsageError as exc:
        print(f"tre: error: {exc}", file=sys.stderr)
        return 2
    except TREError as exc:
        print(f"tre: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # e.g. `tre status --json | head`
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1
        where = f": {exc.filename}" if exc.filename else ""
        print(f"tre: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
