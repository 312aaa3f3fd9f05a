"""RFC 9162 hashing and proofs: every published test vector, and proofs made by our own shapes."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from audit import merkle

VECTORS = Path(__file__).parent / "data" / "rfc9162"


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _proof(values: list[str] | None) -> list[bytes]:
    return [_b64(v) for v in values or []]


def _vectors(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_the_vectors_are_all_here_with_their_licence():
    assert len(_vectors("inclusion")) > 50 and len(_vectors("consistency")) > 50
    assert "Apache License" in (VECTORS / "LICENSE").read_text()


@pytest.mark.parametrize("path", _vectors("inclusion"), ids=_id)
def test_inclusion_vector(path: Path):
    case = json.loads(path.read_text())
    args = (
        case["leafIdx"],
        case["treeSize"],
        _b64(case["leafHash"]),
        _proof(case["proof"]),
        _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("path", _vectors("consistency"), ids=_id)
def test_consistency_vector(path: Path):
    case = json.loads(path.read_text())
    args = (
        case["size1"],
        case["size2"],
        _b64(case["root1"]),
        _b64(case["root2"]),
        _proof(case["proof"]),
    )
    if case["wantErr"]:
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


def leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(b"\x00" + str(i).encode()).digest() for i in range(n)]


def range_hash(all_leaves: list[bytes], start: int, end: int) -> bytes:
    return merkle.root_from_leaves(all_leaves[start:end])


def test_compact_range_matches_the_reference_root_and_reports_every_complete_subtree():
    data = leaves(70)
    made: dict[tuple[int, int], bytes] = {}
    tree = merkle.CompactRange()
    for size, leaf in enumerate(data, start=1):
        tree.append(leaf, lambda level, index, h: made.__setitem__((level, index), h))
        assert tree.root() == merkle.root_from_leaves(data[:size])
    for (level, index), value in made.items():
        assert value == range_hash(data, index << level, (index + 1) << level)
    assert len(made) == 70 + 35 + 17 + 8 + 4 + 2 + 1
    resumed = merkle.CompactRange(70, [made[n] for n in merkle.CompactRange.edge_nodes(70)])
    assert resumed.root() == tree.root()


def test_empty_tree_root_is_the_hash_of_nothing():
    assert merkle.CompactRange().root() == merkle.EMPTY_ROOT == merkle.root_from_leaves([])


def test_proofs_built_from_subtrees_verify_for_every_index_and_size_pair():
    data = leaves(33)

    def hashes(ranges):
        return [
            merkle.fold([range_hash(data, i << lv, (i + 1) << lv) for lv, i in merkle.subtrees(*r)])
            for r in ranges
        ]

    for size in range(1, 34):
        root = merkle.root_from_leaves(data[:size])
        for index in range(size):
            proof = hashes(merkle.inclusion_ranges(index, size))
            merkle.verify_inclusion(index, size, data[index], proof, root)
            with pytest.raises(merkle.ProofError):
                merkle.verify_inclusion(index, size, data[(index + 1) % 33], proof, root)
        for old in range(1, size + 1):
            old_root = merkle.root_from_leaves(data[:old])
            proof = hashes(merkle.consistency_ranges(old, size))
            merkle.verify_consistency(old, size, old_root, root, proof)
            if old < size:
                with pytest.raises(merkle.ProofError):
                    merkle.verify_consistency(old, size, root, old_root, proof)


@pytest.mark.parametrize(
    ("index", "size"), [(-1, 4), (4, 4), (0, 0)], ids=["negative", "at-size", "empty"]
)
def test_no_inclusion_proof_outside_the_tree(index, size):
    with pytest.raises(merkle.ProofError):
        merkle.inclusion_ranges(index, size)


@pytest.mark.parametrize(("old", "new"), [(0, 4), (5, 4), (-1, 2)])
def test_no_consistency_proof_for_impossible_sizes(old, new):
    with pytest.raises(merkle.ProofError):
        merkle.consistency_ranges(old, new)


def test_unaligned_ranges_are_refused():
    with pytest.raises(ValueError):
        merkle.subtrees(1, 3)
    with pytest.raises(ValueError):
        merkle.subtrees(3, 3)
