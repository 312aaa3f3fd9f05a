"""The stored Merkle tree: integrating appended events in batches, and reading proofs from it.

Lifecycle of an event (docs/audit.md): *appended* (committed by the request, has its index and
leaf hash) -> *integrated* (its leaf and every complete subtree it closes are in
``audit_tree_node``, and the tree size in ``audit_tree_state`` covers it) -> *checkpointed* (a
signed checkpoint of a size that covers it exists). A batch moves the nodes, the tree size and the
batch's checkpoint in one transaction, so an integrator that dies mid-batch leaves the previous
consistent tree for the next one to continue.

Only one integrator works at a time: a PostgreSQL transaction-level advisory lock across nodes,
an in-process lock on SQLite (one writer anyway); the tree size moves by compare-and-set, so a
second integrator that slipped past the lock fails its batch instead of forking the tree.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import insert, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from audit import checkpoints, merkle
from audit.models import AuditCheckpoint, AuditEvent, AuditLogKey, AuditTreeNode, AuditTreeState
from broker.db import utcnow

#: Arbitrary constant naming the integrator's advisory lock ("audit" in ASCII).
ADVISORY_LOCK_KEY = 0x6175646974
_local_lock = threading.Lock()
log = logging.getLogger("casebroker.audit")


class TreeError(Exception):
    """A proof asked of a tree that cannot give it (size beyond the integrated tree)."""


@dataclass(frozen=True)
class TreeHead:
    size: int
    root_hash: bytes


@dataclass(frozen=True)
class BatchResult:
    """What one integration batch did: leaves added, the new head, whether it signed one."""

    added: int
    head: TreeHead
    checkpointed: bool
    gap_at: int | None = None


def tree_head(session: Session) -> TreeHead:
    state = session.get(AuditTreeState, 1)
    if state is None:
        return TreeHead(0, merkle.EMPTY_ROOT)
    return TreeHead(state.size, state.root_hash)


def read_nodes(session: Session, nodes: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
    """The stored hashes of ``nodes`` in one query: O(log n) rows for any proof."""
    wanted = sorted(set(nodes))
    if not wanted:
        return {}
    rows = session.execute(
        select(AuditTreeNode.level, AuditTreeNode.idx, AuditTreeNode.hash).where(
            tuple_(AuditTreeNode.level, AuditTreeNode.idx).in_(wanted)
        )
    )
    found = {(level, idx): value for level, idx, value in rows}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise TreeError(f"tree nodes missing from storage: {missing[:3]}")
    return found


def _range_hashes(session: Session, ranges: list[merkle.Range]) -> list[bytes]:
    pieces = [merkle.subtrees(start, end) for start, end in ranges]
    stored = read_nodes(session, (node for nodes in pieces for node in nodes))
    return [merkle.fold([stored[node] for node in nodes]) for nodes in pieces]


def _check_size(session: Session, size: int) -> TreeHead:
    head = tree_head(session)
    if size > head.size:
        raise TreeError(f"the tree has {head.size} integrated events, fewer than {size}")
    return head


def root_at(session: Session, size: int) -> bytes:
    """MTH of the first ``size`` leaves, from at most log2(size) stored subtrees."""
    head = _check_size(session, size)
    if size == head.size:
        return head.root_hash
    if size == 0:
        return merkle.EMPTY_ROOT
    return _range_hashes(session, [(0, size)])[0]


@dataclass(frozen=True)
class InclusionProof:
    leaf_hash: bytes
    proof: list[bytes]
    root_hash: bytes


def inclusion(session: Session, index: int, size: int) -> InclusionProof:
    """Leaf, path and root in one read of the tree head and one of the nodes."""
    head = _check_size(session, size)
    ranges = merkle.inclusion_ranges(index, size)
    if size < head.size:
        ranges.append((0, size))
    ranges.append((index, index + 1))
    hashes = _range_hashes(session, ranges)
    leaf = hashes.pop()
    root = hashes.pop() if size < head.size else head.root_hash
    return InclusionProof(leaf, hashes, root)


@dataclass(frozen=True)
class ConsistencyProof:
    proof: list[bytes]
    old_root: bytes
    new_root: bytes


def consistency(session: Session, old: int, new: int) -> ConsistencyProof:
    """Path and both roots in one read of the tree head and one of the nodes."""
    head = _check_size(session, new)
    ranges = merkle.consistency_ranges(old, new)
    extra = [(0, old)] + ([(0, new)] if new < head.size else [])
    hashes = _range_hashes(session, ranges + extra)
    new_root = hashes.pop() if new < head.size else head.root_hash
    old_root = hashes.pop()
    return ConsistencyProof(hashes, old_root, new_root)


def leaf_hash_at(session: Session, index: int) -> bytes:
    return read_nodes(session, [(0, index)])[(0, index)]


def inclusion_proof(session: Session, index: int, size: int) -> list[bytes]:
    _check_size(session, size)
    return _range_hashes(session, merkle.inclusion_ranges(index, size))


def consistency_proof(session: Session, old: int, new: int) -> list[bytes]:
    _check_size(session, new)
    return _range_hashes(session, merkle.consistency_ranges(old, new))


def _try_lock(session: Session) -> bool:
    if session.get_bind().dialect.name == "postgresql":
        return bool(
            session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
        )
    return True


def _insert_nodes(session: Session, nodes: list[dict[str, object]]) -> None:
    """Bulk insert; on PostgreSQL through COPY, several times faster than multi-row INSERT."""
    if not nodes:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        raw = connection.connection.driver_connection
        import psycopg

        statement = "COPY audit_tree_node (level, idx, hash) FROM STDIN"
        try:
            with raw.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
                for node in nodes:
                    copy.write_row((node["level"], node["idx"], node["hash"]))
        except psycopg.errors.IntegrityError as exc:  # the driver's own, outside SQLAlchemy
            raise IntegrityError(statement, None, exc) from exc
        return
    session.execute(insert(AuditTreeNode), nodes)


def integrate_batch(
    session: Session, kek: bytes, origin: str, batch_size: int
) -> BatchResult | None:
    """Add up to ``batch_size`` appended events to the tree and sign the new head.

    Returns None when another integrator holds the lock. Commits on success.
    """
    key_row = checkpoints.ensure_key(session, kek, origin)
    session.commit()
    if not _local_lock.acquire(blocking=False):
        return None
    try:
        if not _try_lock(session):
            session.rollback()
            return None
        return _integrate_locked(session, key_row, kek, batch_size)
    except (IntegrityError, OperationalError, TreeError) as exc:
        # Another integrator won the race (SQLite has no advisory lock across processes, and
        # a write that follows another's commit is refused): its batch stands, ours is void.
        session.rollback()
        log.warning("audit integration batch abandoned: %s", exc)
        return None
    except BaseException:
        session.rollback()
        raise
    finally:
        _local_lock.release()


def _integrate_locked(
    session: Session, key_row: AuditLogKey, kek: bytes, batch_size: int
) -> BatchResult:
    state = session.get(AuditTreeState, 1, populate_existing=True)
    if state is None:
        state = AuditTreeState(id=1, size=0, root_hash=merkle.EMPTY_ROOT, updated_at=utcnow())
        session.add(state)
        session.flush()
    old_size = state.size
    edge_nodes = merkle.CompactRange.edge_nodes(old_size)
    stored = read_nodes(session, edge_nodes)
    tree = merkle.CompactRange(old_size, [stored[n] for n in edge_nodes])
    rows = session.execute(
        select(AuditEvent.seq, AuditEvent.leaf_hash)
        .where(AuditEvent.seq >= old_size, AuditEvent.seq < old_size + batch_size)
        .order_by(AuditEvent.seq)
    )
    nodes: list[dict[str, object]] = []

    def keep(level: int, idx: int, value: bytes) -> None:
        nodes.append({"level": level, "idx": idx, "hash": value})

    gap_at = None
    for seq, leaf in rows:
        if seq != tree.size:
            gap_at = tree.size  # appends commit in order, so a hole is damage: stop before it
            break
        tree.append(bytes(leaf), keep)
    head = TreeHead(tree.size, tree.root())
    if head.size == old_size and session.get(AuditCheckpoint, old_size) is not None:
        session.rollback()
        return BatchResult(0, head, False, gap_at)
    _insert_nodes(session, nodes)
    moved = session.execute(
        update(AuditTreeState)
        .where(AuditTreeState.id == 1, AuditTreeState.size == old_size)
        .values(size=head.size, root_hash=head.root_hash, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        raise TreeError("another integrator moved the tree during this batch")
    checkpoints.sign_checkpoint(session, key_row, kek, head.size, head.root_hash)
    session.commit()
    return BatchResult(head.size - old_size, head, True, gap_at)


def integrate(
    session: Session, kek: bytes, origin: str, batch_size: int, max_batches: int | None = None
) -> tuple[int, TreeHead]:
    """Integrate until nothing is pending (or ``max_batches``); returns (added, head)."""
    added = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        result = integrate_batch(session, kek, origin, batch_size)
        batches += 1
        if result is None:
            break
        added += result.added
        if result.gap_at is not None:
            log.error(
                "audit event %d is missing: integration stops before it; run casebroker audit "
                "verify",
                result.gap_at,
            )
        if result.added < batch_size:
            break
    return added, tree_head(session)


def pending(session: Session) -> int:
    """Events appended but not yet integrated."""
    last = session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1))
    return 0 if last is None else max(0, last + 1 - tree_head(session).size)
