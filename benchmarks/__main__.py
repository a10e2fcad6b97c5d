"""``python -m benchmarks SCENARIO [options]``: run one benchmark scenario.

Progress lines go to stderr, the result table to stdout, ``--json FILE`` writes the figures.
``python -m benchmarks SCENARIO --help`` lists a scenario's options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import _attest, _audit, _host, _integrity, _ipc, _keystore, _mid

#: scenario name -> (one-line description, main(argv, prog) -> exit status)
SCENARIOS: dict[str, tuple[str, Callable[[Sequence[str], str], int]]] = {
    "ipc": _ipc.SCENARIO,
    "keystore": _keystore.SCENARIO,
    "attest": _attest.SCENARIO,
    "integrity": _integrity.SCENARIO,
    "audit": _audit.SCENARIO,
    "mid": _mid.SCENARIO,
    "host": _host.SCENARIO,
}


def _top_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:10} {desc}" for name, (desc, _) in SCENARIOS.items())
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="The tre benchmark harness.",
        epilog=f"scenarios:\n{listing}\n\n'python -m benchmarks SCENARIO --help' for its options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", choices=sorted(SCENARIOS), help="the scenario to run")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the scenario's options")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _top_parser()
    if not args or args[0] in ("-h", "--help"):
        parser.print_help(sys.stdout if args else sys.stderr)
        return 0 if args else 2
    name, rest = args[0], args[1:]
    entry = SCENARIOS.get(name)
    if entry is None:
        known = ", ".join(sorted(SCENARIOS))
        print(f"benchmarks: unknown scenario {name!r} (known: {known})", file=sys.stderr)
        return 2
    return entry[1](rest, f"python -m benchmarks {name}")


if __name__ == "__main__":
    sys.exit(main())
