"""Merkle tree hashes and proofs of RFC 9162 (Certificate Transparency 2.0) s2.1, over
leaf hashes already computed with :func:`leaf_hash` (SHA-256 throughout):

- s2.1.1: ``MTH({}) = SHA-256()``, ``MTH({d0}) = SHA-256(0x00 || d0)``, and for n > 1 with k
  the largest power of two smaller than n, ``MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) ||
  MTH(D[k:n]))`` (:func:`root`, and :class:`CompactRange` incrementally);
- s2.1.3.1 / s2.1.3.2: inclusion proofs, generation and verification;
- s2.1.4.1 / s2.1.4.2: consistency proofs, generation and verification; the nodes a proof
  is made of follow from the two sizes alone (:func:`consistency_nodes`), so that
  :class:`ConsistencyProofs` builds many proofs in one pass over the leaves, holding
  O(log n) hashes per proof rather than the leaves."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH of the given leaf hashes (s2.1.1)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(root(leaves[:k]), root(leaves[k:]))


class CompactRange:
    """The roots of the perfect subtrees that make up a tree of ``size`` leaves, largest
    first: appending a leaf and computing the MTH cost O(log n), so that the sealer and the
    verifier compute every checkpoint's root in one pass over the log."""

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        self._peaks.append(leaf)
        self.size += 1
        n, width = self.size, 1
        while n % 2 == 0:
            right = self._peaks.pop()
            self._peaks[-1] = node_hash(self._peaks[-1], right)
            n //= 2
            width *= 2
            self._formed(self.size - width, self._peaks[-1])

    def _formed(self, start: int, node: bytes) -> None:
        """Called with each perfect subtree of two or more leaves as it forms, ending at
        ``size``: its hash is MTH(D[start:size])."""

    def root(self) -> bytes:
        return self.root_from(0)

    def root_from(self, start: int) -> bytes:
        """MTH(D[start:size]), for ``start`` where a peak begins (or ``size``: the empty
        tree's hash); folding the peaks from there as s2.1.1 splits them."""
        if start == self.size:
            return EMPTY_ROOT
        begin, i = 0, 0
        for bit in reversed(range(self.size.bit_length())):
            if begin == start:
                break
            if self.size >> bit & 1:
                begin += 1 << bit
                i += 1
        if begin != start:
            raise ValueError(f"no subtree of the tree of {self.size} starts at {start}")
        h = self._peaks[-1]
        for peak in reversed(self._peaks[i:-1]):
            h = node_hash(peak, h)
        return h


class ConsistencyProofs(CompactRange):
    """RFC 9162 consistency proofs between the given pairs of tree sizes, built in one pass
    over the leaves: each node a proof needs (:func:`consistency_nodes`) is kept when it
    forms, a perfect subtree as the range merges it, a right-edge subtree of the size-n tree
    when the tree reaches n. Holds O(log n) hashes per pair, never the leaves."""

    def __init__(self, pairs: Iterable[tuple[int, int]]) -> None:
        super().__init__()
        self._proofs = {(m, n): consistency_nodes(m, n) for m, n in pairs}
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._perfect: set[tuple[int, int]] = set()
        self._partial: dict[int, set[int]] = {}
        for nodes in self._proofs.values():
            for start, end in nodes:
                width = end - start
                if width & (width - 1) == 0 and start % width == 0:
                    self._perfect.add((start, end))
                else:
                    self._partial.setdefault(end, set()).add(start)

    def append(self, leaf: bytes) -> None:
        super().append(leaf)
        if (self.size - 1, self.size) in self._perfect:
            self._nodes[self.size - 1, self.size] = leaf
        for start in self._partial.pop(self.size, ()):
            self._nodes[start, self.size] = self.root_from(start)

    def _formed(self, start: int, node: bytes) -> None:
        if (start, self.size) in self._perfect:
            self._nodes[start, self.size] = node

    def proof(self, first: int, second: int) -> list[bytes]:
        """PROOF(first, D[second]), once the tree has reached ``second``."""
        if self.size < second:
            raise ValueError(f"the tree has {self.size} leaves, not yet {second}")
        return [self._nodes[node] for node in self._proofs[first, second]]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of s2.1.3.1."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf {index} is not in a tree of {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root(leaves[:k])]


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root_hash: bytes
) -> bool:
    """s2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def consistency_proof(first: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of s2.1.4.1, for 0 < m <= n."""
    return [root(leaves[start:end]) for start, end in consistency_nodes(first, len(leaves))]


def consistency_nodes(first: int, second: int) -> list[tuple[int, int]]:
    """The nodes of PROOF(first, D[second]) (s2.1.4.1, 0 < first <= second), in proof order,
    as ranges ``(start, end)``: each is MTH(D[start:end]). Each is a perfect subtree or
    ends at ``second`` (a suffix of the size-``second`` tree's peaks)."""
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from {first} to {second}")
    return _subproof(first, 0, second, True)


def _subproof(m: int, start: int, end: int, complete: bool) -> list[tuple[int, int]]:
    n = end - start
    if m == n:
        return [] if complete else [(start, end)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, start, start + k, complete), (start + k, end)]
    return [*_subproof(m - k, start + k, end, False), (start, start + k)]


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """s2.1.4.2, with its trivial cases: a tree is consistent with itself (empty proof) and
    every tree with the empty one."""
    if first == 0:
        return not proof
    if first == second:
        return not proof and first_root == second_root
    if first > second or not proof:
        return False
    path = list(proof)
    if (first & (first - 1)) == 0:  # an exact power of 2
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0
