"""RFC 9162 Merkle trees: hand-computed small trees, the RFC's own examples, and properties.

The expected hashes are written out by hand from the definitions (``L(i)`` a leaf hash,
``H(a, b)`` a node), not computed by the code under test; a recursive MTH straight from
RFC 9162 section 2.1.1 is the reference for the property tests.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import attestation
from attestation import (
    MERKLE_EMPTY_ROOT,
    MemoryNodeStore,
    consistency_proof,
    inclusion_proof,
    merkle_root,
    verify_consistency,
    verify_inclusion,
)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def L(i: int) -> bytes:  # the RFC's notation
    """The leaf hash of entry d_i = bytes([i])."""
    return sha(b"\x00" + bytes([i]))


def H(a: bytes, b: bytes) -> bytes:
    return sha(b"\x01" + a + b)


def mth(entries: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1, recursively: the reference."""
    n = len(entries)
    if n == 0:
        return sha(b"")
    if n == 1:
        return sha(b"\x00" + entries[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return sha(b"\x01" + mth(entries[:k]) + mth(entries[k:]))


def tree(n: int) -> MemoryNodeStore:
    return MemoryNodeStore(L(i) for i in range(n))


# --- hand-computed trees ------------------------------------------------------------------

H01, H23, H45, H67 = H(L(0), L(1)), H(L(2), L(3)), H(L(4), L(5)), H(L(6), L(7))
H0123 = H(H01, H23)

HAND_ROOTS = {
    1: L(0),
    2: H01,
    3: H(H01, L(2)),
    4: H0123,
    5: H(H0123, L(4)),
    6: H(H0123, H45),
    7: H(H0123, H(H45, L(6))),
    8: H(H0123, H(H45, H67)),
}


def test_empty_tree_root_is_the_hash_of_nothing():
    assert merkle_root(tree(0), 0) == MERKLE_EMPTY_ROOT == sha(b"")


def test_leaf_and_node_hashes_are_domain_separated():
    assert attestation.leaf_hash(b"x") == sha(b"\x00x")
    assert attestation.node_hash(b"a" * 32, b"b" * 32) == sha(b"\x01" + b"a" * 32 + b"b" * 32)


@pytest.mark.parametrize("n", sorted(HAND_ROOTS))
def test_roots_of_small_trees(n):
    store = tree(n)
    assert merkle_root(store, n) == HAND_ROOTS[n]
    assert store.root() == HAND_ROOTS[n]
    assert mth([bytes([i]) for i in range(n)]) == HAND_ROOTS[n]
    # every smaller tree is still answerable from the same store
    for m in range(1, n + 1):
        assert merkle_root(store, m) == HAND_ROOTS[m]


# Inclusion paths in the tree of 7 leaves, every index (leaf-side sibling first).
H456 = H(H45, L(6))
HAND_PATHS_7 = {
    0: [L(1), H23, H456],
    1: [L(0), H23, H456],
    2: [L(3), H01, H456],
    3: [L(2), H01, H456],
    4: [L(5), L(6), H0123],
    5: [L(4), L(6), H0123],
    6: [H45, H0123],
}


@pytest.mark.parametrize("index", range(7))
def test_inclusion_in_a_tree_of_seven(index):
    store = tree(7)
    proof = inclusion_proof(store, index, 7)
    assert proof == HAND_PATHS_7[index]
    assert verify_inclusion(L(index), index, 7, proof, HAND_ROOTS[7])
    assert not verify_inclusion(L(index), (index + 1) % 7, 7, proof, HAND_ROOTS[7])


def test_inclusion_in_a_one_leaf_tree_is_an_empty_path():
    assert inclusion_proof(tree(1), 0, 1) == []
    assert verify_inclusion(L(0), 0, 1, [], L(0))
    assert not verify_inclusion(L(1), 0, 1, [], L(0))


# RFC 9162 section 2.1.5: the examples over the tree of 7 (a..f leaves, g h i nodes,
# j = leaf d6, k = H(g, h), l = H(i, j)), with our hand values.
a, b, c, d, e, f, j = (L(i) for i in range(7))
g, h, i_ = H(a, b), H(c, d), H(e, f)
k, l_ = H(g, h), H(i_, j)


def test_rfc_9162_examples():
    store = tree(7)
    # inclusion: d0 -> [b, h, l]; d3 -> [c, g, l]; d4 -> [f, j, k]; d6 -> [i, k]
    assert inclusion_proof(store, 0, 7) == [b, h, l_]
    assert inclusion_proof(store, 3, 7) == [c, g, l_]
    assert inclusion_proof(store, 4, 7) == [f, j, k]
    assert inclusion_proof(store, 6, 7) == [i_, k]
    # consistency: hash0 (size 3) -> [c, d, g, l]; hash1 (4) -> [l]; hash2 (6) -> [i, j, k]
    assert consistency_proof(store, 3, 7) == [c, d, g, l_]
    assert consistency_proof(store, 4, 7) == [l_]
    assert consistency_proof(store, 6, 7) == [i_, j, k]
    for m in (3, 4, 6):
        proof = consistency_proof(store, m, 7)
        assert verify_consistency(m, 7, HAND_ROOTS[m], HAND_ROOTS[7], proof)


@pytest.mark.parametrize("old", range(1, 9))
@pytest.mark.parametrize("new", range(1, 9))
def test_consistency_between_small_trees(old, new):
    store = tree(8)
    if old > new:
        with pytest.raises(ValueError):
            consistency_proof(store, old, new)
        return
    proof = consistency_proof(store, old, new)
    assert verify_consistency(old, new, HAND_ROOTS[old], HAND_ROOTS[new], proof)
    if old == new:
        assert proof == []
    else:
        assert not verify_consistency(old, new, HAND_ROOTS[old], HAND_ROOTS[old], proof)


def test_consistency_edge_cases():
    store = tree(8)
    assert verify_consistency(0, 5, MERKLE_EMPTY_ROOT, HAND_ROOTS[5], [])
    assert not verify_consistency(0, 5, HAND_ROOTS[1], HAND_ROOTS[5], [])
    assert not verify_consistency(3, 5, HAND_ROOTS[3], HAND_ROOTS[5], [])  # empty path
    assert not verify_consistency(5, 3, HAND_ROOTS[5], HAND_ROOTS[3], [])
    assert not verify_consistency(4, 4, HAND_ROOTS[4], HAND_ROOTS[5], [])
    proof = consistency_proof(store, 3, 8)
    assert not verify_consistency(3, 8, HAND_ROOTS[3], HAND_ROOTS[8], [*proof, proof[0]])
    assert not verify_consistency(3, 8, HAND_ROOTS[3], HAND_ROOTS[8], proof[:-1])
    assert not verify_consistency(3, 8, HAND_ROOTS[3], HAND_ROOTS[8], [b"short", *proof[1:]])
    with pytest.raises(ValueError):
        consistency_proof(store, 0, 3)
    with pytest.raises(ValueError):
        inclusion_proof(store, 8, 8)


def test_bad_inputs_fail_rather_than_raise():
    proof = inclusion_proof(tree(4), 1, 4)
    assert not verify_inclusion(L(1), -1, 4, proof, HAND_ROOTS[4])
    assert not verify_inclusion(L(1), 4, 4, proof, HAND_ROOTS[4])
    assert not verify_inclusion(b"short", 1, 4, proof, HAND_ROOTS[4])
    assert not verify_inclusion(L(1), 1, 4, [*proof, proof[0]], HAND_ROOTS[4])  # too long
    assert not verify_inclusion(L(1), 1, 4, proof[:-1], HAND_ROOTS[4])  # too short


def test_store_and_frontier_bookkeeping():
    store = tree(11)
    # the stored complete subtrees are exactly those of a tree of 11 leaves
    assert set(store.nodes) == set(attestation.complete_subtrees(11))
    assert attestation.load_frontier(store, 11) == store.frontier
    assert attestation.frontier_root(store.frontier) == mth([bytes([i]) for i in range(11)])
    # appending leaf 11 (0-based) finishes (1, 5) and (2, 2): 12 = 8 + 4
    frontier = list(store.frontier)
    made = attestation.append_leaf(frontier, 11, L(11))
    assert [(lv, ix) for lv, ix, _ in made] == [(1, 5), (2, 2)]


class CountingStore:
    """Counts lookups, to show proofs cost O(log n)."""

    def __init__(self, inner: MemoryNodeStore) -> None:
        self.inner = inner
        self.lookups = 0

    def subtree(self, level: int, index: int) -> bytes:
        self.lookups += 1
        return self.inner.subtree(level, index)


def test_proofs_cost_logarithmic_lookups():
    n = 5000
    store = CountingStore(MemoryNodeStore(sha(i.to_bytes(4, "big")) for i in range(n)))
    bound = 2 * n.bit_length() + 2
    for index in (0, 1, 2047, 4095, 4096, 4999):
        store.lookups = 0
        inclusion_proof(store, index, n)
        assert store.lookups <= bound
    for old in (1, 2, 1000, 2048, 4097, 4999):
        store.lookups = 0
        consistency_proof(store, old, n)
        assert store.lookups <= bound
    store.lookups = 0
    merkle_root(store, n)
    assert store.lookups <= n.bit_length()


# --- properties ----------------------------------------------------------------------------

SIZES = st.integers(min_value=1, max_value=300)


def leaves(n: int) -> list[bytes]:
    return [i.to_bytes(2, "big") for i in range(n)]


def big_store(n: int) -> MemoryNodeStore:
    return MemoryNodeStore(attestation.leaf_hash(x) for x in leaves(n))


def flip(value: bytes, at: int) -> bytes:
    at %= len(value)
    return value[:at] + bytes([value[at] ^ 1]) + value[at + 1 :]


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=SIZES)
def test_every_inclusion_proof_verifies_and_any_change_fails(data, n):
    store = big_store(n)
    root = merkle_root(store, n)
    assert root == mth(leaves(n))
    index = data.draw(st.integers(0, n - 1))
    leaf = store.subtree(0, index)
    proof = inclusion_proof(store, index, n)
    assert verify_inclusion(leaf, index, n, proof, root)
    at = data.draw(st.integers(0, 10**6))
    assert not verify_inclusion(flip(leaf, at), index, n, proof, root)
    assert not verify_inclusion(leaf, index, n, proof, flip(root, at))
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[which] = flip(bad[which], at)
        assert not verify_inclusion(leaf, index, n, bad, root)
    if n > 1:
        other = data.draw(st.integers(0, n - 1).filter(lambda x: x != index))
        assert not verify_inclusion(leaf, other, n, proof, root)
    # Another size: a verifier holds that size's own (signed) root.
    size = data.draw(st.integers(index + 1, 320).filter(lambda x: x != n))
    other_root = mth(leaves(size))
    assert not verify_inclusion(leaf, index, size, proof, other_root)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=SIZES)
def test_every_consistency_proof_verifies_and_any_change_fails(data, n):
    store = big_store(n)
    new_root = merkle_root(store, n)
    old = data.draw(st.integers(1, n))
    old_root = merkle_root(store, old)
    assert old_root == mth(leaves(old))
    proof = consistency_proof(store, old, n)
    assert verify_consistency(old, n, old_root, new_root, proof)
    at = data.draw(st.integers(0, 10**6))
    assert not verify_consistency(old, n, flip(old_root, at), new_root, proof)
    assert not verify_consistency(old, n, old_root, flip(new_root, at), proof)
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[which] = flip(bad[which], at)
        assert not verify_consistency(old, n, old_root, new_root, bad)
    if n > 1:
        wrong_old = data.draw(st.integers(1, n).filter(lambda x: x != old))
        assert not verify_consistency(wrong_old, n, mth(leaves(wrong_old)), new_root, proof)
    wrong_new = data.draw(st.integers(old, 320).filter(lambda x: x != n))
    assert not verify_consistency(old, wrong_new, old_root, mth(leaves(wrong_new)), proof)
