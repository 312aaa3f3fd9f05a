"""The append-only audit event table and its gap-free sequence.

Each event is a canonical JSON ``record`` and its RFC 9162 leaf hash
SHA-256(0x00 || record). The ``seq`` numbers are the leaves' indexes in the Merkle tree, so
they must have no gaps: they come from the single-row ``audit_sequence`` counter, bumped in
the same transaction as the insert, so a rolled-back append returns its number.
The indexed columns copy fields of the record for the auditor's searches.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, LargeBinary, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base


class AuditEvent(Base):
    __tablename__ = "audit_event"
    __table_args__ = (
        CheckConstraint("seq >= 0", name="seq"),
        CheckConstraint("decision IS NULL OR decision IN ('permit', 'deny')", name="decision"),
        CheckConstraint("length(leaf_hash) = 32", name="leaf_hash"),
        Index("ix_audit_event_person_seq", "person_id", "seq"),
        Index("ix_audit_event_requester_seq", "requester_agency_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    correlation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    record: Mapped[str | None] = mapped_column(Text)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    person_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    requester_agency_id: Mapped[str | None] = mapped_column(String(64))
    provider_agency_id: Mapped[str | None] = mapped_column(String(64))
    client_id: Mapped[str | None] = mapped_column(String(128))
    officer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    purpose_id: Mapped[str | None] = mapped_column(String(64))
    category_id: Mapped[str | None] = mapped_column(String(64))
    decision: Mapped[str | None] = mapped_column(String(8))


class AuditSequence(Base):
    """The one-row counter of the next ``seq``; the migration inserts the row."""

    __tablename__ = "audit_sequence"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    next_seq: Mapped[int] = mapped_column(BigInteger)
