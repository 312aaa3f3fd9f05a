"""Case registrations: an agency's declaration that it holds an open file on a person.

A lookup is lawful only where the requester has a live reason, so the exchange reads these
rows at decision time (never a cached copy). The table is named ``case_registration`` because
``case`` is an SQL keyword.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from broker.db import Base, JSONType, utcnow

CASE_STATES = ("open", "closed")


class CaseCapacity(Base):
    """The capacity in which an agency deals with a person: applicant, child in care, ..."""

    __tablename__ = "case_capacity"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    #: Other languages: ``{"fr": {"name": ..., "description": ...}}``; the columns are English.
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Case(Base):
    """One agency's open or closed file on one person, for some purposes, over a period."""

    __tablename__ = "case_registration"
    __table_args__ = (
        UniqueConstraint("agency_id", "reference"),
        CheckConstraint("status IN ('open', 'closed')", name="status"),
        CheckConstraint("ends_on IS NULL OR ends_on >= starts_on", name="period"),
        CheckConstraint(
            "(status = 'open' AND closed_at IS NULL) "
            "OR (status = 'closed' AND closed_at IS NOT NULL)",
            name="closed_at",
        ),
        # Every lookup's case read, in the order it is answered in: without ``reference`` SQLite
        # preferred the (agency_id, reference) constraint for its order and walked every case
        # of the agency (51 ms a lookup at 200,000 of them).
        Index(
            "ix_case_registration_person_agency", "person_id", "agency_id", "status", "reference"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agency.id"))
    reference: Mapped[str] = mapped_column(String(128))
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    capacity_id: Mapped[str] = mapped_column(ForeignKey("case_capacity.id"))
    starts_on: Mapped[date] = mapped_column()
    ends_on: Mapped[date | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="open")
    closed_at: Mapped[datetime | None] = mapped_column()
    close_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    purposes: Mapped[list[CasePurpose]] = relationship(
        cascade="all, delete-orphan", order_by="CasePurpose.purpose_id"
    )
    assignees: Mapped[list[CaseAssignee]] = relationship(
        cascade="all, delete-orphan", order_by="CaseAssignee.id"
    )


class CasePurpose(Base):
    """A purpose the case serves; a lookup counts the case only for these purposes."""

    __tablename__ = "case_purpose"

    case_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("case_registration.id", ondelete="CASCADE"), primary_key=True
    )
    purpose_id: Mapped[str] = mapped_column(ForeignKey("purpose.id"), primary_key=True)


class CaseAssignee(Base):
    """An officer or a team assigned to the case: exactly one of the two."""

    __tablename__ = "case_assignee"
    __table_args__ = (
        CheckConstraint("(officer_id IS NULL) <> (team IS NULL)", name="officer_or_team"),
        Index("ix_case_assignee_case", "case_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("case_registration.id", ondelete="CASCADE")
    )
    officer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("officer.id"))
    team: Mapped[str | None] = mapped_column(String(200))
