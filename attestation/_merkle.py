"""Merkle trees as RFC 9162 (Certificate Transparency 2.0) section 2.1 defines them, sans-I/O.

Hashes are SHA-256. A tree of ``n`` leaves (``MTH``, section 2.1.1)::

    MTH({})      = SHA-256()                                  the empty tree
    MTH({d0})    = SHA-256(0x00 || d0)                        a leaf (leaf_hash)
    MTH(D[n])    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))  node_hash, where k is the
                                                               largest power of two < n

The functions that build proofs work over a :class:`NodeStore`: anything that answers
``subtree(level, index)``, the hash of the *complete* subtree of ``2**level`` leaves that
starts at leaf ``index * 2**level`` (level 0 is the leaf hashes). Every subtree of the RFC
recursion is a run of such complete subtrees (the range starts at a multiple of its
largest power-of-two part), so a root, an inclusion proof or a consistency proof costs
O(log n) store lookups and hashes, however large the tree. A log that stores each complete
subtree when its last leaf arrives (:func:`append_leaf` says which) can answer any of them.

The two verifiers follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step; they return
``False`` for any proof that does not hold (inspect; the caller names the problem).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MemoryNodeStore",
    "NodeStore",
    "append_leaf",
    "complete_subtrees",
    "consistency_proof",
    "frontier_root",
    "inclusion_proof",
    "leaf_hash",
    "load_frontier",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
#: MTH({}) = SHA-256 of the empty string (RFC 9162 section 2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()


class NodeStore(Protocol):
    """Hashes of complete subtrees: ``subtree(level, index)`` covers leaves
    ``[index * 2**level, (index + 1) * 2**level)``. Raises (e.g. ``KeyError``) for a
    subtree it does not hold."""

    def subtree(self, level: int, index: int) -> bytes: ...


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_hash(store: NodeStore, start: int, length: int) -> bytes:
    """MTH(D[start:start+length]) for a range of the RFC recursion: the complete subtrees
    it decomposes into, largest first, folded from the right."""
    parts: list[bytes] = []
    pos, left = start, length
    while left:
        level = left.bit_length() - 1
        size = 1 << level
        if pos % size:  # pragma: no cover - the RFC recursion never asks for such a range
            raise ValueError(f"range [{start}, {start + length}) is not a tree range")
        parts.append(store.subtree(level, pos >> level))
        pos += size
        left -= size
    result = parts.pop()
    while parts:
        result = node_hash(parts.pop(), result)
    return result


def root(store: NodeStore, size: int) -> bytes:
    """MTH of the first ``size`` leaves."""
    if size < 0:
        raise ValueError("a tree size is not negative")
    return EMPTY_ROOT if size == 0 else _range_hash(store, 0, size)


def inclusion_proof(store: NodeStore, index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 section 2.1.3.1, leaf-side sibling first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    top_down: list[bytes] = []
    start, n, m = 0, size, index
    while n > 1:
        k = _split(n)
        if m < k:  # PATH(m, D[0:k]) : MTH(D[k:n])
            top_down.append(_range_hash(store, start + k, n - k))
            n = k
        else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            top_down.append(_range_hash(store, start, k))
            start, m, n = start + k, m - k, n - k
    top_down.reverse()
    return top_down


def consistency_proof(store: NodeStore, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[new_size]) = SUBPROOF(old_size, D[new_size], true) of RFC 9162
    section 2.1.4.1. Empty when the sizes are equal."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    top_down: list[bytes] = []
    start, m, n, whole = 0, old_size, new_size, True
    while m != n:
        k = _split(n)
        if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            top_down.append(_range_hash(store, start + k, n - k))
            n = k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            top_down.append(_range_hash(store, start, k))
            start, m, n, whole = start + k, m - k, n - k, False
    if not whole:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        top_down.append(_range_hash(store, start, m))
    top_down.reverse()
    return top_down


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2: does ``proof`` show ``leaf`` (a leaf hash) at ``index``
    in the tree of ``size`` leaves whose root is ``root_hash``?"""
    if not (_is_hash(leaf) and _is_hash(root_hash) and all(_is_hash(p) for p in proof)):
        return False
    # 1. leaf_index must be < tree_size.
    if not 0 <= index < size:
        return False
    # 2. fn = leaf_index, sn = tree_size - 1. 3. r = hash.
    fn, sn, r = index, size - 1, leaf
    # 4. For each p in the inclusion path:
    for p in proof:
        # a. sn == 0: fail.
        if sn == 0:
            return False
        # b. LSB(fn) set, or fn == sn:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)  # i.
            if not fn & 1:  # ii. shift until LSB(fn) is set or fn is 0
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)  # otherwise i.
        # c. shift once.
        fn >>= 1
        sn >>= 1
    # 5. sn must be 0 and r the root.
    return sn == 0 and hmac.compare_digest(r, root_hash)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2: does ``proof`` show the tree of ``new_size`` leaves with
    root ``new_root`` extends the tree of ``old_size`` leaves with root ``old_root``?

    The RFC defines proofs for ``0 < old_size < new_size``; at equal sizes the proof is
    empty and the roots must be equal; the empty tree is consistent with every tree."""
    if not (_is_hash(old_root) and _is_hash(new_root) and all(_is_hash(p) for p in proof)):
        return False
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if old_size == 0:
        return not proof and hmac.compare_digest(old_root, EMPTY_ROOT)
    # 1. An empty path fails.
    if not proof:
        return False
    path = list(proof)
    # 2. first an exact power of 2: prepend first_hash.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3. fn = first - 1, sn = second - 1.
    fn, sn = old_size - 1, new_size - 1
    # 4. LSB(fn) set: shift both until it is not.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. fr = sr = the first value.
    fr = sr = path[0]
    # 6. For each subsequent value c:
    for c in path[1:]:
        # a. sn == 0: fail.
        if sn == 0:
            return False
        # b. LSB(fn) set, or fn == sn:
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)  # i.
            sr = node_hash(c, sr)  # ii.
            if not fn & 1:  # iii. shift until LSB(fn) is set or fn is 0
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)  # otherwise i.
        # c. shift once.
        fn >>= 1
        sn >>= 1
    # 7. fr is first_hash, sr is second_hash, sn is 0.
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


# --- building a tree one leaf at a time --------------------------------------------------


def append_leaf(frontier: list[bytes], size: int, leaf: bytes) -> list[tuple[int, int, bytes]]:
    """Add leaf number ``size`` (a leaf hash) to a tree of ``size`` leaves.

    ``frontier`` holds the hashes of the complete subtrees the tree decomposes into,
    largest (leftmost) first -- one per set bit of ``size`` -- and is updated in place.
    Returns the complete subtrees of level >= 1 that the new leaf finishes, as
    ``(level, index, hash)``, lowest first: at most log2(size + 1) of them."""
    made: list[tuple[int, int, bytes]] = []
    h, level, n = leaf, 0, size
    while n & 1:
        h = node_hash(frontier.pop(), h)
        level += 1
        n >>= 1
        made.append((level, ((size + 1) >> level) - 1, h))
    frontier.append(h)
    return made


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """MTH of the tree whose complete subtrees (largest first) are ``frontier``."""
    if not frontier:
        return EMPTY_ROOT
    result = frontier[-1]
    for h in reversed(frontier[:-1]):
        result = node_hash(h, result)
    return result


def load_frontier(store: NodeStore, size: int) -> list[bytes]:
    """The frontier of a stored tree of ``size`` leaves (O(log n) lookups)."""
    frontier: list[bytes] = []
    pos = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            frontier.append(store.subtree(level, pos >> level))
            pos += 1 << level
    return frontier


def complete_subtrees(size: int, min_level: int = 0) -> Iterator[tuple[int, int]]:
    """Every ``(level, index)`` of a complete subtree of a tree of ``size`` leaves, from
    ``min_level`` up: what a store must hold for that tree, and nothing more."""
    level = min_level
    while size >> level:
        for index in range(size >> level):
            yield level, index
        level += 1


class MemoryNodeStore:
    """A :class:`NodeStore` in a dict, built leaf by leaf (for tests and small trees)."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.frontier: list[bytes] = []
        self.size = 0
        for leaf in leaves:
            self.append(leaf)

    def __repr__(self) -> str:
        return f"MemoryNodeStore(size={self.size})"

    def append(self, leaf: bytes) -> int:
        """Add a leaf hash; returns its index."""
        index = self.size
        self.nodes[(0, index)] = leaf
        for level, i, h in append_leaf(self.frontier, index, leaf):
            self.nodes[(level, i)] = h
        self.size += 1
        return index

    def subtree(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]

    def root(self) -> bytes:
        return frontier_root(self.frontier)
