"""Retention: after the configured period, event bodies go and leaf hashes stay.

Only integrated events are pruned, so every removed body is already committed to by the tree
and its checkpoints: proofs keep working and ``audit verify`` still checks the tree, skipping
only the body check of pruned events (and flagging a missing body that retention still keeps).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

import audit
from audit import tree
from audit.models import AuditEvent

CHUNK = 10_000


class RetentionNotConfigured(Exception):
    """Pruning was asked for while the retention period keeps bodies forever."""


@dataclass(frozen=True)
class PruneResult:
    cutoff: datetime
    pruned: int


def cutoff(retention_days: int, now: datetime | None = None) -> datetime | None:
    """Bodies of events older than this may be removed; None keeps every body."""
    if retention_days <= 0:
        return None
    return (now or datetime.now(UTC)) - timedelta(days=retention_days)


def prune(
    session: Session, retention_days: int, now: datetime | None = None, dry_run: bool = False
) -> PruneResult:
    """Remove the bodies of integrated events older than the retention period, in chunks."""
    limit = cutoff(retention_days, now)
    if limit is None:
        raise RetentionNotConfigured("CASEBROKER_AUDIT_RETENTION_DAYS is 0: bodies are kept")
    size = tree.tree_head(session).size
    due = (
        AuditEvent.seq < size,
        AuditEvent.created_at < limit,
        AuditEvent.record.is_not(None),
    )
    if dry_run:
        count = session.scalar(select(func.count()).select_from(AuditEvent).where(*due)) or 0
        session.rollback()
        return PruneResult(limit, count)
    pruned = 0
    start = 0
    while start < size:
        end = min(start + CHUNK, size)
        pruned += session.execute(
            update(AuditEvent)
            .where(*due, AuditEvent.seq >= start, AuditEvent.seq < end)
            .values(record=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        start = end
    record = audit.make_record(
        "audit.prune", None, audit.event_time(now), cutoff=limit.isoformat(), pruned=pruned
    )
    audit.append(session, [record])
    session.commit()
    return PruneResult(limit, pruned)
