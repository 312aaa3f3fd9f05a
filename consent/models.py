"""Consents, their state history, the purposes' consent caps and the citizens' notifications."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    event,
    inspect,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from broker.db import Base, JSONType, utcnow

CONSENT_STATES = ("requested", "active", "declined", "revoked", "expired")
CHANNELS = ("portal", "api", "system", "cli")
NOTIFICATION_KINDS = ("consent.requested", "consent.expiring", "access.break_glass")
DELIVERY_STATES = ("pending", "sent", "portal", "failed")

#: The terms of a consent: once it has left ``requested`` none of these may change.
TERMS = (
    "person_id",
    "grantee_agency_id",
    "provider_agency_id",
    "purpose_id",
    "categories",
    "fields",
    "valid_from",
    "valid_until",
    "receipt_jws",
    "justification",
)


class ImmutableConsent(Exception):
    """An attempt to edit the terms of a granted consent: a change of terms is a new consent."""


class Consent(Base):
    """A citizen's grant to an agency for categories and a purpose over a validity window.

    The terms (everything but ``status``) never change once granted; a change of terms is
    a new consent. A row in ``requested`` is an agency's request: its window is the proposed
    duration, fixed when the citizen approves.
    """

    __tablename__ = "consent"
    __table_args__ = (
        CheckConstraint(
            "status IN ('requested', 'active', 'declined', 'revoked', 'expired')", name="status"
        ),
        CheckConstraint("valid_until > valid_from", name="window"),
        # Every lookup's consent read: equality on the first four, the window's end as a
        # range. Without the last column SQLite preferred ix_consent_status_valid_until, which
        # walks every active consent in the country (47 ms a lookup at 200,000 of them).
        Index(
            "ix_consent_lookup",
            "person_id",
            "grantee_agency_id",
            "purpose_id",
            "status",
            "valid_until",
        ),
        Index("ix_consent_status_valid_until", "status", "valid_until"),
        Index("ix_consent_grantee_created", "grantee_agency_id", "created_at"),
        Index(
            "uq_consent_one_open_request",
            "terms_digest",
            unique=True,
            sqlite_where=text("status = 'requested'"),
            postgresql_where=text("status = 'requested'"),
        ),
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
    #: The agency's explanation to the citizen of why it asks (requests only).
    justification: Mapped[str | None] = mapped_column(Text)
    #: The OAuth client that asked, for the audit trail and the agency's listing.
    requested_by_client: Mapped[str | None] = mapped_column(String(128))
    #: An unanswered request lapses at this time; approving it afterwards is refused.
    request_expires_at: Mapped[datetime | None] = mapped_column()
    granted_at: Mapped[datetime | None] = mapped_column()
    #: SHA-256 of the canonical terms; one open request per terms (partial unique index).
    terms_digest: Mapped[str | None] = mapped_column(String(64))

    history: Mapped[list[ConsentEvent]] = relationship(
        back_populates="consent", order_by="ConsentEvent.id", cascade="all, delete-orphan"
    )


@event.listens_for(Consent, "before_update")
def _refuse_term_changes(_mapper: Any, _connection: Any, target: Consent) -> None:
    """The database cannot say "immutable once granted" portably; the ORM refuses instead."""
    state = inspect(target)
    status_history = state.attrs.status.history
    previous = status_history.deleted[0] if status_history.deleted else target.status
    if previous == "requested":
        return
    changed = [name for name in TERMS if state.attrs[name].history.has_changes()]
    if changed:
        raise ImmutableConsent(
            f"consent {target.id} is {previous}; its terms ({', '.join(changed)}) cannot change"
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


class PurposeConsentCategory(Base):
    """A purpose's consent cap: the categories a consent under it may cover.

    A purpose with no rows here takes no consent at all (statute or vital interest only);
    the longest validity is the purpose's own ``max_consent_days``.
    """

    __tablename__ = "purpose_consent_category"

    purpose_id: Mapped[str] = mapped_column(
        ForeignKey("purpose.id", ondelete="CASCADE"), primary_key=True
    )
    category_id: Mapped[str] = mapped_column(
        ForeignKey("data_category.id", ondelete="CASCADE"), primary_key=True
    )


class CitizenContact(Base):
    """Where a citizen wants notifications e-mailed; without a row they see them in the portal."""

    __tablename__ = "citizen_contact"

    person_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[str] = mapped_column(String(254))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """The outbox: a message for a citizen, written in the transaction of what it reports.

    ``dedupe_key`` makes every source event produce one message however often it is seen.
    Delivery claims a row with a lease (``claimed_by``, ``claimed_until``); a worker that dies
    mid-send loses its lease and another sends again, so delivery is at least once.
    """

    __tablename__ = "notification"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('consent.requested', 'consent.expiring', 'access.break_glass')", name="kind"
        ),
        CheckConstraint("delivery IN ('pending', 'sent', 'portal', 'failed')", name="delivery"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_notification_person_id_id", "person_id", "id"),
        Index("ix_notification_delivery_next", "delivery", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivery: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(String(500))
    read_at: Mapped[datetime | None] = mapped_column()


class OutboxCursor(Base):
    """How far a tail of the audit log has been turned into notifications (a seq number)."""

    __tablename__ = "outbox_cursor"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
