"""RFC 9162 Merkle tree hashing, proof shapes and proof verification. Pure: no I/O, no Flask.

Written by hand because the Python packages that implement RFC 6962/9162 are unmaintained or
pull in a whole CT client; the algorithms are short and are checked here against the published
test vectors of the transparency-dev/merkle project (tests/data/rfc9162).

Storage never appears in this module: proofs are described as lists of leaf *ranges* whose
Merkle tree hashes the caller looks up (``inclusion_ranges``, ``consistency_ranges``), and a range
is split into complete power-of-two subtrees (``subtrees``) that a store keeps by (level, index).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: A leaf range [start, end) of the tree.
Range = tuple[int, int]
#: A complete subtree: (level, index) covers leaves [index * 2**level, (index + 1) * 2**level).
Node = tuple[int, int]


class ProofError(ValueError):
    """A proof that does not verify, or inputs no proof can be made for."""


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 section 2.1.1: MTH of an inner node is SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1): where RFC 9162 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) computed directly, as a reference; the integrator uses ``CompactRange``."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(root_from_leaves(leaves[:k]), root_from_leaves(leaves[k:]))


def subtrees(start: int, end: int) -> list[Node]:
    """The complete subtrees, left to right, that make up the leaf range [start, end).

    Ranges met in RFC 9162 proofs start at a multiple of the largest power of two not greater
    than their size, so they split into one subtree per set bit of their size, largest first.
    """
    if not 0 <= start < end:
        raise ValueError(f"empty or negative range [{start}, {end})")
    nodes: list[Node] = []
    position = start
    size = end - start
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            if position % (1 << level):
                raise ValueError(f"range [{start}, {end}) is not aligned")
            nodes.append((level, position >> level))
            position += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of a range from the hashes of its ``subtrees``: they join right to left."""
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """RFC 9162 section 2.1.3.1 PATH(m, D[n]) as leaf ranges, in proof order (leaf upwards)."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    path: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append((start + k, end))
            end = start + k
        else:
            path.append((start, start + k))
            start += k
    path.reverse()
    return path


def consistency_ranges(old: int, new: int) -> list[Range]:
    """RFC 9162 section 2.1.4.1 PROOF(m, D[n]) as leaf ranges, in proof order."""
    if not 0 < old <= new:
        raise ProofError(f"no consistency proof from size {old} to size {new}")
    proof: list[Range] = []

    def subproof(m: int, start: int, end: int, complete: bool) -> None:
        n = end - start
        if m == n:
            if not complete:
                proof.append((start, end))
            return
        k = _split(n)
        if m <= k:
            subproof(m, start, start + k, complete)
            proof.append((start + k, end))
        else:
            subproof(m - k, start + k, end, False)
            proof.append((start, start + k))

    if old < new:
        subproof(old, 0, new, True)
    return proof


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte hash")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: the root that ``proof`` implies for ``leaf`` at ``index``."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    _check_hash(leaf, "the leaf hash")
    for element in proof:
        _check_hash(element, "a proof element")
    fn, sn = index, size - 1
    result = leaf
    for element in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            result = node_hash(element, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, element)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is too short")
    return result


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ``ProofError`` unless ``proof`` shows ``leaf`` at ``index`` in the tree ``root``."""
    _check_hash(root, "the root hash")
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError("the inclusion proof does not lead to the root hash")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2: raise ``ProofError`` unless tree ``old`` is a prefix of ``new``."""
    if old < 1 or new < old:
        raise ProofError(f"no consistency proof from size {old} to size {new}")
    if old == new:
        # Like the reference implementation: equal sizes compare the roots as given.
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("equal sizes with different root hashes")
        return
    _check_hash(old_root, "the first root hash")
    _check_hash(new_root, "the second root hash")
    for element in proof:
        _check_hash(element, "a proof element")
    if not proof:
        raise ProofError("the consistency proof is empty")
    elements = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is the first node of the path
        elements.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = elements[0]
    for element in elements[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(element, fr)
            sr = node_hash(element, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, element)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != old_root:
        raise ProofError("the consistency proof does not lead to the first root hash")
    if sr != new_root:
        raise ProofError("the consistency proof does not lead to the second root hash")


class CompactRange:
    """The right edge of a growing tree: one hash per complete subtree on it (RFC 9162 2.1.1).

    Appending a leaf merges equal-sized subtrees; ``on_node`` sees every complete subtree as it
    is made (level, index, hash), which is what the integrator stores and verify compares.
    """

    def __init__(self, size: int = 0, edge: Iterable[bytes] = ()) -> None:
        self.size = size
        self.edge = list(edge)
        if len(self.edge) != size.bit_count():
            raise ValueError("the edge needs one hash per complete subtree of the size")

    @staticmethod
    def edge_nodes(size: int) -> list[Node]:
        return subtrees(0, size) if size else []

    def append(self, leaf: bytes, on_node: Callable[[int, int, bytes], None] | None) -> None:
        index = self.size
        if on_node is not None:
            on_node(0, index, leaf)
        current = leaf
        level = 0
        while index >> level & 1:
            current = node_hash(self.edge.pop(), current)
            level += 1
            if on_node is not None:
                on_node(level, index >> level, current)
        self.edge.append(current)
        self.size += 1

    def root(self) -> bytes:
        return fold(self.edge) if self.edge else EMPTY_ROOT
