"""Checking the whole log: events against their hashes, the tree against the events, and every
checkpoint against the tree. Streams the events in index order, in constant memory.

The tree is recomputed from the events' leaf hashes alone; the stored nodes and checkpoints are
then compared with it, never trusted. Every stored checkpoint's signature is checked and its root
must be the recomputed root at its size, which also makes all checkpoints consistent with each
other (they are prefixes of one sequence of leaves). The first failure names the event: a record
that no longer hashes to its leaf hash was altered; a leaf hash that differs from the one
integrated was altered, replaced or moved; a hole in the indexes is a missing event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from audit import merkle, note, records, tree
from audit.checkpoints import verifiers
from audit.models import AuditCheckpoint, AuditEvent, AuditTreeNode, AuditVerification

CHUNK = 20_000
MAX_FAILURES = 20


@dataclass(frozen=True)
class Failure:
    index: int | None
    message: str

    def __str__(self) -> str:
        return self.message if self.index is None else f"event {self.index}: {self.message}"


@dataclass
class Report:
    events: int = 0
    pruned: int = 0
    checkpoints: int = 0
    tree_size: int = 0
    root_hash: bytes = merkle.EMPTY_ROOT
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, index: int | None, message: str) -> None:
        if len(self.failures) < MAX_FAILURES:
            self.failures.append(Failure(index, message))


@dataclass(frozen=True)
class HeldCheckpoint:
    """A checkpoint an auditor kept (``--from-checkpoint``): the log must still contain it."""

    size: int
    root_hash: bytes


def read_held_checkpoint(
    text: str, keys: Iterable[note.Verifier], origin: str | None = None
) -> HeldCheckpoint:
    """Open a checkpoint file with the log's keys (or one given); raises ``note.NoteError``."""
    keys = list(keys)
    opened = note.open_note(text, keys)
    checkpoint = note.parse_checkpoint(opened.text)
    if checkpoint.origin != (origin or opened.verifier.name):
        raise note.NoteError("the checkpoint's origin is not its signer's log")
    return HeldCheckpoint(checkpoint.size, checkpoint.root_hash)


def _completion(item: tuple[merkle.Node, bytes]) -> tuple[int, int]:
    """Order of nodes as the leaves complete them, leaves before the subtrees they close."""
    (level, idx), _ = item
    return (idx + 1) << level, level


def _completed_in(level: int, start: int, end: int) -> tuple[int, int]:
    """Indexes of level-``level`` nodes completed by leaves [start, end): inclusive bounds."""
    width = 1 << level
    return -(-(start + 1) // width) - 1, end // width - 1


class _Verifier:
    def __init__(
        self,
        session: Session,
        held: Sequence[HeldCheckpoint],
        bodies_kept_after: datetime | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.session = session
        self.held = {h.size: h for h in held}
        self.bodies_kept_after = bodies_kept_after
        self.progress = progress
        self.report = Report()
        self.keys = verifiers(session)
        self.head = tree.tree_head(session)
        self.range = merkle.CompactRange()
        self.tree_broken = False

    def run(self) -> Report:
        report = self.report
        report.tree_size, report.root_hash = self.head.size, self.head.root_hash
        self._check_root(0)
        position = 0
        while True:
            rows = self.session.execute(
                select(
                    AuditEvent.seq, AuditEvent.record, AuditEvent.leaf_hash, AuditEvent.created_at
                )
                .where(AuditEvent.seq >= position)
                .order_by(AuditEvent.seq)
                .limit(CHUNK)
            ).all()
            if not rows:
                break
            start = self.range.size
            computed: dict[merkle.Node, bytes] = {}
            for seq, record, leaf, created_at in rows:
                self._event(seq, record, bytes(leaf), created_at, computed)
            self._compare_nodes(start, self.range.size, computed)
            position = rows[-1][0] + 1
            if self.progress:
                self.progress(len(rows))
        if not self.tree_broken:  # a hole was reported already; what follows is its echo
            self._check_end()
        report.failures.sort(key=lambda f: (f.index is None, f.index or 0))
        return report

    def _event(
        self,
        seq: int,
        record: str | None,
        leaf: bytes,
        created_at: datetime,
        computed: dict[merkle.Node, bytes],
    ) -> None:
        report = self.report
        report.events += 1
        if seq != self.range.size and not self.tree_broken:
            report.fail(self.range.size, f"missing (the next event present is {seq})")
            self.tree_broken = True
        if record is None:
            report.pruned += 1
            kept_after = self.bodies_kept_after
            if created_at.tzinfo is None:  # SQLite hands back naive UTC date-times
                created_at = created_at.replace(tzinfo=UTC)
            if kept_after is None or created_at >= kept_after:
                report.fail(seq, "its body was removed though retention still keeps it")
        else:
            try:
                records.parse_canonical(record)
            except records.NonCanonicalRecord as exc:
                report.fail(seq, f"altered: the record is not canonical JSON ({exc})")
            else:
                if records.leaf_hash(record.encode()) != leaf:
                    report.fail(seq, "altered: the record does not match its leaf hash")
        if self.tree_broken:
            return
        keep = computed.__setitem__ if seq < self.head.size else None
        self.range.append(leaf, (lambda lv, ix, h: keep((lv, ix), h)) if keep else None)
        self._check_root(self.range.size)

    def _check_root(self, size: int) -> None:
        """Stored and held checkpoints of this size must carry the recomputed root."""
        root = self.range.root() if size else merkle.EMPTY_ROOT
        if size == self.head.size and root != self.head.root_hash:
            self.report.fail(None, "the tree head's root differs from the recomputed root")
        row = self.session.get(AuditCheckpoint, size) if size in self._sizes_near(size) else None
        if row is not None:
            self._check_stored(row, root)
        held = self.held.get(size)
        if held is not None and held.root_hash != root:
            self.report.fail(
                size - 1 if size else None,
                f"the log no longer matches the held checkpoint of size {size}",
            )

    def _sizes_near(self, size: int) -> set[int]:
        """Checkpoint sizes, fetched a chunk ahead so the stream costs one query per chunk."""
        cache = getattr(self, "_cache", None)
        if cache is None or not cache[0] <= size < cache[1]:
            low, high = size, size + CHUNK
            sizes = set(
                self.session.scalars(
                    select(AuditCheckpoint.tree_size).where(
                        AuditCheckpoint.tree_size >= low, AuditCheckpoint.tree_size < high
                    )
                )
            )
            cache = (low, high, sizes)
            self._cache = cache
        return cache[2]

    def _check_stored(self, row: AuditCheckpoint, root: bytes) -> None:
        report = self.report
        report.checkpoints += 1
        key = self.keys.get(row.key_id)
        where = f"checkpoint {row.tree_size}"
        if key is None:
            report.fail(None, f"{where} names an unknown key {row.key_id!r}")
            return
        try:
            body = note.open_checkpoint(row.note, [key], key.name)
        except note.NoteError as exc:
            report.fail(None, f"{where} is forged or damaged: {exc}")
            return
        if body.size != row.tree_size or body.root_hash != bytes(row.root_hash):
            report.fail(None, f"{where}: its columns differ from its signed note")
        elif body.root_hash != root:
            report.fail(
                row.tree_size - 1 if row.tree_size else None,
                f"the events up to here no longer give the root signed in {where}",
            )

    def _check_end(self) -> None:
        """The log must reach as far as the tree, its checkpoints and any held checkpoint."""
        end = self.range.size
        if end < self.head.size:
            self.report.fail(end, f"missing: the log ends here but the tree has {self.head.size}")
        beyond = self.session.scalar(
            select(func.max(AuditCheckpoint.tree_size)).where(AuditCheckpoint.tree_size > end)
        )
        if beyond is not None and end >= self.head.size:
            self.report.fail(end, f"missing: a checkpoint of size {beyond} covers more events")
        for size in sorted(s for s in self.held if s > end):
            self.report.fail(end, f"missing: the held checkpoint of size {size} covers more events")

    def _compare_nodes(self, start: int, end: int, computed: dict[merkle.Node, bytes]) -> None:
        """Every node these leaves completed must be stored, and stored unchanged."""
        end = min(end, self.head.size)
        if self.tree_broken or start >= end:
            return
        ranges = []
        for level in range(end.bit_length()):
            low, high = _completed_in(level, start, end)
            if low <= high:
                ranges.append(
                    and_(AuditTreeNode.level == level, AuditTreeNode.idx.between(low, high))
                )
        stored = {
            (level, idx): bytes(value)
            for level, idx, value in self.session.execute(
                select(AuditTreeNode.level, AuditTreeNode.idx, AuditTreeNode.hash).where(
                    or_(*ranges)
                )
            )
        }
        for (level, idx), value in sorted(computed.items(), key=_completion):
            found = stored.get((level, idx))
            first_leaf = idx << level
            if found is None:
                self.report.fail(first_leaf, f"tree node ({level}, {idx}) is missing")
                return
            if found != value:
                if level == 0:
                    self.report.fail(
                        idx, "altered, replaced or moved: its leaf hash is not the one integrated"
                    )
                else:
                    self.report.fail(None, f"tree node ({level}, {idx}) was altered")
                return


def verify_log(
    session: Session,
    held: Sequence[HeldCheckpoint] = (),
    bodies_kept_after: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Check everything; ``bodies_kept_after`` is the retention cut-off (None: keep all)."""
    return _Verifier(session, held, bodies_kept_after, progress).run()


def event_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def record_run(session: Session, report: Report, started_at: datetime) -> AuditVerification:
    """Keep a run's outcome for the console; the caller commits."""
    run = AuditVerification(
        started_at=started_at,
        finished_at=datetime.now(UTC),
        ok=report.ok,
        events=report.events,
        pruned=report.pruned,
        tree_size=report.tree_size,
        checkpoints=report.checkpoints,
        first_failure=None if report.ok else str(report.failures[0]),
    )
    session.add(run)
    return run


def last_run(session: Session) -> AuditVerification | None:
    return session.scalars(
        select(AuditVerification).order_by(AuditVerification.id.desc()).limit(1)
    ).first()
