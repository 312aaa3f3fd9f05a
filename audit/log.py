"""Appending to the audit log: the only write the application ever makes to it.

Appends run inside the caller's transaction, so the events of a lookup commit together with
nothing else or not at all. Sequence numbers come from the one-row ``audit_sequence`` counter,
bumped by the batch size in the same transaction: the row lock orders concurrent appenders on
PostgreSQL (SQLite has one writer anyway), and a rollback gives the numbers back, so the
sequence has no gaps. Tree building and checkpoint signing stay off this path.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import g, has_app_context
from sqlalchemy import Integer, bindparam, insert, update
from sqlalchemy.orm import Session

from audit.models import AuditEvent, AuditSequence
from audit.records import canonical_json, leaf_hash
from broker.prepared import Prepared

RECORD_VERSION = 1

#: Record keys copied into indexed columns for the auditor's searches.
INDEXED = {
    "person": "person_id",
    "requester": "requester_agency_id",
    "provider": "provider_agency_id",
    "client": "client_id",
    "officer": "officer_id",
    "purpose": "purpose_id",
    "category": "category_id",
    "decision": "decision",
}


_sequence = AuditSequence.__table__
#: Built once (they run on every lookup): reserve ``count`` numbers, then insert the events.
_RESERVE = Prepared(
    update(_sequence)
    .where(_sequence.c.id == 1)
    .values(next_seq=_sequence.c.next_seq + bindparam("count", type_=Integer))
    .returning(_sequence.c.next_seq)
)
_INSERT = Prepared(
    insert(AuditEvent.__table__).values(
        {
            column.name: bindparam(column.name, type_=column.type)
            for column in AuditEvent.__table__.c
        }
    )
)


@dataclass(frozen=True)
class Appended:
    """Where an event landed: its leaf index and hash, for the requester to prove later."""

    index: int
    leaf_hash: bytes


def event_time(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")


def make_record(kind: str, correlation_id: str | None, time: str, **fields: Any) -> dict[str, Any]:
    """An event record: its version, kind, time and correlation id, then the kind's fields."""
    record: dict[str, Any] = {"v": RECORD_VERSION, "kind": kind, "time": time}
    if correlation_id:
        record["correlation_id"] = correlation_id
    record.update({k: v for k, v in fields.items() if v is not None})
    return record


def _column_value(column: str, value: Any) -> Any:
    if column in ("person_id", "officer_id") and value is not None:
        return uuid.UUID(str(value))
    return value


def append(session: Session, records: Sequence[Mapping[str, Any]]) -> list[Appended]:
    """Append ``records`` in order; the caller commits (and must, before answering)."""
    if not records:
        return []
    encoded = [canonical_json(r) for r in records]
    end = _RESERVE.rows(session, {"count": len(records)})[0].next_seq
    start = end - len(records)
    rows = []
    appended = []
    for offset, (record, canonical) in enumerate(zip(records, encoded, strict=True)):
        digest = leaf_hash(canonical)
        row: dict[str, Any] = {
            "seq": start + offset,
            "created_at": datetime.fromisoformat(record["time"]),
            "kind": record["kind"],
            "correlation_id": record.get("correlation_id"),
            "record": canonical.decode(),
            "leaf_hash": digest,
        }
        for key, column in INDEXED.items():
            row[column] = _column_value(column, record.get(key))
        rows.append(row)
        appended.append(Appended(start + offset, digest))
    _INSERT.run_many(session, rows)
    if has_app_context():
        g.audit_appended = True  # lets the app integrate once the response has gone
    return appended
