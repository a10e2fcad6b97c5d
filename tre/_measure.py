"""Measuring code: which files make up the TRE and each domain, and their hashes.

The hashing itself is pure (:func:`attestation.hash_files`); this module only decides which
files count and reads them. A domain's code is every file of its folder (the package of an
entry-point plugin, or the folder of a folder plugin), caches excluded; a domain built in
code by a test has no folder, so its class's source file stands in. The TRE's own code is
every file of the ``tre``, ``ipc`` and ``attestation`` packages as installed.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs
import msgpack

import attestation
import ipc

from ._loader import DomainSpec

__all__ = [
    "code_files",
    "domain_code_hash",
    "file_digests",
    "manifest_hash",
    "read_tree",
    "tre_code_hash",
    "tre_roots",
    "unsigned_owner_hash",
]

_SKIP_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"})


def code_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of every file under ``root`` that counts as code, sorted.

    A symbolic link (to a file or a folder) is listed as itself and never followed: see
    :func:`read_code`. Bytecode *caches* (``__pycache__`` folders) are left out: Python
    rewrites them; the integrity check compares the ones Python would run with their
    sources instead (tre/_bytecode.py). A ``.pyc`` file anywhere else is a sourceless
    module that Python imports, so it is code and it is measured.
    """
    found: list[tuple[str, Path]] = []
    for folder, dirs, files in os.walk(root):
        base = Path(folder)
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        for name in [*files, *(d for d in dirs if (base / d).is_symlink())]:
            path = base / name
            found.append((path.relative_to(root).as_posix(), path))
    found.sort()
    return iter(found)


def read_code(path: Path) -> bytes:
    """A code file's bytes; a symbolic link is measured as its target's name, so that a
    link added, removed or re-pointed is a change (the files it leads to are not read)."""
    if path.is_symlink():
        return b"symlink:" + os.fsencode(os.readlink(path))
    return path.read_bytes()


def _hash_tree(root: Path) -> bytes:
    return attestation.hash_files((rel, read_code(path)) for rel, path in code_files(root))


def domain_code_hash(spec: DomainSpec) -> bytes:
    folder = spec.manifest.directory
    if folder is not None:
        return _hash_tree(folder)
    source = inspect.getsourcefile(spec.cls)
    if source is None:  # pragma: no cover - classes always come from a file here
        return attestation.hash_files([])
    return attestation.hash_files([(Path(source).name, Path(source).read_bytes())])


def manifest_hash(spec: DomainSpec) -> bytes:
    """SHA-256 of the ``domain.toml`` bytes, or of a canonical encoding of a manifest that
    was built in code."""
    m = spec.manifest
    if m.directory is not None:
        return hashlib.sha256(Path(m.path).read_bytes()).digest()

    def canon(value: object) -> object:
        if isinstance(value, frozenset):
            return sorted(value)
        if isinstance(value, dict):
            return {k: canon(v) for k, v in sorted(value.items())}
        return value

    fields = {k: canon(v) for k, v in attrs.asdict(m, recurse=True).items() if k != "path"}
    return hashlib.sha256(msgpack.packb(fields, use_bin_type=True)).digest()


def unsigned_owner_hash(owner: str) -> bytes:
    """The owner hash of a domain installed without an owner key (a label, not a key)."""
    return hashlib.sha256(b"tre/v1/unsigned-owner/" + owner.encode()).digest()


def tre_roots() -> dict[str, Path]:
    """The folders of the TRE's own code as installed: the tre, ipc and attestation packages."""
    return {
        "attestation": Path(attestation.__file__ or "").parent,
        "ipc": Path(ipc.__file__ or "").parent,
        "tre": Path(__file__).parent,
    }


def read_tree(roots: Mapping[str, Path]) -> list[tuple[str, bytes]]:
    """(``name/relative path``, contents) of every code file under each named root."""
    files: list[tuple[str, bytes]] = []
    for name, root in sorted(roots.items()):
        files += [(f"{name}/{rel}", read_code(path)) for rel, path in code_files(root)]
    return files


def file_digests(files: list[tuple[str, bytes]]) -> dict[str, bytes]:
    """Path -> SHA-256 of the contents: what an integrity manifest lists."""
    return {path: hashlib.sha256(data).digest() for path, data in files}


def tre_code_hash(roots: Mapping[str, Path] | None = None) -> bytes:
    """The measurement of the TRE's own code: every file of tre, ipc and attestation."""
    return attestation.hash_files(read_tree(roots or tre_roots()))
