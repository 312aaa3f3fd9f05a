"""Registering and closing cases, and the case facts a lookup is decided on.

One ``CaseRegistry`` per agency and request: it checks a registration against the registries
(persons through the agency's own identifiers, capacities, purposes, the agency's officers),
writes it with its audit event, and closes cases. The API and the bulk import share its
checks, so a row refused by one is refused by the other with the same words.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Date, Uuid, bindparam, exists, insert, or_, select, update
from sqlalchemy.orm import Session

import audit
from broker.cases.models import Case, CaseAssignee, CaseCapacity, CasePurpose
from broker.models import Purpose
from broker.prepared import Prepared
from identity.models import IdentityLink, Officer

MAX_REFERENCE = 128
MAX_TEAM = 200
MAX_ASSIGNEES = 50


class CaseError(Exception):
    """A registration or change that cannot be made; ``status`` and ``title`` for the API."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


@dataclass(frozen=True)
class Actor:
    """Who changes a case, as the audit log names them."""

    agency: str
    client_id: str | None = None
    officer: str | None = None
    channel: str = "api"


@dataclass(frozen=True)
class CaseInput:
    """A registration as given: the person by the agency's own identifier."""

    reference: str
    scheme: str
    value: str
    capacity: str
    purposes: tuple[str, ...]
    starts_on: date
    ends_on: date | None = None
    officers: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaseFacts:
    """What the policy engine learns about the requester's cases on the person."""

    open_case: bool
    references: tuple[str, ...] = ()
    capacities: tuple[str, ...] = ()
    officer_assigned: bool = False


@dataclass
class Registries:
    """The registries a batch of registrations is checked against, read once per batch."""

    capacities: set[str]
    purposes: set[str]
    officers: set[uuid.UUID]
    persons: dict[tuple[str, str], uuid.UUID] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session, agency: str) -> Registries:
        return cls(
            capacities=set(session.scalars(select(CaseCapacity.id))),
            purposes=set(session.scalars(select(Purpose.id))),
            officers=set(session.scalars(select(Officer.id).where(Officer.agency_id == agency))),
        )

    def resolve_persons(
        self, session: Session, agency: str, keys: Iterable[tuple[str, str]]
    ) -> None:
        """Read the person ids of ``(scheme, value)`` pairs not yet known, a chunk at a time."""
        missing = sorted({key for key in keys if key not in self.persons})
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            rows = session.execute(
                select(IdentityLink.scheme, IdentityLink.value, IdentityLink.person_id).where(
                    IdentityLink.agency_id == agency,
                    IdentityLink.value.in_({value for _, value in chunk}),
                )
            )
            for scheme, value, person_id in rows:
                self.persons[(scheme, value)] = person_id


def today(now: datetime | None = None) -> date:
    """Case periods are calendar dates in UTC, the same on every node."""
    return (now or datetime.now(UTC)).astimezone(UTC).date()


def _is_printable(text: str) -> bool:
    return text == text.strip() and all(ch.isprintable() for ch in text)


def check_input(item: CaseInput, registries: Registries, on: date) -> uuid.UUID:
    """The person's internal id if ``item`` can be registered; otherwise ``CaseError`` (422)."""

    def refuse(title: str, detail: str) -> CaseError:
        return CaseError(422, title, detail)

    if not item.reference or len(item.reference) > MAX_REFERENCE:
        raise refuse("Invalid case reference", f"A reference has 1 to {MAX_REFERENCE} characters.")
    if not _is_printable(item.reference):
        raise refuse(
            "Invalid case reference",
            "A reference has no control characters and no leading or trailing spaces.",
        )
    person_id = registries.persons.get((item.scheme, item.value))
    if person_id is None:
        raise refuse(
            "Unknown person", "Your agency has no person registered under this identifier."
        )
    if item.capacity not in registries.capacities:
        raise refuse("Unknown capacity", f"No capacity {item.capacity!r} is registered.")
    if not item.purposes:
        raise refuse("No purpose", "A case serves at least one registered purpose.")
    unknown = sorted(set(item.purposes) - registries.purposes)
    if unknown:
        raise refuse(
            "Unknown purpose", f"No purpose {', '.join(map(repr, unknown))} is registered."
        )
    if item.ends_on is not None and item.ends_on < item.starts_on:
        raise refuse("Invalid period", "The case ends before it starts.")
    if item.ends_on is not None and item.ends_on < on:
        raise refuse(
            "Closed period", f"The case ended on {item.ends_on.isoformat()}: register open cases."
        )
    if len(item.officers) + len(item.teams) > MAX_ASSIGNEES:
        raise refuse("Too many assignees", f"At most {MAX_ASSIGNEES} officers and teams.")
    for officer in item.officers:
        try:
            officer_id = uuid.UUID(officer)
        except ValueError:
            raise refuse("Unknown officer", f"{officer!r} is not an officer id.") from None
        if officer_id not in registries.officers:
            raise refuse("Unknown officer", f"No officer {officer} works at your agency.")
    for team in item.teams:
        if not team or len(team) > MAX_TEAM or not _is_printable(team):
            raise refuse("Invalid team", f"A team name has 1 to {MAX_TEAM} printable characters.")
    return person_id


class CaseRegistry:
    """An agency's cases, changed on behalf of one actor; the caller commits."""

    def __init__(
        self,
        session: Session,
        actor: Actor,
        correlation_id: str | None = None,
        now: datetime | None = None,
    ) -> None:
        self.session = session
        self.actor = actor
        self.correlation_id = correlation_id
        self.now = now or datetime.now(UTC)
        self.time = audit.event_time(self.now)

    def register(self, item: CaseInput) -> Case:
        """Check and add one case with its audit event; ``CaseError`` leaves nothing behind."""
        registries = Registries.load(self.session, self.actor.agency)
        registries.resolve_persons(self.session, self.actor.agency, [(item.scheme, item.value)])
        person_id = check_input(item, registries, today(self.now))
        if self.registered([item.reference]):
            raise CaseError(
                409, "Case already registered", f"Case {item.reference!r} is already registered."
            )
        case_id = self.add_checked([(item, person_id)])[0]
        return self.session.get_one(Case, case_id)

    def registered(self, references: Sequence[str]) -> set[str]:
        """Which of ``references`` the agency has already registered."""
        return set(
            self.session.scalars(
                select(Case.reference).where(
                    Case.agency_id == self.actor.agency, Case.reference.in_(set(references))
                )
            )
        )

    def add_checked(self, items: Sequence[tuple[CaseInput, uuid.UUID]]) -> list[uuid.UUID]:
        """Add registrations already checked by ``check_input``, with one audit event each.

        Plain multi-row inserts rather than ORM objects: a bulk import adds a hundred thousand
        cases, and the unit of work would spend most of its time tracking them.
        """
        cases, purposes, assignees, records = [], [], [], []
        ids = []
        for item, person_id in items:
            case_id = uuid.uuid4()
            ids.append(case_id)
            cases.append(
                {
                    "id": case_id,
                    "agency_id": self.actor.agency,
                    "reference": item.reference,
                    "person_id": person_id,
                    "capacity_id": item.capacity,
                    "starts_on": item.starts_on,
                    "ends_on": item.ends_on,
                    "status": "open",
                    "created_at": self.now,
                }
            )
            purposes += [
                {"case_id": case_id, "purpose_id": p} for p in dict.fromkeys(item.purposes)
            ]
            assignees += [
                {"case_id": case_id, "officer_id": uuid.UUID(o), "team": None}
                for o in dict.fromkeys(item.officers)
            ]
            assignees += [
                {"case_id": case_id, "officer_id": None, "team": t}
                for t in dict.fromkeys(item.teams)
            ]
            records.append(
                self._record(
                    "case.registered",
                    person_id,
                    item.reference,
                    item.capacity,
                    purposes=list(dict.fromkeys(item.purposes)),
                    starts_on=item.starts_on.isoformat(),
                    ends_on=item.ends_on.isoformat() if item.ends_on else None,
                )
            )
        if not cases:
            return []
        self.session.execute(insert(Case), cases)
        self.session.execute(insert(CasePurpose), purposes)
        if assignees:
            self.session.execute(insert(CaseAssignee), assignees)
        audit.append(self.session, records)
        return ids

    def get(self, reference: str) -> Case:
        """One of the agency's own cases; another agency's reference is simply not found."""
        case = self.session.scalar(
            select(Case).where(Case.agency_id == self.actor.agency, Case.reference == reference)
        )
        if case is None:
            raise CaseError(404, "Case not found", f"Your agency has no case {reference!r}.")
        return case

    def close(self, reference: str, reason: str | None = None) -> Case:
        """Close an open case now; the very next lookup on every node no longer counts it."""
        case = self.session.scalar(
            select(Case)
            .where(Case.agency_id == self.actor.agency, Case.reference == reference)
            .with_for_update()
        )
        if case is None:
            raise CaseError(404, "Case not found", f"Your agency has no case {reference!r}.")
        if case.status == "closed":
            raise CaseError(409, "Case already closed", f"Case {reference!r} is already closed.")
        case.status, case.closed_at, case.close_reason = "closed", self.now, reason or "closed"
        self.session.flush()
        record = self._record(
            "case.closed", case.person_id, case.reference, case.capacity_id, reason=reason
        )
        audit.append(self.session, [record])
        return case

    def _record(
        self, kind: str, person_id: uuid.UUID, reference: str, capacity: str, **extra: Any
    ) -> dict[str, Any]:
        return audit.make_record(
            kind,
            self.correlation_id,
            self.time,
            requester=self.actor.agency,
            client=self.actor.client_id,
            officer=self.actor.officer,
            channel=self.actor.channel,
            person=str(person_id),
            case=reference,
            capacity=capacity,
            **extra,
        )


def close_ended(session: Session, now: datetime | None = None, batch: int = 1000) -> int:
    """Mark cases whose end date has passed as closed, with their audit events; the count.

    Lookups never wait for this: a case past its end date already does not count. This only
    makes the closing visible in the case's state and in the audit log.
    """
    now = now or datetime.now(UTC)
    on = today(now)
    time = audit.event_time(now)
    closed = 0
    while True:
        cases = session.scalars(
            select(Case)
            .where(Case.status == "open", Case.ends_on < on)
            .order_by(Case.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        if not cases:
            return closed
        session.execute(
            update(Case)
            .where(Case.id.in_([c.id for c in cases]))
            .values(status="closed", closed_at=now, close_reason="end date passed")
        )
        audit.append(
            session,
            [
                audit.make_record(
                    "case.closed",
                    None,
                    time,
                    requester=c.agency_id,
                    channel="system",
                    person=str(c.person_id),
                    case=c.reference,
                    capacity=c.capacity_id,
                    reason="end date passed",
                )
                for c in cases
            ],
        )
        session.commit()
        closed += len(cases)


_case = Case.__table__.c
_case_purpose = CasePurpose.__table__.c
_assignee = CaseAssignee.__table__.c
_on = bindparam("on", type_=Date)

#: The requester's live cases on the person for the purpose, each with whether the officer
#: is assigned to it: one statement, built once (it runs on every lookup).
_LIVE_CASES = Prepared(
    select(
        _case.reference,
        _case.capacity_id,
        exists()
        .where(
            _assignee.case_id == _case.id,
            _assignee.officer_id == bindparam("officer", type_=Uuid),
        )
        .label("assigned"),
    )
    .join(CasePurpose.__table__, _case_purpose.case_id == _case.id)
    .where(
        _case.agency_id == bindparam("agency"),
        _case.person_id == bindparam("person", type_=Uuid),
        _case.status == "open",
        _case.starts_on <= _on,
        or_(_case.ends_on.is_(None), _case.ends_on >= _on),
        _case_purpose.purpose_id == bindparam("purpose"),
    )
    .order_by(_case.reference)
)


def case_facts(
    session: Session,
    agency: str,
    person_id: uuid.UUID,
    purpose: str,
    officer: str | None,
    now: datetime,
) -> CaseFacts:
    """The requester's live cases on the person for the purpose, read at decision time."""
    params = {
        "agency": agency,
        "person": person_id,
        "purpose": purpose,
        "on": today(now),
        "officer": _officer_uuid(officer),
    }
    rows = _LIVE_CASES.rows(session, params)
    if not rows:
        return CaseFacts(False)
    return CaseFacts(
        True,
        tuple(row.reference for row in rows),
        tuple(dict.fromkeys(row.capacity_id for row in rows)),
        any(row.assigned for row in rows),
    )


def _officer_uuid(officer: str | None) -> uuid.UUID | None:
    if not officer:
        return None
    try:
        return uuid.UUID(officer)
    except ValueError:
        return None
