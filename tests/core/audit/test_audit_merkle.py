"""RFC 9162 s2.1 Merkle tree hashes and proofs, against known values and against each
other for every size up to 70; consistency proofs built in one pass over the leaves equal
those built over the leaves held in memory."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ConsistencyProofs,
    consistency_nodes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

# The inputs of the Certificate Transparency reference implementation's Merkle tree tests
# (RFC 6962 and 9162 hash trees alike), and the roots of their first 1..8 leaves.
INPUTS = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
LEAVES = [leaf_hash(d) for d in INPUTS]


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_empty_tree_and_single_leaf() -> None:
    # s2.1.1: MTH({}) = SHA-256(); MTH({d0}) = SHA-256(0x00 || d0)
    assert root([]) == EMPTY_ROOT == hashlib.sha256().digest()
    assert LEAVES[0].hex() == ROOTS[0] == hashlib.sha256(b"\x00").hexdigest()


@pytest.mark.parametrize("n", range(1, 9))
def test_roots_match_the_reference_values(n: int) -> None:
    assert root(LEAVES[:n]).hex() == ROOTS[n - 1]


def test_a_root_by_hand() -> None:
    # three leaves: k = 2, MTH = node(node(l0, l1), l2)
    a, b, c = LEAVES[:3]
    assert root([a, b, c]) == node_hash(node_hash(a, b), c)


def test_compact_range_gives_every_root() -> None:
    leaves = _leaves(70)
    tree = CompactRange()
    assert tree.root() == EMPTY_ROOT
    for i, leaf in enumerate(leaves):
        tree.append(leaf)
        assert tree.size == i + 1
        assert tree.root() == root(leaves[: i + 1])


def test_inclusion_proofs_of_the_reference_tree() -> None:
    # the reference implementation's proof of leaf 0 in the 8-leaf tree
    proof = inclusion_proof(0, LEAVES)
    assert [p.hex() for p in proof] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33])
def test_inclusion_proofs_verify_and_refuse_the_wrong_leaf(n: int) -> None:
    leaves = _leaves(n)
    r = root(leaves)
    for i in range(n):
        proof = inclusion_proof(i, leaves)
        assert verify_inclusion(i, n, leaves[i], proof, r)
        assert not verify_inclusion(i, n, leaf_hash(b"other"), proof, r)
        if n > 1:
            assert not verify_inclusion((i + 1) % n, n, leaves[i], proof, r)
    with pytest.raises(ValueError):
        inclusion_proof(n, leaves)


def test_consistency_proofs_of_the_reference_tree() -> None:
    # the reference implementation's proofs in the 8-leaf tree
    expected = {
        1: [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
        6: [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    }
    for first, proof in expected.items():
        assert [p.hex() for p in consistency_proof(first, LEAVES)] == proof


def test_every_pair_of_sizes_up_to_40_is_consistent() -> None:
    leaves = _leaves(40)
    roots = [root(leaves[:n]) for n in range(41)]
    for second in range(1, 41):
        for first in range(1, second + 1):
            proof = consistency_proof(first, leaves[:second])
            assert verify_consistency(first, second, roots[first], roots[second], proof)
            if first < second:
                # a rewritten old tree, a wrong new root or a shortened proof is refused
                forged = leaf_hash(b"forged")
                assert not verify_consistency(first, second, forged, roots[second], proof)
                assert not verify_consistency(first, second, roots[first], forged, proof)
                assert not verify_consistency(
                    first, second, roots[first], roots[second], proof[:-1]
                )


def test_a_rewritten_prefix_is_not_consistent() -> None:
    leaves = _leaves(20)
    rewritten = list(leaves)
    rewritten[3] = leaf_hash(b"changed")
    proof = consistency_proof(10, rewritten)
    assert not verify_consistency(10, 20, root(leaves[:10]), root(rewritten), proof)


def test_trivial_cases() -> None:
    assert verify_consistency(0, 5, EMPTY_ROOT, root(_leaves(5)), [])
    assert verify_consistency(5, 5, root(_leaves(5)), root(_leaves(5)), [])
    assert not verify_consistency(6, 5, root(_leaves(5)), root(_leaves(5)), [b"x"])
    with pytest.raises(ValueError):
        consistency_proof(0, _leaves(3))


@given(st.integers(1, 300), st.data())
def test_consistency_between_any_two_sizes(second: int, data: st.DataObject) -> None:
    first = data.draw(st.integers(1, second))
    leaves = _leaves(second)
    proof = consistency_proof(first, leaves)
    assert verify_consistency(first, second, root(leaves[:first]), root(leaves), proof)


def _reference_proof(m: int, leaves: list[bytes], complete: bool = True) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of s2.1.4.1, over the leaves themselves."""
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_reference_proof(m, leaves[:k], complete), root(leaves[k:])]
    return [*_reference_proof(m - k, leaves[k:], False), root(leaves[:k])]


def test_proofs_built_from_the_sizes_alone_equal_the_reference() -> None:
    leaves = _leaves(70)
    for second in range(1, 71):
        for first in range(1, second + 1):
            nodes = consistency_nodes(first, second)
            assert [root(leaves[a:b]) for a, b in nodes] == _reference_proof(first, leaves[:second])
            assert consistency_proof(first, leaves[:second]) == _reference_proof(
                first, leaves[:second]
            )


def test_root_from_folds_the_peaks_from_a_subtree_start() -> None:
    leaves = _leaves(45)
    tree = CompactRange()
    for leaf in leaves:
        tree.append(leaf)
    # 45 = 32 + 8 + 4 + 1: subtrees start at 0, 32, 40, 44 (and the empty one at 45)
    for start in (0, 32, 40, 44, 45):
        assert tree.root_from(start) == root(leaves[start:])
    with pytest.raises(ValueError):
        tree.root_from(33)


@given(
    st.lists(st.integers(1, 200), min_size=1, max_size=12, unique=True),
    st.binary(min_size=4, max_size=4),
)
def test_streaming_proofs_equal_the_proofs_over_the_leaves(sizes: list[int], salt: bytes) -> None:
    """Many (m, n) pairs at once, in one pass: each proof as the one over the leaves."""
    sizes.sort()
    leaves = [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(sizes[-1])]
    pairs = [(m, n) for i, m in enumerate(sizes) for n in sizes[i:]]
    pairs += [(1, n) for n in sizes]
    tree = ConsistencyProofs(pairs)
    for leaf in leaves:
        tree.append(leaf)
        assert tree.root() == root(leaves[: tree.size])
    for m, n in pairs:
        proof = tree.proof(m, n)
        assert proof == consistency_proof(m, leaves[:n])
        assert verify_consistency(m, n, root(leaves[:m]), root(leaves[:n]), proof)


def test_a_proof_is_ready_once_the_tree_reaches_its_size() -> None:
    tree = ConsistencyProofs([(3, 10)])
    for leaf in _leaves(9):
        tree.append(leaf)
    with pytest.raises(ValueError):
        tree.proof(3, 10)
