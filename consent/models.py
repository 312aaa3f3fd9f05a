"""Consents and their state history."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from broker.db import Base, JSONType, utcnow

CONSENT_STATES = ("requested", "active", "declined", "revoked", "expired")


class Consent(Base):
    """A citizen's grant to an agency for categories and a purpose over a validity window.

    The terms (everything but ``status``) never change once granted; a change of terms is
    a new consent.
    """

    __tablename__ = "consent"
    __table_args__ = (
        CheckConstraint(
            "status IN ('requested', 'active', 'declined', 'revoked', 'expired')", name="status"
        ),
        CheckConstraint("valid_until > valid_from", name="window"),
        Index("ix_consent_lookup", "person_id", "grantee_agency_id", "purpose_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    grantee_agency_id: Mapped[str] = mapped_column(ForeignKey("agency.id"))
    provider_agency_id: Mapped[str | None] = mapped_column(ForeignKey("agency.id"))
    purpose_id: Mapped[str] = mapped_column(ForeignKey("purpose.id"))
    categories: Mapped[list[str]] = mapped_column(JSONType)
    fields: Mapped[dict[str, list[str]] | None] = mapped_column(JSONType)
    valid_from: Mapped[datetime] = mapped_column()
    valid_until: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16))
    receipt_jws: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    history: Mapped[list[ConsentEvent]] = relationship(
        back_populates="consent", order_by="ConsentEvent.id", cascade="all, delete-orphan"
    )


class ConsentEvent(Base):
    """One state change of a consent: who did it, when, through which channel."""

    __tablename__ = "consent_event"
    __table_args__ = (
        CheckConstraint(
            "to_status IN ('requested', 'active', 'declined', 'revoked', 'expired')",
            name="to_status",
        ),
        CheckConstraint("channel IN ('portal', 'api', 'system', 'cli')", name="channel"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    consent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("consent.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(default=utcnow)

    consent: Mapped[Consent] = relationship(back_populates="history")
