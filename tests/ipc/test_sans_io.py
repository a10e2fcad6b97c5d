"""ipc and attestation stay sans-I/O: they never import trio or any I/O machinery.

Checked twice: at run time (a fresh interpreter imports both packages, then lists
sys.modules, so transitive imports by our dependencies count too) and statically (an AST
scan of every source file, so an import hidden in a rarely-run function is caught too).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ipc", "attestation")
FORBIDDEN = frozenset({"trio", "socket", "asyncio", "selectors", "sqlite3"})


def is_forbidden(module: str) -> bool:
    return module.split(".", 1)[0] in FORBIDDEN


def test_forbidden_names() -> None:
    assert is_forbidden("trio") and is_forbidden("trio.lowlevel") and is_forbidden("asyncio.tasks")
    assert not is_forbidden("trio_websocket_like") and not is_forbidden("msgpack")


def test_importing_the_packages_loads_no_io_modules() -> None:
    code = (
        f"import json, sys\nimport {', '.join(PACKAGES)}\nprint(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    loaded = json.loads(result.stdout)
    assert set(PACKAGES) <= set(loaded)
    offenders = sorted(m for m in loaded if is_forbidden(m))
    assert offenders == []


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) for every import statement and literal __import__/import_module call."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in {"__import__", "import_module"} and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((node.lineno, arg.value))
    return found


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_sources_import_no_io_modules(package: str) -> None:
    sources = _sources(package)
    assert sources, f"no sources found for {package}"
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sources
        for line, module in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if is_forbidden(module)
    ]
    assert offenders == []


def test_the_scanner_catches_imports() -> None:
    tree = ast.parse(
        "import trio\n"
        "import os, socket as s\n"
        "from asyncio import sleep\n"
        "from trio.lowlevel import current_task\n"
        "from . import sibling\n"
        "def f():\n"
        "    import selectors\n"
        "    __import__('sqlite3')\n"
        "    importlib.import_module('trio')\n"
    )
    modules = sorted(m for _, m in _imports(tree) if is_forbidden(m))
    assert modules == ["asyncio", "selectors", "socket", "sqlite3", "trio", "trio", "trio.lowlevel"]
