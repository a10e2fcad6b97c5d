"""Bytecode caches that Python would run instead of the measured source.

Python imports ``__pycache__/<module>.<tag>.pyc`` without reading the source whenever the
cache file's header matches the source (its size and modification time, or, for a
hash-based cache file, its hash; an unchecked hash-based file always). The integrity check
measures sources, so a cache file planted with a matching header would run code nobody
measured. :func:`bytecode_mismatches` finds, under a root, every cache file that *this*
interpreter would use (its cache tag and optimisation level, ``sys.pycache_prefix``
honoured) and whose code differs from what the source compiles to. Code objects are
compared, not bytes (``marshal`` output is not stable across runs); a stale cache file
whose header no longer matches the source is not used by Python and is not a mismatch.

Compiling costs: each (cache file, source) pair found equal is remembered for the life of
the process, so only the first check after a cache file or a source changes compiles.
"""

from __future__ import annotations

import hashlib
import importlib.util
import marshal
import os
from pathlib import Path

from ._measure import code_files

__all__ = ["bytecode_mismatches"]

_HEADER = 16
_VERIFIED: set[tuple[bytes, bytes]] = set()  # (sha256 of cache file, sha256 of source)


def _would_be_used(header: bytes, source: bytes, stat: os.stat_result) -> bool:
    flags = int.from_bytes(header[4:8], "little")
    if flags & 0b1:  # hash-based
        if not flags & 0b10:  # unchecked: always used
            return True
        return header[8:16] == importlib.util.source_hash(source)
    mtime = int.from_bytes(header[8:12], "little")
    size = int.from_bytes(header[12:16], "little")
    return mtime == int(stat.st_mtime) & 0xFFFFFFFF and size == stat.st_size & 0xFFFFFFFF


def _matches(path: Path, cache: bytes, source: bytes) -> bool:
    key = (hashlib.sha256(cache).digest(), hashlib.sha256(source).digest())
    if key in _VERIFIED:
        return True
    try:
        # marshal is not hardened against crafted input, but this is a file Python itself
        # would load and run: reading it here adds no exposure (and only fails closed).
        cached = marshal.loads(cache[_HEADER:])  # noqa: S302
        compiled = compile(source, str(path), "exec", dont_inherit=True)
    except (ValueError, EOFError, TypeError, SyntaxError):
        return False  # a cache file that does not load, for a source that does not compile
    if cached != compiled:
        return False
    _VERIFIED.add(key)
    return True


def bytecode_mismatches(root: Path) -> list[str]:
    """Relative paths (as :func:`code_files` names them) of the sources under ``root``
    whose cache file this interpreter would run instead, and which differ from them."""
    bad = []
    magic = importlib.util.MAGIC_NUMBER
    for rel, path in code_files(root):
        if path.suffix != ".py" or path.is_symlink():
            continue
        try:
            cache_path = Path(importlib.util.cache_from_source(str(path)))
            cache = cache_path.read_bytes()
        except (OSError, NotImplementedError, ValueError):
            continue  # no cache file (or no caching at all): the source runs
        try:
            source = path.read_bytes()
            stat = path.stat()
        except OSError:
            continue  # the measurement reports a vanished source
        if len(cache) < _HEADER or cache[:4] != magic:
            continue  # not for this interpreter: Python ignores it
        if _would_be_used(cache[:_HEADER], source, stat) and not _matches(path, cache, source):
            bad.append(rel)
    return bad
