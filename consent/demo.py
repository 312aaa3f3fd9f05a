"""Demo consents: citizens with pending requests, active and revoked consents.

Made through the service itself, so the demo's consents have their history, audit events,
signed receipts and notifications like real ones. Safe to repeat: a person who already has
consents is left alone, and purpose caps that an operator set are kept.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.models import Agency, Purpose
from consent.models import Consent
from consent.service import (
    Actor,
    ConsentService,
    ConsentSettings,
    Terms,
    purpose_categories,
    set_purpose_categories,
)
from identity.models import Account, Client, IdentityLink

#: Which categories a consent under each demo purpose may cover. Emergency care and child
#: protection rest on vital interest and statute, so they take no consent.
DEMO_CAPS: dict[str, tuple[str, ...]] = {
    "benefit-eligibility": ("income", "address", "vehicle", "benefits"),
    "tax-assessment": ("income", "vehicle"),
    "road-safety": ("vehicle", "address"),
}


@dataclass
class DemoConsents:
    """What was made, for the demo to print."""

    persons: int = 0
    requested: list[uuid.UUID] = field(default_factory=list)
    active: list[uuid.UUID] = field(default_factory=list)
    revoked: list[uuid.UUID] = field(default_factory=list)


def _identifier(session: Session, person_id: uuid.UUID, agency: str) -> tuple[str, str] | None:
    link = session.scalars(
        select(IdentityLink)
        .where(IdentityLink.person_id == person_id, IdentityLink.agency_id == agency)
        .order_by(IdentityLink.scheme)
    ).first()
    return (link.scheme, link.value) if link else None


def _demo_persons(session: Session, extra: int) -> list[uuid.UUID]:
    """The demo citizen login's person first, then the next persons by tax identifier."""
    persons: list[uuid.UUID] = []
    citizen = session.scalar(select(Account.person_id).where(Account.username == "citizen"))
    if citizen is not None:
        persons.append(citizen)
    others = session.scalars(
        select(IdentityLink.person_id)
        .where(IdentityLink.agency_id == "tax")
        .order_by(IdentityLink.value)
        .limit(extra + 1)
    )
    for person_id in others:
        if person_id not in persons and len(persons) < extra + 1:
            persons.append(person_id)
    return persons


def _ensure_caps(session: Session) -> None:
    for purpose, categories in DEMO_CAPS.items():
        if session.get(Purpose, purpose) is not None and not purpose_categories(session, purpose):
            set_purpose_categories(session, purpose, categories)


def _ensure_consent_scope(session: Session) -> None:
    """The demo agencies' clients may ask for consent (scope ``consent``)."""
    for client in session.scalars(select(Client).where(Client.id.like("%-cms"))):
        scopes = client.scope.split()
        if "consent" not in scopes:
            client.scope = " ".join([*scopes, "consent"])


def seed_demo_consents(
    session: Session, settings: ConsentSettings, persons: int = 3
) -> DemoConsents:
    """Seed demo consents for the demo citizen and ``persons`` more; commits as it goes.

    Call it after ``broker.demo_data.seed_demo`` has committed, with a session of its own.
    """
    made = DemoConsents()
    _ensure_caps(session)
    _ensure_consent_scope(session)
    session.commit()
    if session.get(Agency, "social-services") is None or session.get(Agency, "tax") is None:
        return made
    service = ConsentService(session, settings)
    social = Actor.agency("social-services", "social-services-cms")
    tax = Actor.agency("tax", "tax-cms")
    for person_id in _demo_persons(session, persons):
        if session.scalar(select(Consent.id).where(Consent.person_id == person_id).limit(1)):
            continue
        social_ref = _identifier(session, person_id, "social-services")
        tax_ref = _identifier(session, person_id, "tax")
        if social_ref is None or tax_ref is None:
            continue
        made.persons += 1
        vehicle = Terms("social-services", "benefit-eligibility", ("vehicle",), "vehicle-registry")
        asked, _ = service.request(
            social,
            *social_ref,
            vehicle,
            180,
            "We assess your benefit claim and need to know which vehicles you own.",
        )
        made.active.append(service.approve(person_id, asked.id).id)
        pending, _ = service.request(
            tax,
            *tax_ref,
            Terms("tax", "tax-assessment", ("vehicle",), "vehicle-registry"),
            365,
            "Vehicles you own are part of your declared assets.",
        )
        made.requested.append(pending.id)
        granted = service.grant(
            person_id,
            Terms("social-services", "road-safety", ("address",), "tax"),
            service.now + timedelta(days=60),
        )
        made.revoked.append(service.revoke(granted.id, Actor.citizen(), person_id=person_id).id)
    return made
