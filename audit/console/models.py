"""Auditors' findings on reviewed accesses: one per audit event, so a reviewed access leaves
the queue for every auditor and two auditors cannot both close the same item."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base

OUTCOMES = ("justified", "misuse", "follow-up")


class AuditFinding(Base):
    """What an auditor concluded about one logged access; the audit log holds it too."""

    __tablename__ = "audit_finding"
    __table_args__ = (
        CheckConstraint("outcome IN ('justified', 'misuse', 'follow-up')", name="outcome"),
        CheckConstraint("event_seq >= 0", name="event_seq"),
    )

    #: The leaf index of the reviewed event (the audit log's own numbering).
    event_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    outcome: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text)
    officer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    #: The leaf index of the ``audit.finding`` event that records this finding.
    finding_seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
